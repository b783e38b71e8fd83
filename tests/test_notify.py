"""Notifications: each event reaches exactly the recipients of its rule row, delivered through a real SMTP
relay (tests/relay.py). The expected recipients are computed from the rules table and who is in each group
at that moment, so the test follows the table rather than repeating it."""

from __future__ import annotations

import email
import hashlib
import json
import re
from email import policy
from pathlib import Path

import pytest

from maild import config
from maild.app import App
from maild.desk.events import Actor, Event, EventKind
from maild.desk.options import Options
from maild.notify import rules as R
from maild.notify.send import OutboxSender
from maild.notify.tokens import tag_of
from maild.store import outbox
from tests.helpers import Instance, ingest, make_mail
from tests.relay import Relay

ADMIN, WATCHER, MEMBER, BILLER, FLAGGEE, ASSIGNEE, MENTIONED = (
    "ann", "wally", "dora", "bill", "fred", "ava", "mia")
REQUESTER, OWNER, CONTACT, CC = ("ursula@acme.example", "olivia@acme.example", "carl@acme.example",
                                 "cc@partner.example")


def staff_address(username: str) -> str:
    return f"{username}@helpdesk.example"


@pytest.fixture
def desk(tmp_path: Path, relay: Relay) -> Instance:
    inst = Instance(tmp_path, extra_config=relay.outbound_toml())
    inst.cli("staff", "add", staff_address(ADMIN), "--name", "Ann Admin", "--admin")
    inst.cli("staff", "add", staff_address(WATCHER), "--name", "Wally Watcher")
    inst.cli("staff", "add", staff_address(MEMBER), "--name", "Dora", "--departments", "Technical Support",
             "--notify", "Technical Support")
    inst.cli("staff", "add", staff_address(BILLER), "--name", "Bill", "--departments", "Billing", "--notify", "Billing")
    for name in (FLAGGEE, ASSIGNEE, MENTIONED):
        inst.cli("staff", "add", staff_address(name), "--name", name.capitalize())
    inst.cli("clients", "add", OWNER, "--account", "Acme", "--name", "Olivia Owner")
    inst.cli("clients", "add", REQUESTER, "--account", "Acme", "--role", "user", "--name", "Ursula User")
    inst.cli("clients", "add", CONTACT, "--account", "Acme", "--role", "contact", "--name", "Carl Contact")
    return inst


class World:
    """Who is in each recipient group right now; the test changes it as the ticket changes."""

    def __init__(self) -> None:
        self.department = {MEMBER}
        self.flagged: str | None = None
        self.assigned: str | None = None
        self.mentioned: set[str] = set()
        self.cc_confirmed = False

    def members(self, group: str, event: EventKind, about: str | None) -> set[str]:
        staff = {
            R.WATCHERS: {WATCHER},
            R.DEPARTMENT: self.department,
            R.DEPARTMENT_UNFLAGGED: set() if self.flagged else self.department,
            R.FLAGGED: {about} if event is EventKind.FLAGGED and about else ({self.flagged} if self.flagged else set()),
            R.ASSIGNED: {about} if event in (EventKind.ASSIGNED, EventKind.UNASSIGNED) and about
            else ({self.assigned} if self.assigned else set()),
            R.MENTIONED: self.mentioned,
        }
        if group in staff:
            return {staff_address(u) for u in staff[group]}
        return {R.REQUESTER: {REQUESTER}, R.OWNER: {OWNER}, R.USERS: {REQUESTER}, R.CONTACTS: {CONTACT},
                R.CC: {CC} if self.cc_confirmed else set()}[group]

    def expected(self, event: EventKind, actor: str, about: str | None = None) -> set[str]:
        found: set[str] = set()
        for group in R.DEFAULT_RULES[event]:
            found |= self.members(group, event, about)
        if not (event is EventKind.TICKET_OPENED and actor == REQUESTER):
            found.discard(actor)
        return found


