"""The desk through its command-line front end: rights, collision detection, opening a ticket for a client,
replies with attachments, options, watching, the log; and the threading headers of a long ticket."""

from __future__ import annotations

import email
import json
import re
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from maild import config
from maild.app import App
from maild.spool import Incoming
from maild.spoolwriter import spool_many
from tests.helpers import Instance, make_mail

pytestmark = pytest.mark.both_engines  # the pipeline and the desk on SQLite and on PostgreSQL

CLIENT = "alice@client.example"


@pytest.fixture
def desk(tmp_path: Path, database_url: str) -> Instance:
    inst = Instance(tmp_path, database_url=database_url)
    inst.cli("staff", "add", "ann@helpdesk.example", "--name", "Ann Admin", "--admin")
    inst.cli("staff", "add", "ben@helpdesk.example", "--name", "Ben Billing", "--departments", "Billing")
    return inst


def ingest(inst: Instance, *mails: EmailMessage) -> list[dict]:
    folder = inst.root / f"in{len(list(inst.root.glob('in*')))}"
    folder.mkdir()
    for i, msg in enumerate(mails):
        (folder / f"{i:03}.eml").write_bytes(msg.as_bytes())
    return inst.cli_json("ingest", str(folder))["items"]


def act(inst: Instance, *args: str, body: bytes | None = None) -> dict:
    return json.loads(inst.cli("ticket", *args, "--json", input=body).stdout)


def outbox(inst: Instance, event: str) -> list[EmailMessage]:
    rows = inst.query("SELECT raw FROM outbox WHERE event = ? ORDER BY id", (event,))
    return [email.message_from_bytes(r["raw"], policy=policy.default) for r in rows]  # type: ignore[misc]


def test_staff_only_in_their_departments(desk: Instance):
    (item,) = ingest(desk, make_mail(sender=CLIENT))
    tid = item["ticket"]
    denied = desk.cli("ticket", "reply", tid, "--as", "ben", "--body-file", "-", input=b"hi", check=False)
    assert denied.returncode == 77 and b"does not work in department 'Technical Support'" in denied.stderr
    assert desk.cli("ticket", "note", "999999", "--as", "ann", "--body-file", "-", input=b"x",
                    check=False).returncode == 66
    assert desk.cli("ticket", "reply", tid, "--as", "nobody", "--body-file", "-", input=b"x",
                    check=False).returncode == 66
    assert desk.cli("ticket", "reply", tid, "--body-file", "-", input=b"x", check=False).returncode == 64
    assert desk.cli("ticket", "set", tid, "--as", "ann", "--status", "Bogus", check=False).returncode == 65
    # An admin moves it to Billing: now Ben may answer it.
    act(desk, "set", tid, "--as", "ann", "--department", "Billing")
    assert act(desk, "reply", tid, "--as", "ben", body=b"Your invoice is attached.")["events"][0]["event"] == \
        "admin_reply"


def test_open_for_a_client_with_an_attachment(desk: Instance, tmp_path: Path):
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4\n" + b"x" * 2000)
    desk.cli("staff", "set", "ben", "--notify", "Billing")
    out = act(desk, "open", "--as", "ann", "--department", "Billing", "--to", "Carol Client <carol@client.example>",
              "--name", "Carol Client", "--subject", "Your refund", "--attach", str(report),
              body=b"Dear [FIRSTNAME], your refund is on its way.")
    tid = out["tid"]
    ticket = desk.cli_json("ticket", "show", tid)
    assert ticket["client_email"] == "carol@client.example" and ticket["department"] == "Billing"
    (first,) = ticket["messages"]
    assert first["kind"] == "staff_reply" and first["author_name"] == "Ann Admin"
    assert re.fullmatch(r"<t[1-9][0-9]*\.[0-9a-f]+@helpdesk\.example>", first["message_id"])  # names the ticket
    assert first["body"].startswith("Dear Carol, your refund") and first["attachments"][0]["filename"] == "report.pdf"
    mail, staff_mail = outbox(desk, "ticket_opened")
    assert staff_mail["To"].addresses[0].addr_spec == "ben@helpdesk.example"
    assert list(staff_mail.iter_attachments()) == [] and "report.pdf" in staff_mail.get_body(("plain",)).get_content()
    assert mail["To"].addresses[0].addr_spec == "carol@client.example"
    assert mail["From"].addresses[0].display_name == "Ann Admin"
    assert mail["Auto-Submitted"] is None      # a person's message, not an automatic confirmation
    (attached,) = list(mail.iter_attachments())
    assert attached.get_filename() == "report.pdf" and attached.get_content().startswith(b"%PDF-1.4")
    assert "your refund is on its way" in mail.get_body(("plain",)).get_content()


