"""The notification queue (notify/follow.py, store/outbox.py): a change queues its events in its own
transaction; expanding them into outbox mail happens afterwards, once, whoever does it, and a crash in
between loses nothing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from maild import config
from maild.app import App
from maild.desk.events import Actor, Event, EventKind
from maild.notify.follow import Notifier
from maild.store import outbox
from tests.helpers import Instance, make_mail

pytestmark = pytest.mark.both_engines  # the pipeline and the desk on SQLite and on PostgreSQL

STAFF = "dora@helpdesk.example"


def instance(tmp_path: Path, extra: str = "") -> Instance:
    inst = Instance(tmp_path, extra_config=extra)
    inst.cli("staff", "add", STAFF, "--name", "Dora", "--notify", "Technical Support")
    return inst


def ingest(inst: Instance, n: int) -> list[dict]:
    folder = inst.root / "in"
    folder.mkdir()
    for i in range(n):
        (folder / f"m{i}.eml").write_bytes(make_mail(sender=f"client{i}@client.example",
                                                     subject=f"Printer {i}").as_bytes())
    return inst.cli_json("ingest", str(folder))["items"]  # type: ignore[index]


def one_ticket(tmp_path: Path, extra: str = "") -> tuple[Instance, int, int]:
    """An instance with one ticket (its mail expanded already): the instance, the ticket's id and how many
    outbox rows there are so far."""
    inst = instance(tmp_path, extra)
    ingest(inst, 1)
    return inst, inst.query("SELECT id FROM tickets")[0]["id"], len(mail_rows(inst))


def mail_rows(inst: Instance) -> list[tuple[str, str]]:
    return [(r["event"], r["recipient"]) for r in inst.query("SELECT event, recipient FROM outbox ORDER BY id")]


def test_the_pipeline_queues_events_and_a_one_shot_command_expands_them_before_it_exits(tmp_path: Path):
    inst = instance(tmp_path)
    items = ingest(inst, 3)
    assert [i["outcome"] for i in items] == ["new_ticket"] * 3
    assert inst.query("SELECT count(*) FROM notify_queue")[0][0] == 0
    rows = mail_rows(inst)
    assert sorted(rows) == sorted([("ticket_opened", f"client{i}@client.example") for i in range(3)]
                                  + [("ticket_opened", STAFF)] * 3)
    # Each mail's Message-ID is recorded against its ticket (so answers to it thread).
    out_ids = {r["message_id"] for r in inst.query("SELECT message_id FROM mail_ids WHERE direction = 'out'")}
    assert out_ids == {r["message_id"] for r in inst.query("SELECT message_id FROM outbox")}


async def test_events_left_by_a_crash_become_mail_at_the_next_expansion_and_two_expanders_write_it_once(
        tmp_path: Path):
    inst, ticket_id, before = one_ticket(tmp_path, "\n[notifications]\nauto_per_hour = 0\n")  # 40 closures, 1 address
    settings = config.load(inst.config)
    async with App(settings) as app:
        assert app.db is not None
        # As if a process queued these and died before expanding them: committed events, no mail yet.
        events = [Event(EventKind.CLOSED, ticket_id, Actor.system("test")) for _ in range(40)]
        async with app.db.transaction():
            assert await app.notifier.follow(events) == 40
        assert len(mail_rows(inst)) == before
        # Two expanders on two connections (a CLI and the daemon's sender) race for the same events.
        other_db = await app.db.another()
        try:
            other = Notifier.build(other_db, settings, app.clock, app.signer)
            made = await asyncio.gather(app.notifier.expand(limit=7), other.expand(limit=5))
        finally:
            await other_db.close()
    rows = mail_rows(inst)[before:]
    # A closure goes to the requester (no watchers here): one mail per event, none twice.
    assert sum(made) == len(rows) == 40
    assert set(rows) == {("closed", "client0@client.example")}
    assert inst.query("SELECT count(*) FROM notify_queue")[0][0] == 0


async def test_an_event_that_cannot_be_rendered_is_logged_on_its_ticket_and_the_others_still_go(tmp_path: Path):
    templates = tmp_path / "overrides"
    (templates / "client").mkdir(parents=True)
    inst = instance(tmp_path, f'\n[notifications]\ntemplates = "{templates}"\n')
    ingest(inst, 2)
    (first, first_tid), (second, _) = [(r["id"], r["tid"])
                                       for r in inst.query("SELECT id, tid FROM tickets ORDER BY id")]
    # A template that parses (the start checks that) but fails on one ticket's data when rendered.
    (templates / "client" / "closed.j2").write_text(
        '{% extends "client/_default.j2" %}{% block subject %}Closed {{ 1 // 0 if ticket.tid == "'
        + first_tid + '" else ticket.tid }}{% endblock %}')
    before = len(mail_rows(inst))
    settings = config.load(inst.config)
    async with App(settings) as app:
        assert app.db is not None
        async with app.db.transaction():
            await app.notifier.follow([Event(EventKind.CLOSED, first, Actor.system("test")),
                                       Event(EventKind.CLOSED, second, Actor.system("test"))])
        assert await app.notifier.expand() == 1
    assert mail_rows(inst)[before:] == [("closed", "client1@client.example")]
    failed = inst.query("SELECT ticket_id, detail FROM ticket_log WHERE event = 'notify_failed'")
    assert [r["ticket_id"] for r in failed] == [first] and "ZeroDivisionError" in failed[0]["detail"]
    assert inst.query("SELECT count(*) FROM notify_queue")[0][0] == 0


async def test_an_unreadable_event_is_logged_and_taken_out_and_never_holds_up_the_others(tmp_path: Path):
    """An event the running version cannot read (left by another version, say) is logged on its ticket and
    leaves the queue; the events behind it still become mail."""
    inst, ticket_id, before = one_ticket(tmp_path)
    settings = config.load(inst.config)
    async with App(settings) as app:
        assert app.db is not None
        async with app.db.transaction():
            await outbox.queue_events(app.db, [(ticket_id, '{"kind": "teleported", "ticket_id": 1}')], "2026-01-01")
            await app.notifier.follow([Event(EventKind.CLOSED, ticket_id, Actor.system("test"))])
        assert await app.notifier.expand() == 1
    assert mail_rows(inst)[before:] == [("closed", "client0@client.example")]
    failed = inst.query("SELECT detail FROM ticket_log WHERE event = 'notify_failed'")
    assert len(failed) == 1 and "teleported" in failed[0]["detail"]
    assert inst.query("SELECT count(*) FROM notify_queue")[0][0] == 0


async def test_an_expander_that_lost_the_race_writes_nothing(tmp_path: Path):
    """The interleaving the race above may or may not hit, made to happen: A reads and renders, B expands
    the same events and commits, then A's write finds its events gone and rolls back."""
    inst, ticket_id, before = one_ticket(tmp_path)
    settings = config.load(inst.config)
    async with App(settings) as app:
        assert app.db is not None
        async with app.db.transaction():
            await app.notifier.follow([Event(EventKind.CLOSED, ticket_id, Actor.system("test"))])
        (queue_id, _, text), = await outbox.queued_events(app.db, 10)
        planned = await app.notifier.plan([Event.from_json(text)])
        assert len(planned.mails) == 1
        other_db = await app.db.another()
        try:
            assert await Notifier.build(other_db, settings, app.clock, app.signer).expand() == 1
        finally:
            await other_db.close()
        assert await app.notifier._store([queue_id], planned) == 0
    assert mail_rows(inst)[before:] == [("closed", "client0@client.example")]


def test_the_daemon_expands_what_a_killed_command_left_queued_and_sends_it(tmp_path: Path):
    inst, ticket_id, _ = one_ticket(tmp_path)
    sent_before = len(list((inst.state / "sent" / "new").glob("*"))) if (inst.state / "sent").exists() else 0

    async def leave_queued() -> None:
        async with App(config.load(inst.config)) as app:
            assert app.db is not None
            async with app.db.transaction():
                await app.notifier.follow([Event(EventKind.CLOSED, ticket_id, Actor.system("test"))])

    asyncio.run(leave_queued())
    assert inst.query("SELECT count(*) FROM notify_queue")[0][0] == 1
    inst.start()
    try:
        deadline = time.monotonic() + 20
        while inst.query("SELECT count(*) FROM outbox WHERE state = 'sent'")[0][0] < 3:
            assert time.monotonic() < deadline, inst.daemon_log()[-2000:]
            time.sleep(0.05)
    finally:
        assert inst.stop() == 0
    assert inst.query("SELECT count(*) FROM notify_queue")[0][0] == 0
    assert len(list((inst.state / "sent" / "new").glob("*"))) == sent_before + 3