async def test_every_event_reaches_exactly_its_rule_row(desk: Instance, relay: Relay):
    settings = config.load(desk.config)
    world = World()
    first = make_mail(subject="Server down", sender=REQUESTER, cc=CC)
    tid = ingest(desk, first)["ticket"]
    seen: set[EventKind] = set()

    async with App(settings) as app:
        sender = OutboxSender(app.db, settings, app.clock, app.signer)
        ann = await app.desk.actor(ADMIN)

        async def delivered() -> set[str]:
            before = len(relay.transactions)
            await sender.run_until_empty()
            got = relay.transactions[before:]
            for t in got:  # every mail leaves with a signed bounce address for its one recipient
                (rcpt,) = t.rcpt_tos
                assert app.signer.verify_bounce_tag(tag_of(t.mail_from) or "", rcpt) is not None
            return {r for t in got for r in t.rcpt_tos}

        async def step(event: EventKind, actor: str, about: str | None = None) -> None:
            seen.add(event)
            assert await delivered() == world.expected(event, actor, about), event

        # The ticket was opened by mail: the department, the requester and the owner; the CC recipient came
        # with the mail of a known client whose From nobody verified, so it is pending and gets nothing.
        await step(EventKind.TICKET_OPENED, REQUESTER)
        await app.desk.watch(await app.desk.actor(WATCHER), tid)
        await app.desk.set_options(ann, tid, Options(cc_add=[CC]))      # staff confirm it
        world.cc_confirmed = True
        await step(EventKind.OPTIONS_CHANGED, staff_address(ADMIN))
        ingest(desk, make_mail(subject=f"Re: [Ticket #{tid}] Server down", sender=REQUESTER,
                               in_reply_to=first["Message-ID"]))
        await step(EventKind.CLIENT_REPLY, REQUESTER)
        await app.desk.reply(ann, tid, "Looking into it, [FIRSTNAME].")
        await step(EventKind.ADMIN_REPLY, staff_address(ADMIN))
        world.mentioned = {MENTIONED}
        await app.desk.note(ann, tid, f"@{MENTIONED} can you check the RAID?")
        await step(EventKind.NOTE_ADDED, staff_address(ADMIN))
        await app.desk.set_options(ann, tid, Options(assign=ASSIGNEE))
        world.assigned = ASSIGNEE
        await step(EventKind.ASSIGNED, staff_address(ADMIN), ASSIGNEE)
        await app.desk.set_options(ann, tid, Options(department="Billing"))
        world.department = {BILLER}
        await step(EventKind.DEPARTMENT_CHANGED, staff_address(ADMIN))
        await app.desk.set_options(ann, tid, Options(flag=FLAGGEE))
        world.flagged = FLAGGEE
        await step(EventKind.FLAGGED, staff_address(ADMIN), FLAGGEE)
        ingest(desk, make_mail(subject=f"Re: [Ticket #{tid}] Server down", sender=REQUESTER,
                               in_reply_to=first["Message-ID"]))
        await step(EventKind.CLIENT_REPLY, REQUESTER)   # flagged now: the department hears nothing
        await app.desk.set_options(ann, tid, Options(unassign=True))
        world.assigned = None
        await step(EventKind.UNASSIGNED, staff_address(ADMIN), ASSIGNEE)
        await app.desk.set_options(ann, tid, Options(flag=ADMIN))          # flagging yourself sends nothing
        world.flagged = ADMIN
        assert await delivered() == set()
        wally = await app.desk.actor(WATCHER)
        await app.desk.reply(wally, tid, "Fixed.")                          # a watcher acting gets no copy
        await step(EventKind.ADMIN_REPLY, staff_address(WATCHER))
        await app.desk.close(ann, tid)
        await step(EventKind.CLOSED, staff_address(ADMIN))
        # The scheduler's events go through the same rules (it calls the notifier the same way).
        ticket = await app.desk.ticket(tid)
        world.mentioned = set()     # an escalation names its `notify` staff as mentioned: this one names none
        for kind in (EventKind.AUTO_CLOSED, EventKind.ESCALATED, EventKind.FEEDBACK_REQUEST):
            async with app.db.transaction():
                await app.notifier.follow([Event(kind, ticket.id, Actor.system("scheduler"))])
            await step(kind, "scheduler")
        # A department change while flagged: only the flagged admin and watchers.
        await app.desk.set_options(ann, tid, Options(department="Technical Support"))
        world.department = {MEMBER}
        await step(EventKind.DEPARTMENT_CHANGED, staff_address(ADMIN))
    assert seen == set(EventKind), f"events not exercised: {set(EventKind) - seen}"