def test_options_watch_and_log(desk: Instance):
    (item,) = ingest(desk, make_mail(sender=CLIENT, subject="Disk full"))
    tid = item["ticket"]
    refused = desk.cli("ticket", "set", tid, "--as", "ann", "--assign", "ben", check=False)
    assert refused.returncode == 65 and b"ben does not work in the ticket's department" in refused.stderr
    desk.cli("staff", "set", "ben", "--departments", "Billing,Technical Support")
    out = act(desk, "set", tid, "--as", "ann", "--priority", "high", "--subject", "Disk full on db1",
              "--assign", "ben", "--flag", "ben", "--cc-add", "dba@client.example", "--status", "in progress")
    assert [e["event"] for e in out["events"]] == ["assigned", "flagged", "options_changed"]
    changes = out["events"][2]["changes"]
    assert changes["priority"] == ["Medium", "High"] and changes["status"] == ["Open", "In Progress"]
    assert changes["cc"] == ["", "dba@client.example"]
    assert act(desk, "watch", tid, "--as", "ann")["notes"] == []
    assert act(desk, "watch", tid, "--as", "ann")["notes"] == [f"ann was already watching #{tid}"]
    shown = desk.cli_json("ticket", "show", tid)
    assert (shown["priority"], shown["assigned"], shown["flagged"]) == ("High", "ben", "ben")
    assert shown["watchers"] == ["ann"]
    assert act(desk, "close", tid, "--as", "ann")["events"][0]["event"] == "closed"
    assert act(desk, "close", tid, "--as", "ann")["events"] == []       # closing twice changes nothing
    log = [(e["event"], e["actor"]) for e in desk.cli_json("ticket", "log", tid)]
    assert log == [("opened", CLIENT), ("assigned", "ann"), ("flagged", "ann"), ("options_changed", "ann"),
                   ("watched", "ann"), ("closed", "ann")]
    # The closure notice went to the client and the (confirmed, staff-added) CC recipient.
    assert {r["recipient"] for r in desk.query("SELECT recipient FROM outbox WHERE event = 'closed'")} == {
        CLIENT, "dba@client.example"}


def test_collision_lists_what_changed(desk: Instance):
    (item,) = ingest(desk, make_mail(sender=CLIENT))
    tid = item["ticket"]
    seen = desk.cli_json("ticket", "show", tid)
    act(desk, "set", tid, "--as", "ann", "--priority", "High")          # someone else changes it meanwhile
    proc = desk.cli("ticket", "set", tid, "--as", "ann", "--status", "Closed", "--expect", "priority=Medium",
                    "--expect", f"last_reply_at={seen['last_reply_at']}", check=False)
    assert proc.returncode == 75 and b"priority: 'Medium' \xe2\x86\x92 'High'" in proc.stderr
    assert desk.cli_json("ticket", "show", tid)["status"] == "Open"
    unknown = desk.cli("ticket", "close", tid, "--as", "ann", "--expect", "colour=red", check=False)
    assert unknown.returncode == 65


