"""LMTP receipt: one answer per recipient, refusal at RCPT, spool before 250."""

from __future__ import annotations

import smtplib

import pytest

from tests.helpers import Instance, make_mail

pytestmark = pytest.mark.both_engines  # the pipeline and the desk on SQLite and on PostgreSQL


def test_lmtp_answers_per_recipient(daemon: Instance):
    msg = make_mail(subject="Via LMTP", to="support@helpdesk.example", cc="billing@helpdesk.example")
    with smtplib.LMTP("127.0.0.1", daemon.lmtp_port, timeout=30) as lmtp:
        code, _ = lmtp.ehlo()  # smtplib's LMTP sends LHLO
        assert code == 250
        assert lmtp.mail("alice@client.example")[0] == 250
        assert lmtp.rcpt("support@helpdesk.example")[0] == 250
        code, text = lmtp.rcpt("ghost@helpdesk.example")
        assert code == 550 and text.startswith(b"5.1.1")
        assert lmtp.rcpt("billing@helpdesk.example")[0] == 250
        lmtp.putcmd("data")
        code, _ = lmtp.getreply()
        assert code == 354
        lmtp.send(smtplib.quotedata(msg.as_string(policy=msg.policy.clone(linesep="\r\n"))).encode()
                  + b"\r\n.\r\n")
        # One reply line per accepted recipient, in order (RFC 2033 section 4.2).
        replies = [lmtp.getreply() for _ in range(2)]
    assert [code for code, _ in replies] == [250, 250]
    assert all(b"queued as 1" in text for _, text in replies)
    rows = daemon.wait_outcomes(1)
    assert rows[0]["outcome"] == "new_ticket"
    spooled = daemon.query("SELECT source, envelope_to FROM inbound")
    assert spooled[0]["source"] == "lmtp"
    assert "support@helpdesk.example" in spooled[0]["envelope_to"]
    # One message, one ticket, in the To: department although both were recipients.
    dept = daemon.query("SELECT d.name FROM tickets t JOIN departments d ON d.id = t.department_id")
    assert [r["name"] for r in dept] == ["Technical Support"]


def test_lmtp_refuses_helo(daemon: Instance):
    with smtplib.SMTP("127.0.0.1", daemon.lmtp_port, timeout=30) as conn:
        code, _ = conn.helo("client.example")
        assert code == 500
