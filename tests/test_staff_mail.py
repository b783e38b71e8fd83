"""The conversation loop over real sockets: a client mails the daemon (SMTP), gets a confirmation through the
relay, staff get a notification, a staff member answers by replying to it, the client gets the answer
threaded under their first mail, and replies again. Then what must never happen: a forged staff From, a
note reaching a client, mail to an auto-responder, a blocked sender or a pending CC; bounces to signed
addresses."""

from __future__ import annotations

import email
import smtplib
import time
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest

from tests.helpers import Instance, make_mail
from tests.relay import Relay, Transaction

pytestmark = pytest.mark.both_engines  # the pipeline and the desk on SQLite and on PostgreSQL

CLIENT = "alice@client.example"
STAFF = "sam@helpdesk.example"


@pytest.fixture
def live(tmp_path: Path, relay: Relay, database_url: str) -> Iterator[Instance]:
    inst = Instance(tmp_path, extra_config=relay.outbound_toml(), database_url=database_url)
    inst.cli("staff", "add", STAFF, "--name", "Sam Staff", "--notify", "Technical Support")
    inst.cli("staff", "add", "boss@helpdesk.example", "--name", "Bo Boss", "--admin")
    inst.start()
    try:
        yield inst
    finally:
        if inst.proc is not None:
            inst.stop()


def send(inst: Instance, msg: EmailMessage, rcpt: str | None = None) -> None:
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as smtp:
        smtp.send_message(msg, to_addrs=[rcpt] if rcpt else None)


def parsed(t: Transaction) -> EmailMessage:
    msg = email.message_from_bytes(t.data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(msg: EmailMessage) -> str:
    body = msg.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def mail_to(relay: Relay, address: str, count: int = 1, timeout: float = 20) -> list[EmailMessage]:
    deadline = time.monotonic() + timeout
    while True:
        found = [parsed(t) for t in relay.transactions if address in t.rcpt_tos]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(found)} of {count} mails to {address}: "
                                 f"{[(t.rcpt_tos, parsed(t)['Subject']) for t in relay.transactions]}")
        time.sleep(0.05)


def reply_to(original: EmailMessage, sender: str, body: str, name: str = "") -> EmailMessage:
    """What a mail client makes of 'Reply': to the Reply-To, threaded, the original quoted."""
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>" if name else sender
    msg["To"] = original["Reply-To"]
    msg["Subject"] = f"Re: {original['Subject']}"
    msg["Message-ID"] = make_msgid(domain=sender.partition("@")[2])
    msg["In-Reply-To"] = original["Message-ID"]
    msg["References"] = f"{original.get('References', '')} {original['Message-ID']}".strip()
    quoted = "\n".join("> " + line for line in text_of(original).splitlines())
    msg.set_content(f"{body}\n\nOn Mon, 1 Jan 2030 at 10:00, {original['From']} wrote:\n{quoted}\n")
    return msg


def outcomes(inst: Instance, count: int) -> list[str]:
    return [f"{r['outcome']}:{r['reason']}" if r["reason"] else r["outcome"] for r in inst.wait_outcomes(count)]


def test_round_trip_client_staff_by_mail_client(live: Instance, relay: Relay):
    first = make_mail(subject="Printer on fire", sender=CLIENT)
    send(live, first)
    (confirmation,) = mail_to(relay, CLIENT)
    (notice,) = mail_to(relay, STAFF)
    tid = live.query("SELECT tid FROM tickets")[0]["tid"]
    assert confirmation["In-Reply-To"] == first["Message-ID"]
    assert confirmation["Auto-Submitted"] == "auto-replied"
    assert notice["Auto-Submitted"] == "auto-generated" and f"+t{tid}-s" in notice["Reply-To"]

    # Sam answers from his own mail client by replying to the notification.
    send(live, reply_to(notice, STAFF, "Hello Alice, please unplug it first.", "Sam"))
    answers = mail_to(relay, CLIENT, 2)
    answer = answers[1]
    assert answer["From"].addresses[0].display_name == "Sam Staff"
    said = text_of(answer).split("\n--")[0]    # above our footer: Sam's words and his ticket signature only
    assert "please unplug it first" in said and "wrote:" not in said and "Reply to answer" not in said
    assert answer["References"].split()[0] == first["Message-ID"]       # one thread, rooted at the first mail
    assert answer["In-Reply-To"] == first["Message-ID"]
    assert answer["Auto-Submitted"] is None
    assert live.cli_json("ticket", "show", tid)["status"] == "Answered"

    # The client replies to the answer: the same ticket, Customer-Reply; Sam hears of it.
    send(live, reply_to(answer, CLIENT, "It is unplugged and still smoking."))
    assert outcomes(live, 3) == ["new_ticket", "reply", "reply"]
    ticket = live.cli_json("ticket", "show", tid)
    assert ticket["status"] == "Customer-Reply"
    assert [m["kind"] for m in ticket["messages"]] == ["reply", "staff_reply", "reply"]
    assert ticket["messages"][1]["author_name"] == "Sam Staff"
    assert ticket["messages"][2]["body"].strip() == "It is unplugged and still smoking."
    assert len(mail_to(relay, STAFF, 2)) == 2
    assert len(live.query("SELECT 1 FROM tickets")) == 1