async def test_long_ticket_keeps_threading_headers_small(desk: Instance):
    """200 messages, client and staff taking turns, with long Message-IDs: the header block of our next mail
    stays under 4 KB, References still start at the first mail and end at the newest."""
    first = make_mail(sender=CLIENT, subject="Flaky VPN")
    (item,) = ingest(desk, first)
    tid = item["ticket"]
    previous = first["Message-ID"]
    async with App(config.load(desk.config)) as app:
        assert app.worker is not None
        ann = await app.desk.actor("ann")
        for i in range(100):
            reply = make_mail(sender=CLIENT, subject=f"Re: [Ticket #{tid}] Flaky VPN", in_reply_to=previous,
                              message_id=f"<{'x' * 180}.{i}@client.example>", body=f"Still flaky ({i}).")
            await spool_many(app.db, [Incoming(raw=reply.as_bytes(), source="ingest")], app.clock.stamp())
            assert [r.outcome.name for r in await app.worker.drain()] == ["reply"]
            await app.desk.reply(ann, tid, f"Try again ({i}).")
            previous = reply["Message-ID"]
    last = outbox(desk, "admin_reply")[-1]
    refs = last["References"].split()
    assert refs[0] == first["Message-ID"] and refs[-1] == previous and len(refs) < 200
    assert last["In-Reply-To"] == previous
    raw = desk.query("SELECT raw FROM outbox WHERE event = 'admin_reply' ORDER BY id DESC LIMIT 1")[0]["raw"]
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert len(header_block) < 4096, len(header_block)
    assert str(last["Subject"]).count(f"[Ticket #{tid}]") == 1


def test_adding_a_staff_member_again_changes_only_what_is_given(desk: Instance):
    desk.cli("staff", "add", "ben@helpdesk.example", "--name", "Benjamin")
    (ben,) = [s for s in desk.cli_json("staff", "list")["items"] if s["email"] == "ben@helpdesk.example"]
    assert (ben["username"], ben["name"], ben["departments"]) == ("ben", "Benjamin", ["Billing"])


def test_a_reply_that_closes_tells_the_client_once(desk: Instance):
    (item,) = ingest(desk, make_mail(sender=CLIENT))
    tid = item["ticket"]
    desk.cli("staff", "set", "ben", "--departments", "Billing,Technical Support")
    act(desk, "watch", tid, "--as", "ben")
    out = act(desk, "reply", tid, "--as", "ann", "--status", "Closed", body=b"Fixed, closing this.")
    assert [e["event"] for e in out["events"]] == ["admin_reply", "closed"]
    rows = desk.query("SELECT event, recipient, raw FROM outbox WHERE event IN ('admin_reply', 'closed')")
    assert sorted((r["event"], r["recipient"]) for r in rows) == [
        ("admin_reply", CLIENT), ("admin_reply", "ben@helpdesk.example"), ("closed", "ben@helpdesk.example")]
    client = next(r["raw"] for r in rows if r["recipient"] == CLIENT)
    assert b"This ticket is now closed" in client


def test_mentions_reach_only_staff_who_may_see_the_ticket(desk: Instance):
    (item,) = ingest(desk, make_mail(sender=CLIENT))
    tid = item["ticket"]
    desk.cli("staff", "add", "tess@helpdesk.example", "--departments", "Technical Support")
    out = act(desk, "note", tid, "--as", "ann", body=b"@tess @ben @nobody please check")
    assert out["notes"] == ["not mentioned (no such staff member, or not in department 'Technical Support'):"
                            " @ben, @nobody"]
    assert [r["recipient"] for r in desk.query("SELECT recipient FROM outbox WHERE event = 'note_added'")] == [
        "tess@helpdesk.example"]


def test_cc_recipients_see_only_the_requester(desk: Instance):
    """Every client copy is addressed To the ticket's requester: a CC recipient never sees the account owner,
    who gets a copy without being named."""
    desk.cli("clients", "add", "olivia@acme.example", "--account", "Acme", "--name", "Olivia Owner")
    desk.cli("clients", "add", "ursula@acme.example", "--account", "Acme", "--role", "user")
    (item,) = ingest(desk, make_mail(sender="ursula@acme.example"))
    tid = item["ticket"]
    act(desk, "set", tid, "--as", "ann", "--cc-add", "cc@partner.example")
    act(desk, "reply", tid, "--as", "ann", body=b"Hello")
    rows = desk.query("SELECT recipient, raw FROM outbox WHERE event = 'admin_reply'")
    assert sorted(r["recipient"] for r in rows) == ["cc@partner.example", "olivia@acme.example", "ursula@acme.example"]
    for r in rows:
        msg = email.message_from_bytes(r["raw"], policy=policy.default)
        assert [a.addr_spec for a in msg["To"].addresses] == ["ursula@acme.example"]
        assert [a.addr_spec for a in msg["Cc"].addresses] == ["cc@partner.example"]
        assert b"olivia" not in r["raw"]
