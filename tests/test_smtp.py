"""SMTP receipt against a running ``ticketd serve``, driven by smtplib over a real socket."""

from __future__ import annotations

import json
import smtplib

import pytest

from tests.helpers import Instance, make_mail

pytestmark = pytest.mark.both_engines  # the pipeline on SQLite and on PostgreSQL


def send(inst: Instance, msg, rcpts: list[str] | None = None, sender: str = "alice@client.example") -> tuple:
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as smtp:
        refused = smtp.send_message(msg, from_addr=sender, to_addrs=rcpts)
        return refused


def ticket(inst: Instance, tid: str) -> dict:
    return inst.cli_json("ticket", "show", tid)


def test_new_ticket_then_reply_by_in_reply_to(daemon: Instance):
    first = make_mail(subject="Printer on fire", body="My printer is on fire.\n")
    send(daemon, first)
    rows = daemon.wait_outcomes(1)
    assert rows[0]["outcome"] == "new_ticket"
    tid = daemon.query("SELECT tid FROM tickets")[0]["tid"]
    assert len(tid) == 6 and tid.isdigit()
    t = ticket(daemon, tid)
    assert t["status"] == "Open"
    assert t["department"] == "Technical Support"
    assert t["client_email"] == "alice@client.example"
    assert t["subject"] == "Printer on fire"
    assert [m["kind"] for m in t["messages"]] == ["reply"]
    assert t["messages"][0]["body"] == "My printer is on fire."  # exact: no stray CR from CRLF
    assert t["messages"][0]["body_full"] == "My printer is on fire."

    reply = make_mail(subject="Re: Printer on fire", body="It is still burning.\n",
                      in_reply_to=first["Message-ID"], references=first["Message-ID"])
    send(daemon, reply)
    rows = daemon.wait_outcomes(2)
    assert rows[1]["outcome"] == "reply"
    t = ticket(daemon, tid)
    assert t["status"] == "Customer-Reply"
    assert len(t["messages"]) == 2
    assert t["messages"][1]["body"] == "It is still burning."
    assert len(daemon.query("SELECT * FROM tickets")) == 1


def test_reply_threaded_by_subject_token_and_references(daemon: Instance):
    send(daemon, make_mail(subject="VPS down"))
    daemon.wait_outcomes(1)
    tid = daemon.query("SELECT tid FROM tickets")[0]["tid"]
    # No In-Reply-To at all: the subject token alone threads it (spacing and case mangled by a client).
    send(daemon, make_mail(subject=f"RE: [ticket  #{tid}] VPS down", body="any news?"))
    # A reply whose References name the first message, the newest unknown to us.
    first_id = daemon.query("SELECT message_id FROM messages ORDER BY id LIMIT 1")[0]["message_id"]
    send(daemon, make_mail(subject="something else", references=f"{first_id} <unknown@elsewhere>"))
    rows = daemon.wait_outcomes(3)
    assert [r["outcome"] for r in rows] == ["new_ticket", "reply", "reply"]
    assert len(daemon.query("SELECT * FROM tickets")) == 1
    assert len(ticket(daemon, tid)["messages"]) == 3


def test_subject_token_of_unknown_ticket_opens_a_new_one(daemon: Instance):
    send(daemon, make_mail(subject="[Ticket #999999] forged token"))
    rows = daemon.wait_outcomes(1)
    assert rows[0]["outcome"] == "new_ticket"


def test_reply_to_closed_ticket_reopens_it(daemon: Instance):
    first = make_mail(subject="Closed soon")
    send(daemon, first)
    daemon.wait_outcomes(1)
    tid = daemon.query("SELECT tid FROM tickets")[0]["tid"]
    # Closed behind the desk's back (the desk's own close also mails the client).
    daemon.execute("UPDATE tickets SET status = 'Closed' WHERE tid = ?", (tid,))
    send(daemon, make_mail(subject="Re: Closed soon", in_reply_to=first["Message-ID"], body="again!"))
    rows = daemon.wait_outcomes(2)
    assert rows[1]["outcome"] == "reply"
    t = ticket(daemon, tid)
    assert t["status"] == "Customer-Reply"
    assert "reopened" in [e["event"] for e in t["log"]]
    assert len(daemon.query("SELECT * FROM tickets")) == 1


def test_unknown_recipient_is_refused_at_rcpt(daemon: Instance):
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as smtp:
        smtp.ehlo()
        smtp.mail("alice@client.example")
        code, text = smtp.rcpt("nobody@helpdesk.example")
        assert code == 550 and text.startswith(b"5.1.1")
        code, _ = smtp.rcpt("elsewhere@example.org")
        assert code == 550
        # Plus-addressing reaches the department.
        code, _ = smtp.rcpt("billing+invoice-42@helpdesk.example")
        assert code == 250
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(daemon, make_mail(to="nobody@helpdesk.example"), rcpts=["nobody@helpdesk.example"])
    assert daemon.query("SELECT count(*) AS n FROM inbound")[0]["n"] == 0