def test_note_and_commands_by_mail(live: Instance, relay: Relay):
    send(live, make_mail(subject="Slow site", sender=CLIENT))
    (notice,) = mail_to(relay, STAFF)
    tid = live.query("SELECT tid FROM tickets")[0]["tid"]
    client_mails = len(mail_to(relay, CLIENT))
    send(live, reply_to(notice, STAFF, "#note\nThe client is on the old plan. @boss please look.", "Sam"))
    send(live, reply_to(notice, STAFF, "#priority high\n#hold", "Sam"))
    send(live, reply_to(notice, STAFF, "#priority urgent", "Sam"))
    assert outcomes(live, 4) == ["new_ticket", "note", "command", "command:rejected"]
    ticket = live.cli_json("ticket", "show", tid)
    assert ticket["priority"] == "High" and ticket["status"] == "On Hold"
    note = ticket["messages"][1]
    assert note["kind"] == "note" and note["body"].startswith("The client is on the old plan")
    (mention,) = mail_to(relay, "boss@helpdesk.example")
    assert "old plan" in text_of(mention)
    (refusal,) = [m for m in mail_to(relay, STAFF, 2) if "Not done" in m["Subject"]]
    assert "#priority urgent" in text_of(refusal)
    # Nothing for the client from the note or the commands: the outbox rows commit with each outcome.
    queued = live.query("SELECT event, raw FROM outbox WHERE recipient = ?", (CLIENT,))
    assert [r["event"] for r in queued] == ["ticket_opened"] and client_mails == 1
    assert all(b"old plan" not in r["raw"] for r in live.query("SELECT raw FROM outbox WHERE audience = 'client'"))


def test_forged_staff_from_without_token_is_blocked(live: Instance, relay: Relay):
    first = make_mail(subject="Invoice", sender=CLIENT)
    send(live, first)
    tid = mail_to(relay, STAFF)[0]["Subject"].split("#")[1].split("]")[0]
    forged = make_mail(subject=f"Re: [Ticket #{tid}] Invoice", sender=STAFF, in_reply_to=first["Message-ID"],
                       body="#close\nRefund approved.")
    send(live, forged)
    # ... and a stolen staff token with someone else's From is no better.
    notice = mail_to(relay, STAFF)[0]
    send(live, reply_to(notice, "mallory@evil.example", "#close\nRefund approved."))
    assert outcomes(live, 3) == ["new_ticket", "blocked:unauthorised_sender", "blocked:unauthorised_sender"]
    assert live.cli_json("ticket", "show", tid)["status"] == "Open"


def test_no_mail_to_auto_responders_blocked_senders_or_pending_cc(live: Instance, relay: Relay):
    live.cli("clients", "add", CLIENT, "--account", "Client Co")
    ooo = make_mail(subject="Out of office", sender="away@client.example")
    ooo["Auto-Submitted"] = "auto-replied"
    send(live, ooo)
    live.cli("ban", "add", "spammer@bad.example")
    send(live, make_mail(subject="Buy now", sender="spammer@bad.example"))
    # A known client's unverified From copying a stranger: the CC is pending and gets nothing.
    send(live, make_mail(subject="Account question", sender=CLIENT, cc="mallory@evil.example"))
    assert outcomes(live, 3) == ["blocked:auto_reply", "blocked:banned", "new_ticket"]
    mail_to(relay, CLIENT)
    tid = live.query("SELECT tid FROM tickets")[0]["tid"]
    live.cli("ticket", "reply", tid, "--as", "boss", "--body-file", "-", input=b"Here is your account data.")
    assert len(mail_to(relay, CLIENT, 2)) == 2
    rcpts = {r["recipient"] for r in live.query("SELECT recipient FROM outbox")}   # all that will ever go
    assert not rcpts & {"away@client.example", "spammer@bad.example", "mallory@evil.example"}
    shown = live.cli("ticket", "show", tid).stdout.decode()
    assert "mallory@evil.example (pending)" in shown


def dsn_for(original: Transaction, to: str | None = None, status: str = "5.1.1") -> bytes:
    """The delivery report a relay sends back to our envelope sender about the mail ``original``: it names
    the recipient, not our Message-ID (many MTAs quote only the headers, some not even those)."""
    rcpt = original.rcpt_tos[0]
    return (f"From: Mail Delivery System <MAILER-DAEMON@mx.client.example>\r\n"
            f"To: {to or original.mail_from}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
            f"Message-ID: {make_msgid(domain='mx.client.example')}\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
            "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
            "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
            "Reporting-MTA: dns; mx.client.example\r\n\r\n"
            f"Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: {status}\r\n"
            f"Diagnostic-Code: smtp; 550 {status} no such user\r\n--B--\r\n").encode()


