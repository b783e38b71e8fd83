"""SMTP/LMTP replies as named constants, so code and tests say what they mean."""

S250_OK = "250 2.0.0 OK"
S250_RCPT_OK = "250 2.1.5 OK"
S451_SPOOL_FAILED = "451 4.3.0 Requested action aborted: local error in storing the message, try again later"
S550_NO_SUCH_USER = "550 5.1.1 No such recipient here: not a helpdesk address"
# 552 for a message over mail.max_message_size is aiosmtpd's own reply (data_size_limit), at MAIL FROM
# when SIZE= is declared, else at the end of DATA.


def queued(queue_id: int) -> str:
    return f"{S250_OK} queued as {queue_id}"