async def test_notes_never_reach_a_client_even_by_override(tmp_path: Path, relay: Relay):
    inst = Instance(tmp_path, extra_config=relay.outbound_toml()
                    + '\n[notifications.rules]\nadmin_reply = ["requester"]\n')
    inst.cli("staff", "add", staff_address(ADMIN), "--admin")
    tid = ingest(inst, make_mail(sender=REQUESTER))["ticket"]
    settings = config.load(inst.config)
    assert settings.notifications.rules == {"admin_reply": ("requester",)}
    async with App(settings) as app:
        ann = await app.desk.actor(ADMIN)
        await app.desk.note(ann, tid, "internal: the client is on the old plan")
        await app.desk.reply(ann, tid, "Hello")
        rows = await outbox.listing(app.db, limit=100)
    by_event: dict[str, set[str]] = {}
    for row in rows:
        by_event.setdefault(row.event, set()).add(row.recipient)
    assert "note_added" not in by_event          # no watcher, nobody mentioned: nobody; never the client
    assert by_event["admin_reply"] == {REQUESTER}  # the override row replaced the default
    refused = tmp_path / "bad.toml"
    refused.write_text(inst.config.read_text().replace('admin_reply = ["requester"]', 'note_added = ["cc"]'))
    with pytest.raises(config.ConfigError, match="notifications.rules.note_added"):
        config.load(refused)


def test_rules_table_is_documented_in_the_readme():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for kind, groups in R.DEFAULT_RULES.items():
        line = next((ln for ln in readme.splitlines() if ln.startswith(f"| `{kind.value}`")), None)
        assert line is not None, f"README has no row for {kind.value}"
        for group in groups:
            assert f"`{group}`" in line, f"README's {kind.value} row misses {group}"


def test_outbox_rows_are_in_the_same_transaction_as_the_change(desk: Instance):
    """A desk action that is refused writes nothing at all: no ticket change, no log row, no outbox row."""
    tid = ingest(desk, make_mail(sender=REQUESTER))["ticket"]
    before = desk.query("SELECT count(*) AS n FROM outbox")[0]["n"]
    log_before = desk.query("SELECT count(*) AS n FROM ticket_log")[0]["n"]
    proc = desk.cli("ticket", "reply", tid, "--as", ADMIN, "--body-file", "-", "--expect", "status=Answered",
                    input=b"hello", check=False)
    assert proc.returncode == 75 and b"status: 'Answered'" in proc.stderr
    assert desk.query("SELECT count(*) AS n FROM outbox")[0]["n"] == before
    assert desk.query("SELECT count(*) AS n FROM ticket_log")[0]["n"] == log_before
    out = json.loads(desk.cli("ticket", "reply", tid, "--as", ADMIN, "--body-file", "-", "--json",
                              "--expect", "status=Open", input=b"hello").stdout)
    assert [e["event"] for e in out["events"]] == ["admin_reply"]
    assert desk.query("SELECT count(*) AS n FROM outbox")[0]["n"] > before


def test_client_mail_headers(desk: Instance, relay: Relay):
    """A staff reply as the client receives it: the staff member's name, merge fields, signature, markdown as
    HTML with a text alternative, one token in the subject, threaded under the client's first mail."""
    first = make_mail(subject="Re: AW: Drucker kaputt", sender=REQUESTER)
    first["Thread-Index"] = "AdlH8l1vvQ4Ed+U6QrKp7M5kUAo8ZQ=="
    tid = ingest(desk, first)["ticket"]
    sig = desk.root / "sig.txt"
    sig.write_text("Ann Admin\nHelpdesk Example Ltd\n")
    desk.cli("staff", "set", ADMIN, "--signature-file", str(sig))
    desk.cli("ticket", "reply", tid, "--as", ADMIN, "--body-file", "-",
             input=b"Hello [FIRSTNAME],\n\nplease **restart** it.\n")
    rows = desk.query("SELECT raw FROM outbox WHERE event = 'admin_reply' AND recipient = ?", (REQUESTER,))
    msg = email.message_from_bytes(rows[0]["raw"], policy=policy.default)
    assert msg["From"].addresses[0].display_name == "Ann Admin"
    assert str(msg["Subject"]).count(f"[Ticket #{tid}]") == 1 and "AW:" not in str(msg["Subject"])
    assert msg["In-Reply-To"] == first["Message-ID"]
    assert msg["References"].split()[0] == first["Message-ID"]
    assert msg["Auto-Submitted"] is None and msg["X-Auto-Response-Suppress"] is None  # a person wrote it
    assert msg["Thread-Index"].startswith("AdlH8l1vvQ4Ed+U6QrKp7M5kUAo8Z") and msg["Thread-Topic"]
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "Hello Alice," in text and "Helpdesk Example Ltd" in text and "**restart**" in text
    assert "<strong>restart</strong>" in html
    # The requester's own link: its key's hash is stored for this ticket and this recipient alone.
    key = re.search(r"/c/([A-Za-z0-9_-]{32})(?![A-Za-z0-9_-])", text)
    assert key is not None, text
    (link,) = desk.query("SELECT l.recipient, t.tid FROM client_links l JOIN tickets t ON t.id = l.ticket_id"
                         " WHERE l.key_hash = ?", (hashlib.sha256(key.group(1).encode()).hexdigest(),))
    assert (link["recipient"], link["tid"]) == (REQUESTER, tid)
    assert tag_of(msg["Reply-To"].addresses[0].addr_spec)


