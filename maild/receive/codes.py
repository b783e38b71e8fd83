"""SMTP/LMTP replies as named constants, so code and tests say what they mean."""

S250_OK = "250 2.0.0 OK"
S250_RCPT_OK = "250 2.1.5 OK"
S451_SPOOL_FAILED = "451 4.3.0 Requested action aborted: local error in storing the message, try again later"
S550_NO_SUCH_USER = "550 5.1.1 No such recipient here: not a helpdesk address"
# 552 for a message over mail.max_message_size is aiosmtpd's own reply (data_size_limit), at MAIL FROM
# when SIZE= is declared, else at the end of DATA.


def queued(queue_id: int) -> str:
    return f"{S250_OK} queued as {queue_id}"

# What one client may take of a listener (``[smtp]``/``[lmtp]`` limits): 421 closes the session.
S421_TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections; try again later"
S421_TOO_MANY_FROM_YOU = "421 4.7.0 Too many connections from your address; try again later"
S421_NO_PROGRESS = "421 4.7.0 Too long without a message; closing"
S452_TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
S501_NUL_IN_ADDRESS = "501 5.5.2 Syntax error: NUL byte in address"
S250_SENDER_OK = "250 2.1.0 OK"
