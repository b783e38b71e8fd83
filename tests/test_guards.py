"""Guards: auto-replies, bounces, loops, banned senders and floods end as ``blocked`` with a reason,
raw mail kept, no ticket opened."""

from __future__ import annotations

import smtplib
import sqlite3
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.helpers import CORPUS, Instance, make_mail

pytestmark = pytest.mark.both_engines  # the pipeline and the desk on SQLite and on PostgreSQL


def ingest(instance: Instance, tmp_path: Path, *messages: bytes) -> list[dict]:
    folder = tmp_path / f"in{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    for i, raw in enumerate(messages):
        (folder / f"{i:04}.eml").write_bytes(raw)
    return instance.cli_json("ingest", str(folder))["items"]


def with_headers(**headers: str) -> bytes:
    msg = make_mail(subject=headers.pop("subject", "Hello"))
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    return msg.as_bytes()


AUTO_REPLIES = {
    "auto-submitted": {"Auto_Submitted": "auto-replied"},
    "auto-generated": {"Auto_Submitted": "auto-generated; owner-email=x@y"},
    "precedence bulk": {"Precedence": "bulk"},
    "precedence junk": {"Precedence": "junk"},
    "precedence list": {"Precedence": "list"},
    "x-autoreply": {"X_Autoreply": "yes"},
    "x-autorespond": {"X_Autorespond": "Vacation"},
    "exchange oof": {"X_Auto_Response_Suppress": "All", "subject": "Automatic reply: Printer on fire"},
}


@pytest.mark.parametrize("name", list(AUTO_REPLIES))
def test_auto_replies_are_blocked(instance: Instance, tmp_path, name):
    items = ingest(instance, tmp_path, with_headers(**AUTO_REPLIES[name]))
    assert (items[0]["outcome"], items[0]["reason"]) == ("blocked", "auto_reply")
    assert instance.cli_json("ticket", "list")["items"] == []
    log = instance.cli_json("import-log")["items"][0]
    assert instance.cli("import-log", "show", str(log["id"]), "--raw").stdout.startswith(b"From:")


def test_auto_submitted_no_and_plain_mail_pass(instance: Instance, tmp_path):
    items = ingest(instance, tmp_path, with_headers(Auto_Submitted="no"),
                   with_headers(X_Auto_Response_Suppress="All", subject="Meeting notes"))
    assert [i["outcome"] for i in items] == ["new_ticket", "new_ticket"]


def test_an_auto_reply_to_a_ticket_is_not_added(instance: Instance, tmp_path):
    first = make_mail(subject="Help")
    ingest(instance, tmp_path, first.as_bytes())
    oof = make_mail(subject="Automatic reply: Help", in_reply_to=first["Message-ID"])
    oof["Auto-Submitted"] = "auto-replied"
    items = ingest(instance, tmp_path, oof.as_bytes())
    assert (items[0]["outcome"], items[0]["reason"]) == ("blocked", "auto_reply")
    assert len(instance.query("SELECT * FROM messages")) == 1


def test_null_return_path_over_smtp_is_automatic(daemon: Instance):
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as smtp:
        smtp.send_message(make_mail(subject="from nobody"), from_addr="")
    rows = daemon.wait_outcomes(1)
    assert (rows[0]["outcome"], rows[0]["reason"]) == ("blocked", "auto_reply")


def test_null_return_path_in_a_file_is_automatic(instance: Instance, tmp_path):
    """Mail from a file or IMAP has no envelope: the Return-Path its MTA wrote says the same."""
    items = ingest(instance, tmp_path, b"Return-Path: <>\r\n" + make_mail(subject="plain words").as_bytes(),
                   b"Return-Path: <alice@client.example>\r\n" + make_mail(subject="a person").as_bytes())
    assert [(i["outcome"], i["reason"]) for i in items] == [("blocked", "auto_reply"), ("new_ticket", "")]


def dsn(original_id: str, recipient: str, status: str, action: str = "failed") -> bytes:
    report = EmailMessage()
    report["From"] = "Mail Delivery System <MAILER-DAEMON@mx.client.example>"
    report["To"] = "support@helpdesk.example"
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Message-ID"] = f"<dsn.{status}.{recipient}@mx.client.example>"
    report["Auto-Submitted"] = "auto-replied"
    report.set_content("This is the mail system. Your message could not be delivered.\n")
    report.make_mixed()
    raw = report.as_bytes().replace(b"multipart/mixed", b"multipart/report; report-type=delivery-status", 1)
    boundary = report.get_boundary().encode()
    status_part = (b"--" + boundary + b"\nContent-Type: message/delivery-status\n\n"
                   b"Reporting-MTA: dns; mx.client.example\n\n"
                   b"Final-Recipient: rfc822; " + recipient.encode() + b"\nAction: " + action.encode()
                   + b"\nStatus: " + status.encode() + b"\nDiagnostic-Code: smtp; 550 5.1.1 no such user\n\n"
                   b"--" + boundary + b"\nContent-Type: text/rfc822-headers\n\n"
                   b"From: support@helpdesk.example\nTo: " + recipient.encode() + b"\nMessage-ID: "
                   + original_id.encode() + b"\nSubject: [Ticket #1] reply\n\n")
    return raw.replace(b"--" + boundary + b"--", status_part + b"--" + boundary + b"--")