class ManualClock:
    """The injected time: the test moves it."""

    def __init__(self) -> None:
        from datetime import UTC, datetime

        self.now = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)

    def __call__(self):
        return self.now


async def test_automatic_mail_cap_and_bounce_marks_expire(tmp_path: Path):
    from datetime import timedelta

    from maild.clock import Clock
    from maild.spool import Incoming
    from maild.spoolwriter import spool_many
    from maild.store import senders

    inst = Instance(tmp_path, extra_config="\n[notifications]\nauto_per_hour = 2\nbounce_hold_days = 30\n")
    inst.cli("staff", "add", staff_address(ADMIN), "--admin", "--notify", "Technical Support")
    settings = config.load(inst.config)
    time = ManualClock()
    async with App(settings, clock=Clock(time)) as app:
        assert app.worker is not None

        async def mail_from(sender: str, subject: str) -> None:
            raw = make_mail(sender=sender, subject=subject).as_bytes()
            await spool_many(app.db, [Incoming(raw=raw, source="ingest")], app.clock.stamp())
            assert [r.outcome.name for r in await app.worker.drain()] == ["new_ticket"]

        async def confirmations(address: str) -> int:
            return len([r for r in await outbox.listing(app.db, limit=1000)
                        if r.recipient == address and r.event == "ticket_opened"])

        for i in range(3):
            await mail_from(REQUESTER, f"Problem {i}")
            time.now += timedelta(minutes=5)
        assert await confirmations(REQUESTER) == 2          # the third in the hour is not answered
        assert await confirmations(staff_address(ADMIN)) == 3   # staff hear of every ticket
        rows = await app.db.fetchall("SELECT detail FROM ticket_log WHERE event = 'mail_skipped'")
        assert len(rows) == 1 and "auto_per_hour = 2" in json.loads(rows[0]["detail"])["reason"]
        time.now += timedelta(hours=1)
        await mail_from(REQUESTER, "Problem 3")
        assert await confirmations(REQUESTER) == 3          # a new hour, a new allowance

        # A hard bounce stops mail to the address until the mark expires.
        async with app.db.transaction():
            await senders.record_bounce(app.db, CONTACT, "5.1.1", "no such user", None, app.clock.stamp())
        await mail_from(CONTACT, "Hello")
        assert await confirmations(CONTACT) == 0
        time.now += timedelta(days=31)
        await mail_from(CONTACT, "Hello again")
        assert await confirmations(CONTACT) == 1


def test_the_rules_table_never_sends_a_note_to_a_client():
    table = R.rules({"note_added": ("requester", "watchers", "cc"), "closed": ("watchers",)})
    assert table[EventKind.NOTE_ADDED] == ("watchers",)
    assert table[EventKind.CLOSED] == ("watchers",)
    assert table[EventKind.ADMIN_REPLY] == R.DEFAULT_RULES[EventKind.ADMIN_REPLY]


def test_a_rendering_is_shared_only_by_templates_that_do_not_name_their_recipient(tmp_path: Path):
    from maild.notify.render import Renderer

    builtin = Renderer()
    assert builtin.personal("client", "ticket_opened") and not builtin.personal("staff", "client_reply")
    (tmp_path / "staff").mkdir()
    (tmp_path / "staff" / "client_reply.j2").write_text(
        "{% block subject %}Hi {{ recipient.name }}{% endblock %}{% block text %}x{% endblock %}")
    assert Renderer(tmp_path).personal("staff", "client_reply")


