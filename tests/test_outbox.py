"""The outbox: store, sender and transports against a real aiosmtpd relay (tests/relay.py), the
``ticketd outbox`` commands, and ``ticketd serve`` delivering across restarts and a SIGKILL."""

from __future__ import annotations

import json
import re
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from maild import config
from maild.app import App
from maild.clock import Clock, parse
from maild.notify.send import BACKOFF_BASE_SECONDS, OutboxSender
from maild.notify.tokens import Signer, tag_of, with_tag
from maild.store import outbox, tickets
from maild.store.db import Database
from maild.store.outbox import OutboxMail
from tests.helpers import Instance, free_port
from tests.relay import Relay

SENDER = "support@helpdesk.example"
CLIENT = "alice@client.example"
SECRET = b"s" * 32
_MESSAGE_ID = re.compile(rb"(?im)^Message-ID: (<[^>]+>)")


class ManualClock:
    """The injected time: tests move it, nothing sleeps."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def raw_mail(n: int, to: str = CLIENT, size: int = 0) -> bytes:
    body = "Your ticket was updated.\r\n" + ("x" * 70 + "\r\n") * (size // 72)
    return (f"From: Support <{SENDER}>\r\nTo: {to}\r\nSubject: [Ticket #{n:06d}] Update\r\n"
            f"Message-ID: <t1.{n}@helpdesk.example>\r\nAuto-Submitted: auto-generated\r\n\r\n{body}").encode()


@dataclass
class Desk:
    """One configuration + database + manual clock; builds senders and queues mails."""

    inst: Instance
    app: App
    time: ManualClock

    @property
    def db(self) -> Database:
        assert self.app.db is not None
        return self.app.db

    def settings(self) -> config.Settings:
        return config.load(self.inst.config)

    def configure(self, outbound_toml: str) -> None:
        self.inst.extra_config = outbound_toml
        self.inst.write_config()

    def sender(self) -> OutboxSender:
        return OutboxSender(self.db, self.settings(), self.app.clock, Signer(SECRET))

    async def queue(self, count: int = 1, to: str = CLIENT, audience: str = "client",
                    ticket_id: int | None = None, size: int = 0) -> list[int]:
        async with self.db.transaction() as db:
            start = await db.scalar("SELECT count(*) FROM outbox")
            return [await outbox.enqueue(db, OutboxMail(ticket_id, "admin_reply", audience, True, SENDER, to,
                                                        f"<t1.{start + i}@helpdesk.example>", "Update",
                                                        raw_mail(start + i, to, size)), self.app.clock.stamp())
                    for i in range(count)]

    async def ticket(self) -> int:
        async with self.db.transaction() as db:
            dept = await db.scalar("SELECT id FROM departments ORDER BY id LIMIT 1")
            return await tickets.create(db, tid="123456", subject="Printer", status="Open", priority="Medium",
                                        department_id=dept, client_email=CLIENT, client_name="Alice",
                                        client_id=None, stamp=self.app.clock.stamp())

    async def row(self, outbox_id: int) -> outbox.OutboxRow:
        row = await outbox.get(self.db, outbox_id)
        assert row is not None
        return row


@pytest.fixture
async def desk(tmp_path: Path, relay: Relay) -> AsyncIterator[Desk]:
    inst = Instance(tmp_path, extra_config=relay.outbound_toml())
    manual = ManualClock()
    app = App(config.load(inst.config), clock=Clock(manual))
    await app.open()
    try:
        yield Desk(inst, app, manual)
    finally:
        await app.close()


# -- delivery -------------------------------------------------------------------------------------------

async def test_a_mail_whose_claim_ran_out_in_a_stalled_senders_hands_is_sent_once(tmp_path: Path, relay: Relay,
                                                                                  pg_server) -> None:
    """Several nodes on PostgreSQL: node a claimed two mails (for [database] lease_seconds) and sent the first
    at once, without asking the database again (a claim under half a lease old is its own). Then a stalled
    (a long pause, a suspended VM) past its lease; node b took the second mail over and sent it. Waking up
    with that mail still in hand, a leaves it alone: one copy of each reaches the relay."""
    from dataclasses import replace

    from maild.clock import iso

    inst = Instance(tmp_path, database_url=pg_server.new_database(), extra_config=relay.outbound_toml())
    manual = ManualClock()
    base = config.load(inst.config)
    app = App(base, clock=Clock(manual))
    await app.open()
    other = None
    try:
        desk = Desk(inst, app, manual)
        first, second = await desk.queue(2)
        lease = timedelta(seconds=base.database.lease_seconds)
        node_a = OutboxSender(desk.db, replace(base, database=replace(base.database, node="a")), app.clock,
                              Signer(SECRET))
        other = await desk.db.another()
        node_b = OutboxSender(other, replace(base, database=replace(base.database, node="b")), app.clock,
                              Signer(SECRET))
        claimed_at = manual.now
        rows = await outbox.due(desk.db, iso(claimed_at), 10, (), "a", iso(claimed_at + lease))
        assert [r.id for r in rows] == [first, second]

        manual.advance(10)                        # young claim: sent without a renewal
        assert (await node_a._attempt(node_a.sessions[0], rows[0], claimed_at)).outcome == "sent"
        until = await desk.db.scalar("SELECT claimed_until FROM outbox WHERE id = ?", (first,))
        assert until == iso(claimed_at + lease)   # not renewed to now + lease

        manual.advance(lease.total_seconds())     # a stalls past its lease; b takes the mail over
        assert [a.outcome for a in await node_b.run_until_empty()] == ["sent"]
        assert await node_a._attempt(node_a.sessions[0], rows[1], claimed_at) is None
        await node_a._close_sessions()
        assert [t.rcpt_tos for t in relay.transactions] == [(CLIENT,), (CLIENT,)]   # one copy of each
        assert {(r.id, r.state, r.attempts) for r in [await desk.row(first), await desk.row(second)]} == {
            (first, "sent", 1), (second, "sent", 1)}
    finally:
        if other is not None:
            await other.close()
        await app.close()


async def test_delivers_with_signed_verp_sender_and_exact_bytes(desk: Desk, relay: Relay) -> None:
    [oid] = await desk.queue()
    attempts = await desk.sender().run_until_empty()
    assert [(a.outbox_id, a.outcome, a.delivery.code) for a in attempts] == [(oid, "sent", 250)]
    [tx] = relay.transactions
    signer = Signer(SECRET)
    assert tx.mail_from == with_tag(SENDER, signer.bounce_tag(oid, CLIENT))
    assert signer.verify_bounce_tag(tag_of(tx.mail_from) or "", CLIENT) == oid
    assert tx.rcpt_tos == (CLIENT,)
    assert tx.data == raw_mail(0)
    row = await desk.row(oid)
    assert (row.state, row.attempts, row.sent_at, row.last_error) == ("sent", 1, desk.app.clock.stamp(), "")
    assert await desk.sender().run_until_empty() == []   # nothing twice


async def test_connection_reuse(desk: Desk, relay: Relay) -> None:
    await desk.queue(5)
    assert len(await desk.sender().run_until_empty()) == 5
    assert len(relay.transactions) == 5 and relay.connections <= 2   # connections = 2 (the default)
    desk.configure(relay.outbound_toml(connections=1))
    await desk.queue(6)
    before = relay.connections
    assert [a.outcome for a in await desk.sender().run_until_empty()] == ["sent"] * 6
    assert relay.connections == before + 1
    assert len({t.connection for t in relay.transactions[5:]}) == 1


async def test_relay_down_defers_then_delivers_when_back(desk: Desk, relay: Relay) -> None:
    [oid] = await desk.queue()
    relay.down()
    [attempt] = await desk.sender().run_until_empty()
    assert attempt.outcome == "deferred"
    row = await desk.row(oid)
    assert row.state == "queued" and row.attempts == 1 and row.last_error.startswith("CONNECT")
    assert parse(row.next_attempt_at) == desk.time.now + timedelta(seconds=BACKOFF_BASE_SECONDS)
    assert await desk.sender().run_until_empty() == []           # not due yet
    relay.up()
    desk.time.advance(BACKOFF_BASE_SECONDS)
    assert [a.outcome for a in await desk.sender().run_until_empty()] == ["sent"]
    assert (await desk.row(oid)).state == "sent" and len(relay.transactions) == 1


@pytest.mark.parametrize(("step", "answer"), [("rcpt", "452 4.2.2 Mailbox full"), ("data", "552 5.2.2 Over quota"),
                                              ("mail", "530 5.7.0 Authentication required")])
async def test_temporary_answers_are_deferred(desk: Desk, relay: Relay, step: str, answer: str) -> None:
    relay.answer[step] = answer
    [oid] = await desk.queue()
    [attempt] = await desk.sender().run_until_empty()
    assert attempt.outcome == "deferred" and answer in (await desk.row(oid)).last_error


async def test_5xx_fails_and_cli_retry_delivers(desk: Desk, relay: Relay) -> None:
    relay.answer["data"] = "554 5.6.0 Message content rejected"
    [oid] = await desk.queue()
    [attempt] = await desk.sender().run_until_empty()
    assert attempt.outcome == "failed"
    row = await desk.row(oid)
    assert (row.state, row.last_error) == ("failed", "DATA 554 5.6.0 Message content rejected")
    listed = json.loads(desk.inst.cli("outbox", "list", "--state", "failed", "--json").stdout)["items"]
    assert [(r["id"], r["last_error"]) for r in listed] == [(oid, "DATA 554 5.6.0 Message content rejected")]
    assert json.loads(desk.inst.cli("outbox", "list", "--state", "sent", "--json").stdout)["items"] == []
    shown = json.loads(desk.inst.cli("outbox", "show", str(oid), "--json").stdout)
    assert ["Subject", "[Ticket #000000] Update"] in shown["headers"] and shown["attempts"] == 1
    assert desk.inst.cli("outbox", "show", str(oid), "--raw").stdout == raw_mail(0)
    assert b"last error: DATA 554" in desk.inst.cli("outbox", "show", str(oid)).stdout
    assert desk.inst.cli("outbox", "retry", str(oid)).returncode == 0
    row = await desk.row(oid)
    assert (row.state, row.attempts) == ("queued", 0)
    del relay.answer["data"]
    assert [a.outcome for a in await desk.sender().run_until_empty()] == ["sent"]
    assert desk.inst.cli("outbox", "retry", str(oid), check=False).returncode == 65    # sent already
    assert desk.inst.cli("outbox", "retry", "9999", check=False).returncode == 66
    assert desk.inst.cli("outbox", "show", "9999", check=False).returncode == 66


async def test_refused_client_mail_is_logged_on_its_ticket(desk: Desk, relay: Relay) -> None:
    ticket = await desk.ticket()
    relay.refuse["bob@client.example"] = "550 5.1.1 <bob@client.example>: no such user"
    [bad] = await desk.queue(to="bob@client.example", ticket_id=ticket)
    [good] = await desk.queue(ticket_id=ticket)
    [staff] = await desk.queue(to="bob@client.example", ticket_id=ticket, audience="staff")
    outcomes = {a.outbox_id: a.outcome for a in await desk.sender().run_until_empty()}
    assert outcomes == {bad: "failed", good: "sent", staff: "failed"}
    assert [t.rcpt_tos for t in relay.transactions] == [(CLIENT,)]   # refused at RCPT: no DATA
    logged = [r for r in await tickets.events(desk.db, ticket) if r["event"] == "mail_failed"]
    assert len(logged) == 1 and logged[0]["actor"] == "outbox"   # the staff mail leaves no ticket row
    detail = json.loads(logged[0]["detail"])
    assert detail == {"outbox_id": bad, "recipient": "bob@client.example",
                      "error": "RCPT 550 5.1.1 <bob@client.example>: no such user"}


async def test_backoff_doubles_up_to_the_cap_and_the_deadline_fails(desk: Desk, relay: Relay) -> None:
    desk.configure(relay.outbound_toml(retry_hours=1, max_backoff_seconds=600))
    relay.answer["rcpt"] = "451 4.7.1 Greylisted, try again"
    [oid] = await desk.queue()
    created = desk.time.now
    waits = []
    while (row := await desk.row(oid)).state == "queued":
        desk.time.now = parse(row.next_attempt_at)
        before = desk.time.now
        [attempt] = await desk.sender().run_until_empty()
        if attempt.next_attempt_at:
            waits.append((parse(attempt.next_attempt_at) - before).total_seconds())
    assert waits[:6] == [30, 60, 120, 240, 480, 600]
    assert desk.time.now == created + timedelta(hours=1)   # the last try falls on the deadline
    assert row.state == "failed" and "gave up" in row.last_error and "451 4.7.1 Greylisted" in row.last_error
    assert row.attempts == len(waits) + 1 and relay.transactions == []


# -- TLS and AUTH ---------------------------------------------------------------------------------------

async def test_starttls_required_but_not_offered_sends_nothing(desk: Desk, relay: Relay) -> None:
    desk.configure(relay.outbound_toml(security="starttls"))
    [oid] = await desk.queue()
    [attempt] = await desk.sender().run_until_empty()
    row = await desk.row(oid)
    assert attempt.outcome == "deferred" and row.state == "queued"
    assert row.last_error.startswith("TLS") and "does not offer STARTTLS" in row.last_error
    assert relay.transactions == []


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_tls_verified_through_ca_file(desk: Desk, relay: Relay, security: str) -> None:
    relay.reconfigure(tls=security)
    desk.configure(relay.outbound_toml())   # ca_file = the relay's self-signed certificate
    await desk.queue()
    assert [a.outcome for a in await desk.sender().run_until_empty()] == ["sent"]
    assert relay.transactions[0].tls


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_untrusted_certificate_refused_unless_verification_is_off(desk: Desk, relay: Relay,
                                                                         security: str) -> None:
    relay.reconfigure(tls=security)
    desk.configure(relay.outbound_toml(ca_file=None))     # the system's CAs do not know it
    [oid] = await desk.queue()
    [attempt] = await desk.sender().run_until_empty()
    assert attempt.outcome == "deferred" and relay.transactions == []
    assert "certificate verify failed" in (await desk.row(oid)).last_error
    desk.configure(relay.outbound_toml(ca_file=None, tls_verify=False))
    desk.time.advance(BACKOFF_BASE_SECONDS)
    assert [a.outcome for a in await desk.sender().run_until_empty()] == ["sent"]


async def test_auth_with_password_file(desk: Desk, relay: Relay, tmp_path: Path) -> None:
    relay.reconfigure(users={"helpdesk": "s3cret"})
    (tmp_path / "relay.pw").write_text("s3cret\n")
    desk.configure(relay.outbound_toml(username="helpdesk", password_file=str(tmp_path / "relay.pw")))
    await desk.queue(2)
    assert [a.outcome for a in await desk.sender().run_until_empty()] == ["sent", "sent"]
    assert [t.login for t in relay.transactions] == ["helpdesk", "helpdesk"]
    (tmp_path / "relay.pw").write_text("wrong\n")          # read at each connection
    [oid] = await desk.queue()
    [attempt] = await desk.sender().run_until_empty()
    assert attempt.outcome == "deferred" and (await desk.row(oid)).last_error.startswith("AUTH 535")


# -- ticketd outbox test --------------------------------------------------------------------------------

def outbox_test(inst: Instance, toml: str) -> tuple[int, dict]:
    inst.extra_config = toml
    inst.write_config()
    proc = inst.cli("outbox", "test", "bob@client.example", "--json", check=False)
    return proc.returncode, json.loads(proc.stdout)


def test_outbox_test_reports_the_failing_step(tmp_path: Path, relay: Relay) -> None:
    inst = Instance(tmp_path)
    code, out = outbox_test(inst, relay.outbound_toml())
    assert (code, out["ok"], out["code"]) == (0, True, 250)
    assert relay.transactions[0].rcpt_tos == ("bob@client.example",)
    code, out = outbox_test(inst, relay.outbound_toml(port=free_port()))
    assert (code, out["step"], out["code"]) == (69, "connect", None)
    relay.refuse["bob@client.example"] = "550 5.1.1 No such user here"
    code, out = outbox_test(inst, relay.outbound_toml())
    assert (code, out["step"], out["code"], out["text"]) == (69, "rcpt", 550, "5.1.1 No such user here")
    proc = inst.cli("outbox", "test", "bob@client.example", check=False)
    assert b"failed at RCPT" in proc.stderr and b"550 5.1.1 No such user here" in proc.stderr
    relay.reconfigure(users={"helpdesk": "s3cret"})
    (tmp_path / "pw").write_text("wrong")
    code, out = outbox_test(inst, relay.outbound_toml(username="helpdesk", password_file=str(tmp_path / "pw")))
    assert (code, out["step"], out["code"]) == (69, "auth", 535)


def test_outbox_test_with_maildir_says_where(tmp_path: Path) -> None:
    inst = Instance(tmp_path)
    code, out = outbox_test(inst, "")
    assert code == 0 and out["ok"]
    where = Path(out["where"])
    assert where.parent == inst.state / "sent" / "new" and where.read_bytes().startswith(b"Return-Path: <")


# -- the maildir transport ------------------------------------------------------------------------------

async def test_maildir_transport_writes_one_file_per_mail(tmp_path: Path) -> None:
    inst = Instance(tmp_path)
    manual = ManualClock()
    app = App(config.load(inst.config), clock=Clock(manual))
    await app.open()
    try:
        desk = Desk(inst, app, manual)
        [oid] = await desk.queue()
        assert [a.outcome for a in await desk.sender().run_until_empty()] == ["sent"]
        [path] = (inst.state / "sent" / "new").iterdir()
        verp = with_tag(SENDER, Signer(SECRET).bounce_tag(oid, CLIENT))
        assert path.read_bytes() == f"Return-Path: <{verp}>\r\nDelivered-To: {CLIENT}\r\n".encode() + raw_mail(0)
        async with desk.db.transaction() as db:     # as if the commit had been lost in a crash
            await db.execute("UPDATE outbox SET state = 'queued' WHERE id = ?", (oid,))
        assert [a.outcome for a in await desk.sender().run_until_empty()] == ["sent"]
        assert list((inst.state / "sent" / "new").iterdir()) == [path]
        assert list((inst.state / "sent" / "tmp").iterdir()) == []
    finally:
        await app.close()


# -- the store ------------------------------------------------------------------------------------------

async def test_store_cap_count_and_bounce_mark(desk: Desk) -> None:
    since = desk.app.clock.stamp()
    ids = await desk.queue(3)
    await desk.queue(1, to="bob@client.example")
    async with desk.db.transaction() as db:
        await outbox.fail(db, ids[0], "RCPT 550 no")
        assert await outbox.mark_bounced(db, ids[1], since) and not await outbox.mark_bounced(db, 999, since)
    assert await outbox.automatic_counts(desk.db, [CLIENT], since) == {CLIENT: 2}       # the failed one does not count
    desk.time.advance(1)
    assert await outbox.automatic_counts(desk.db, [CLIENT], desk.app.clock.stamp()) == {}
    assert (await desk.row(ids[1])).bounced_at == since
    assert await outbox.counts(desk.db) == {"queued": 3, "sent": 0, "failed": 1}
    assert [r.id for r in await outbox.listing(desk.db, limit=2)] == [ids[2] + 1, ids[2]]


# -- ticketd serve --------------------------------------------------------------------------------------

async def queue_offline(inst: Instance, count: int, size: int = 0) -> list[int]:
    app = App(config.load(inst.config))
    await app.open()
    try:
        return await Desk(inst, app, ManualClock()).queue(count, size=size)
    finally:
        await app.close()


def message_ids(relay: Relay) -> Counter[bytes]:
    found = Counter[bytes]()
    for t in relay.transactions:
        m = _MESSAGE_ID.search(t.data)
        assert m is not None
        found[m.group(1)] += 1
    return found


def wait_sent(inst: Instance, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (sent := inst.query("SELECT count(*) FROM outbox WHERE state = 'sent'")[0][0]) < count:
        assert time.monotonic() < deadline, f"{sent} of {count} sent:\n{inst.daemon_log()[-3000:]}"
        time.sleep(0.05)


async def test_serve_delivers_what_was_queued_while_stopped(tmp_path: Path, relay: Relay) -> None:
    inst = Instance(tmp_path, extra_config=relay.outbound_toml())
    await queue_offline(inst, 20)
    inst.start()
    try:
        wait_sent(inst, 20)
    finally:
        assert inst.stop() == 0, inst.daemon_log()[-3000:]
    assert len(relay.transactions) == 20 and sum(message_ids(relay).values()) == 20
    assert "outcome=sent" in inst.daemon_log()


async def test_sigkill_mid_run_loses_nothing(tmp_path: Path, relay: Relay) -> None:
    inst = Instance(tmp_path, extra_config=relay.outbound_toml())
    count = 1500
    await queue_offline(inst, count, size=3000)
    inst.start()
    relay.wait_for(200, timeout=60)
    inst.stop(signal.SIGKILL)
    sent_before = inst.query("SELECT count(*) FROM outbox WHERE state = 'sent'")[0][0]
    assert sent_before < count, "the whole queue went out before the kill: make it longer"
    inst.start()
    try:
        wait_sent(inst, count)
    finally:
        assert inst.stop() == 0, inst.daemon_log()[-3000:]
    seen = message_ids(relay)
    expected = {f"<t1.{n}@helpdesk.example>".encode() for n in range(count)}
    assert set(seen) == expected                                   # every mail arrived
    duplicates = [mid for mid, n in seen.items() if n > 1]
    assert len(duplicates) <= config.load(inst.config).outbound.connections   # only the ones in flight
    assert all(seen[mid] == 2 for mid in duplicates)