def test_bounce_quoting_our_message_id_marks_only_its_sole_recipient(instance: Instance, tmp_path):
    """The fallback for reports that do not come to a signed address: logged on the ticket, and the address
    marked only when the quoted mail went to that one address (a co-recipient could forge the report)."""
    first = make_mail(subject="Please help", sender="gone@client.example", cc="slow@client.example")
    ingest(instance, tmp_path, first.as_bytes())
    tid = instance.query("SELECT tid FROM tickets")[0]["tid"]
    shared = instance.query("SELECT DISTINCT message_id FROM outbox")[0]["message_id"]  # to gone and slow
    instance.cli("staff", "add", "sam@helpdesk.example", "--admin")
    instance.cli("ticket", "set", tid, "--as", "sam", "--cc-remove", "slow@client.example")
    instance.cli("ticket", "reply", tid, "--as", "sam", "--body-file", "-", input=b"Any news?")
    (sole,) = [r["message_id"] for r in instance.query("SELECT message_id FROM outbox WHERE event = 'admin_reply'")]
    items = ingest(instance, tmp_path, dsn(shared, "gone@client.example", "5.1.1"),
                   dsn(sole, "slow@client.example", "4.4.1", action="delayed"),
                   dsn(sole, "bystander@else.example", "5.1.1"), dsn(sole, "sam@helpdesk.example", "5.1.1"),
                   dsn(sole, "gone@client.example", "5.1.1"))
    assert [(i["outcome"], i["reason"], i["ticket"]) for i in items] == [("blocked", "bounce", tid)] * 5
    marked = instance.query("SELECT address, status, ticket_id FROM bounced_addresses")
    assert [tuple(r)[:2] for r in marked] == [("gone@client.example", "5.1.1")] and marked[0]["ticket_id"]
    events = [e for e in instance.cli_json("ticket", "show", tid)["log"] if e["event"] == "bounce"]
    assert [(e["detail"]["recipient"], e["detail"]["status"], e["detail"]["stops_mail"]) for e in events] == [
        ("gone@client.example", "5.1.1", False), ("slow@client.example", "4.4.1", False),
        ("bystander@else.example", "5.1.1", False), ("sam@helpdesk.example", "5.1.1", False),
        ("gone@client.example", "5.1.1", True)]
    assert len(instance.query("SELECT * FROM tickets")) == 1


def test_a_forged_bounce_about_mail_we_did_not_send_changes_nothing(instance: Instance, tmp_path):
    """A real-looking report from any mailer-daemon, quoting a Message-ID a client sent us (or none we
    know), is blocked and kept, but marks no address and tells no ticket."""
    first = make_mail(subject="Please help", sender="victim@client.example")
    ingest(instance, tmp_path, first.as_bytes())
    tid = instance.query("SELECT tid FROM tickets")[0]["tid"]
    forged = dsn(first["Message-ID"], "victim@client.example", "5.1.1").replace(
        b"MAILER-DAEMON@mx.client.example", b"mailer-daemon@evil.example")
    unknown = dsn("<never.sent@helpdesk.example>", "victim@client.example", "5.1.1")
    items = ingest(instance, tmp_path, forged, unknown)
    assert [(i["outcome"], i["reason"], i["ticket"]) for i in items] == [("blocked", "bounce", None)] * 2
    assert instance.query("SELECT count(*) AS n FROM bounced_addresses")[0]["n"] == 0
    assert not [e for e in instance.cli_json("ticket", "show", tid)["log"] if e["event"] == "bounce"]
    assert "not about mail we sent" in instance.query("SELECT detail FROM import_log WHERE outcome = 'blocked'"
                                                      " ORDER BY id LIMIT 1")[0]["detail"]


def test_mailer_daemon_without_a_report_is_a_bounce(instance: Instance, tmp_path):
    msg = make_mail(subject="failure notice", sender="MAILER-DAEMON@mx.client.example")
    items = ingest(instance, tmp_path, msg.as_bytes())
    assert (items[0]["outcome"], items[0]["reason"]) == ("blocked", "bounce")


def test_corpus_delivery_reports_are_bounces(instance: Instance, tmp_path):
    # Delivery reports that say who sent them (a few parser fixtures have neither From nor Return-Path).
    reports = [p for p in sorted(CORPUS.rglob("*.eml"))
               if b"report-type=delivery-status" in p.read_bytes().lower().replace(b'"', b"")
               and (b"\nfrom:" in p.read_bytes().lower() or b"\nreturn-path:" in p.read_bytes().lower())]
    assert len(reports) >= 20, "expected the corpus's delivery reports"
    items = ingest(instance, tmp_path, *(p.read_bytes() for p in reports))
    missed = [reports[n].name for n, i in enumerate(items) if i["outcome"] != "duplicate" and i["reason"] != "bounce"]
    # cpython's msg_05 is a report "From: foo" with no return path: nothing says a mailer sent it.
    assert missed == ["msg_05.eml"], missed