def test_a_requester_that_needs_smtputf8_with_a_cc(tmp_path: Path):
    """The requester's address cannot be written in ASCII: they are skipped (logged), their CC still gets
    the mail, addressed to an empty group, and nothing fails."""
    inst = Instance(tmp_path)
    raw = make_mail(sender="placeholder@client.example", cc="colleague@client.example").as_bytes()
    raw = raw.replace(b"From: Alice Client <placeholder@client.example>", "From: Jörg <jörg@client.example>".encode())
    folder = inst.root / "utf8"
    folder.mkdir()
    (folder / "m.eml").write_bytes(raw)    # RFC 6532: UTF-8 in the header, as the corpus has it
    (item,) = inst.cli_json("ingest", str(folder))["items"]
    assert item["outcome"] == "new_ticket"
    rows = inst.query("SELECT recipient, raw FROM outbox")
    assert [r["recipient"] for r in rows] == ["colleague@client.example"]
    assert b"To: undisclosed-recipients:;" in rows[0]["raw"]
    log = inst.cli_json("ticket", "log", item["ticket"])
    assert any(e["event"] == "mail_skipped" and "SMTPUTF8" in e["detail"]["reason"] for e in log), log


def test_an_included_template_naming_the_recipient_makes_it_personal(tmp_path: Path):
    from maild.notify.render import Renderer

    (tmp_path / "staff").mkdir()
    (tmp_path / "staff" / "_footer.txt.j2").write_text("Sent to {{ recipient.name }}\n")
    assert Renderer(tmp_path).personal("staff", "client_reply")      # via its include of _footer.txt.j2
    assert not Renderer().personal("staff", "client_reply")


async def test_a_bounce_marks_only_its_own_address(tmp_path: Path):
    from maild.store import senders

    settings = config.load(Instance(tmp_path).config)
    async with App(settings) as app:
        async with app.db.transaction():
            await senders.record_bounce(app.db, "bob@x.example", "5.1.1", "", None, app.clock.stamp())
        found = await senders.undeliverable(app.db, ["bob@x.example", "bob+billing@x.example", "eve@spam.example"],
                                            "2000-01-01")
        assert set(found) == {"bob@x.example"}
        await senders.ban(app.db, "*@spam.example", "", "test", app.clock.stamp())
        found = await senders.undeliverable(app.db, ["bob+billing@x.example", "eve+x@spam.example"], "2000-01-01")
        assert found == {"eve+x@spam.example": "banned (*@spam.example)"}


def test_a_broken_override_template_stops_the_start(tmp_path: Path):
    overrides = tmp_path / "mail-templates"
    (overrides / "client").mkdir(parents=True)
    (overrides / "client" / "admin_reply.j2").write_text("{% block subject %}{{ ticket.tid {% endblock %}")
    inst = Instance(tmp_path, extra_config=f'\n[notifications]\ntemplates = "{overrides}"\n')
    proc = inst.cli("ticket", "list", check=False)
    assert proc.returncode == 78
    assert b"notifications.templates" in proc.stderr and b"admin_reply.j2" in proc.stderr


def test_every_built_in_template_renders_for_both_audiences():
    """The daemon no longer compiles the built-in templates at every start: this is their check, the
    `_default.j2` fallbacks and command_error included."""
    from maild.notify.render import Renderer

    renderer = Renderer()
    ticket = {"tid": "123456", "subject": "Disk full", "status": "Open", "priority": "High",
              "department": "Support", "client_name": "Alice", "client_email": "a@client.example",
              "assigned": "Ann", "flagged": ""}
    message = {"body": "Hello", "html": None, "author": "Alice", "author_email": "a@client.example",
               "attachments": [{"filename": "a.pdf", "size": 2048}]}
    for audience in ("client", "staff"):
        for name in [*(k.value for k in EventKind), "command_error"]:
            out = renderer.render(audience, name, {
                "event": name, "ticket": ticket, "message": message, "actor": "Ann Admin",
                "changes": [{"field": "assigned", "before": "(none)", "after": "ann"}], "company": "Support",
                "recipient": {"name": "Alice", "email": "a@client.example"}, "link": "http://x/t/123456/k",
                "thread_subject": "[Ticket #123456] Disk full", "linked_attachments": [],
                "errors": ["#priority urgent: use low, medium or high"], "statuses": ["Open"]})
            assert out.subject and "123456" in out.subject + out.text, (audience, name)