def test_plus_address_routes_to_department(daemon: Instance):
    send(daemon, make_mail(to="billing+invoice-42@helpdesk.example"))
    daemon.wait_outcomes(1)
    assert ticket(daemon, daemon.query("SELECT tid FROM tickets")[0]["tid"])["department"] == "Billing"


def test_oversize_is_refused_with_552(daemon: Instance):
    big = make_mail(body="x" * 76 + "\n")
    big.set_content(("y" * 76 + "\n") * (daemon.max_size // 77 + 10))
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as smtp:
        # The declared SIZE is refused at MAIL FROM already ...
        smtp.ehlo()
        code, _ = smtp.mail("alice@client.example", options=[f"SIZE={daemon.max_size + 1}"])
        assert code == 552
        smtp.rset()
        # ... and an undeclared one at the end of DATA.
        assert smtp.mail("alice@client.example")[0] == 250
        assert smtp.rcpt("support@helpdesk.example")[0] == 250
        code, _ = smtp.data(big.as_bytes(policy=big.policy.clone(linesep="\r\n")))
        assert code == 552
    assert daemon.query("SELECT count(*) AS n FROM inbound")[0]["n"] == 0


def test_duplicate_delivery_changes_nothing(daemon: Instance):
    msg = make_mail(subject="Sent twice")
    send(daemon, msg)
    send(daemon, msg)  # an MTA retry after a lost 250
    rows = daemon.wait_outcomes(2)
    assert [r["outcome"] for r in rows] == ["new_ticket", "duplicate"]
    assert len(daemon.query("SELECT * FROM tickets")) == 1
    assert len(daemon.query("SELECT * FROM messages")) == 1


def test_reply_that_ccs_another_department_is_one_reply(daemon: Instance):
    first = make_mail(subject="Refund please", to="support@helpdesk.example")
    send(daemon, first)
    daemon.wait_outcomes(1)
    reply = make_mail(subject="Re: Refund please", to="support@helpdesk.example",
                      cc="billing@helpdesk.example", in_reply_to=first["Message-ID"])
    # Delivered once per department address, as many MTAs do ...
    send(daemon, reply, rcpts=["billing@helpdesk.example"])
    send(daemon, reply, rcpts=["support@helpdesk.example"])
    # ... and once with both recipients in one transaction.
    second = make_mail(subject="Re: Refund please", cc="billing@helpdesk.example",
                       in_reply_to=first["Message-ID"], body="second reply")
    send(daemon, second, rcpts=["support@helpdesk.example", "billing@helpdesk.example"])
    rows = daemon.wait_outcomes(4)
    assert [r["outcome"] for r in rows] == ["new_ticket", "reply", "duplicate", "reply"]
    tickets = daemon.query("SELECT * FROM tickets")
    assert len(tickets) == 1
    assert len(daemon.query("SELECT * FROM messages")) == 3


def test_new_mail_to_two_departments_is_one_ticket(daemon: Instance):
    msg = make_mail(subject="Who handles this?", to="sales@helpdesk.example", cc="billing@helpdesk.example")
    send(daemon, msg, rcpts=["billing@helpdesk.example", "sales@helpdesk.example"])
    daemon.wait_outcomes(1)
    t = daemon.query("SELECT d.name FROM tickets t JOIN departments d ON d.id = t.department_id")
    assert [r["name"] for r in t] == ["Sales"]  # the To: address wins over Cc:


def test_8bit_and_smtputf8(daemon: Instance):
    raw = ("From: Jörg <jörg@client.example>\r\nTo: support@helpdesk.example\r\n"
           "Subject: Grüße aus Köln\r\nMessage-ID: <utf8-1@client.example>\r\n"
           "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
           "Schöne Grüße, 日本語も\r\n").encode()
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("8bitmime") and smtp.has_extn("smtputf8")
        smtp.sendmail("jörg@client.example", ["support@helpdesk.example"], raw,
                      mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    daemon.wait_outcomes(1)
    t = ticket(daemon, daemon.query("SELECT tid FROM tickets")[0]["tid"])
    assert t["subject"] == "Grüße aus Köln"
    assert "日本語も" in t["messages"][0]["body"]
    assert t["client_email"] == "jörg@client.example"


def test_queue_id_in_250_and_log_line(daemon: Instance):
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as smtp:
        smtp.ehlo()
        smtp.mail("alice@client.example")
        smtp.rcpt("support@helpdesk.example")
        code, text = smtp.data(make_mail().as_bytes())
    assert code == 250 and b"queued as 1" in text
    daemon.wait_outcomes(1)
    rows = json.loads(daemon.cli("import-log", "--json").stdout)["items"]
    assert rows[0]["outcome"] == "new_ticket" and rows[0]["source"] == "smtp"
    assert rows[0]["envelope_to"] == ["support@helpdesk.example"]
    for key in ("id", "received_at", "source", "envelope_from", "envelope_to", "from", "subject",
                "message_id", "outcome", "reason", "ticket"):
        assert key in rows[0]