def test_loops_are_blocked(instance: Instance, tmp_path):
    ours = with_headers(X_Loop="ticketd@helpdesk.example", subject="our own notification")
    from_us = make_mail(subject="from ourselves", sender="billing@helpdesk.example").as_bytes()
    items = ingest(instance, tmp_path, ours, from_us)
    assert [(i["outcome"], i["reason"]) for i in items] == [("blocked", "loop")] * 2


def test_banned_sender_and_domain(instance: Instance, tmp_path):
    instance.cli("ban", "add", "spammer@client.example", "--reason", "abuse")
    instance.cli("ban", "add", "*@junk.example")
    items = ingest(instance, tmp_path, make_mail(sender="spammer@client.example").as_bytes(),
                   make_mail(sender="anyone@junk.example").as_bytes(),
                   make_mail(sender="friend@client.example").as_bytes())
    assert [(i["outcome"], i["reason"]) for i in items] == [
        ("blocked", "banned"), ("blocked", "banned"), ("new_ticket", "")]
    assert [b["pattern"] for b in instance.cli_json("ban", "list")["items"]] == [
        "*@junk.example", "spammer@client.example"]
    assert instance.cli("ban", "remove", "*@junk.example").returncode == 0
    assert instance.cli("ban", "remove", "*@junk.example", check=False).returncode == 66
    assert instance.cli("ban", "add", "not-an-address", check=False).returncode == 65
    items = ingest(instance, tmp_path, make_mail(sender="anyone@junk.example", subject="again").as_bytes())
    assert items[0]["outcome"] == "new_ticket"


@pytest.mark.sqlite_only   # moves the tickets back an hour with SQLite's strftime
def test_flood_from_one_sender_is_rate_limited(tmp_path):
    inst = Instance(tmp_path, rate_limit=3)
    first = make_mail(subject="flood 0")
    mails = [first.as_bytes()] + [make_mail(subject=f"flood {i}").as_bytes() for i in range(1, 6)]
    mails.append(make_mail(subject="Re: flood 0", in_reply_to=first["Message-ID"]).as_bytes())
    mails.append(make_mail(subject="someone else", sender="other@client.example").as_bytes())
    items = ingest(inst, tmp_path, *mails)
    assert [(i["outcome"], i["reason"]) for i in items] == [("new_ticket", "")] * 3 + [
        ("blocked", "rate_limited")] * 3 + [("reply", ""), ("new_ticket", "")]
    # An hour later (the default window) the sender may open tickets again: move the three back 61 minutes.
    conn = sqlite3.connect(inst.db_path)
    with conn:
        conn.execute("UPDATE tickets SET created_at = strftime('%Y-%m-%dT%H:%M:%fZ', created_at, '-61 minutes')")
    conn.close()
    later = ingest(inst, tmp_path, make_mail(subject="flood again").as_bytes(),
                   make_mail(subject="flood again 2").as_bytes())
    assert [i["outcome"] for i in later] == ["new_ticket", "new_ticket"]


def test_an_unclear_from_neither_hides_a_banned_sender_nor_escapes_the_limit(tmp_path):
    inst = Instance(tmp_path, rate_limit=2)
    inst.cli("ban", "add", "*@junk.example")

    def unclear(sender: str, subject: str) -> bytes:
        msg = make_mail(subject=subject)
        msg.replace_header("From", sender)
        return msg.as_bytes()

    hidden = [unclear("friend@client.example <spam@junk.example>", "a"),
              unclear("friend@client.example, spam@junk.example", "b")]
    assert [(i["outcome"], i["reason"]) for i in ingest(inst, tmp_path, *hidden)] == [("blocked", "banned")] * 2
    flood = [unclear(f"x{i}@client.example, y{i}@client.example", f"flood {i}") for i in range(4)]
    assert [(i["outcome"], i["reason"]) for i in ingest(inst, tmp_path, *flood)] == [
        ("new_ticket", ""), ("new_ticket", ""), ("blocked", "rate_limited"), ("blocked", "rate_limited")]


def test_a_report_from_an_ordinary_sender_is_not_a_bounce(instance: Instance, tmp_path):
    """Anyone can write a delivery report; trusting one would let a stranger silence an address."""
    first = make_mail(subject="Please help", sender="owner@client.example")
    ingest(instance, tmp_path, first.as_bytes())
    forged = dsn(first["Message-ID"], "owner@client.example", "5.1.1").replace(
        b"MAILER-DAEMON@mx.client.example", b"attacker@evil.example")
    items = ingest(instance, tmp_path, forged)
    assert items[0]["reason"] != "bounce"
    assert instance.query("SELECT count(*) AS n FROM bounced_addresses")[0]["n"] == 0
    postmaster = make_mail(subject="A question from our postmaster", sender="postmaster@customer.example")
    assert ingest(instance, tmp_path, postmaster.as_bytes())[0]["outcome"] == "new_ticket"