def bounce(inst: Instance, report: bytes, rcpt: str) -> None:
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as smtp:
        smtp.sendmail("<>", [rcpt], report)


def test_bounce_to_signed_address_marks_that_recipient(live: Instance, relay: Relay):
    send(live, make_mail(subject="Hello", sender="gone@client.example", cc="colleague@client.example"))
    confirmation = next(t for t in relay.wait_for(2) if "gone@client.example" in t.rcpt_tos)
    # A forged report (no signed address, nothing of ours quoted) and one to a tampered signature change nothing.
    bounce(live, dsn_for(confirmation, to="support@helpdesk.example"), "support@helpdesk.example")
    local, _, domain = confirmation.mail_from.partition("@")
    tampered = local[:-1] + ("a" if local[-1] != "a" else "b") + "@" + domain
    bounce(live, dsn_for(confirmation, to=tampered), tampered)
    # The genuine one, sent to the VERP address by the receiving MTA, with the null sender.
    bounce(live, dsn_for(confirmation), confirmation.mail_from)
    assert outcomes(live, 4) == ["new_ticket", "blocked:bounce", "blocked:bounce", "blocked:bounce"]
    marked = [tuple(r) for r in live.query("SELECT address, status FROM bounced_addresses")]
    assert marked == [("gone@client.example", "5.1.1")]
    # From now on no mail goes to that address; the ticket's log says why.
    tid = live.query("SELECT tid FROM tickets")[0]["tid"]
    before = len(relay.transactions)
    live.cli("staff", "add", "x@helpdesk.example", "--admin")
    live.cli("ticket", "reply", tid, "--as", "x", "--body-file", "-", input=b"Are you there?")
    log = live.cli_json("ticket", "log", tid)
    assert any(e["event"] == "mail_skipped" and e["detail"]["recipient"] == "gone@client.example" for e in log)
    assert {r for t in relay.wait_for(before + 1)[before:] for r in t.rcpt_tos} == {"colleague@client.example"}


def test_a_reply_with_nothing_new_sends_nothing(live: Instance, relay: Relay):
    """A staff member who hits Reply and sends without writing (or writes only below the quote, under their
    signature) must not mail the client the quoted notification: it may hold a private note."""
    send(live, make_mail(subject="Server down", sender=CLIENT))
    (notice,) = mail_to(relay, STAFF)
    tid = live.query("SELECT tid FROM tickets")[0]["tid"]
    send(live, reply_to(notice, STAFF, "#note\nThe client owes us 3 invoices; do not promise anything.", "Sam"))
    assert outcomes(live, 2) == ["new_ticket", "note"]
    empty = reply_to(notice, STAFF, "", "Sam")
    signed_only = reply_to(notice, STAFF, "\n-- \nSam Staff\nHelpdesk Example", "Sam")
    send(live, empty)
    send(live, signed_only)
    assert outcomes(live, 4) == ["new_ticket", "note", "command:rejected", "command:rejected"]
    assert [r["event"] for r in live.query("SELECT event FROM outbox WHERE recipient = ?", (CLIENT,))] == [
        "ticket_opened"]
    assert live.cli_json("ticket", "show", tid)["status"] == "Open"
    refusals = [m for m in mail_to(relay, STAFF, 3) if "Not done" in m["Subject"]]
    assert len(refusals) == 2 and "nothing new above the quoted mail" in text_of(refusals[0])


def test_staff_may_attach_any_file_type_by_mail(live: Instance, relay: Relay):
    """Seed: admins may attach any file type; a client's mail keeps to the allow-list."""
    client_mail = make_mail(subject="Config please", sender=CLIENT)
    client_mail.add_attachment(b"#!/bin/sh\necho client\n", maintype="application", subtype="octet-stream",
                               filename="client.xyz")
    send(live, client_mail)
    (notice,) = mail_to(relay, STAFF)
    answer = reply_to(notice, STAFF, "Here is the script.", "Sam")
    answer.add_attachment(b"#!/bin/sh\necho fixed\n", maintype="application", subtype="octet-stream",
                          filename="fix.xyz")
    send(live, answer)
    assert outcomes(live, 2) == ["new_ticket", "reply"]
    tid = live.query("SELECT tid FROM tickets")[0]["tid"]
    messages = live.cli_json("ticket", "show", tid)["messages"]
    assert [[a["filename"] for a in m["attachments"]] for m in messages] == [[], ["fix.xyz"]]
    got = mail_to(relay, CLIENT, 2)[1]
    assert [a.get_filename() for a in got.iter_attachments()] == ["fix.xyz"]
