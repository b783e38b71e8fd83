"""The scheduler's jobs, driven by a fake clock through the code ``ticketd serve`` runs (maild/jobs/), on
both engines; and the scheduler itself inside a real ``ticketd serve``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from maild import config
from maild.app import App
from maild.clock import Clock, iso
from maild.desk.events import Actor
from maild.desk.options import Options
from maild.jobs import scheduler
from maild.spool import Incoming
from maild.store import inbound, jobs, outbox, tickets
from tests.helpers import Instance

pytestmark = pytest.mark.both_engines

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NODE = "test-node"


@dataclass
class Desk:
    """An App on a fake clock, and the helpers the tests use to make tickets at chosen times."""

    app: App
    now: list[datetime]
    settings: config.Settings

    def at(self, when: datetime) -> None:
        self.now[0] = when

    async def client_mail(self, subject: str, sender: str, reply_to: str = "") -> str:
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = "support@helpdesk.example"
        msg["Subject"] = subject
        msg["Message-ID"] = f"<{abs(hash((subject, sender, self.now[0])))}@client.example>"
        if reply_to:
            msg["In-Reply-To"] = reply_to
        msg.set_content(f"About {subject}.\n")
        assert self.app.db is not None and self.app.worker is not None
        async with self.app.db.transaction():
            await inbound.insert(self.app.db, [Incoming(raw=msg.as_bytes(), source="smtp", envelope_from=sender,
                                                        envelope_to=["support@helpdesk.example"])],
                                 self.app.clock.stamp())
        results = await self.app.worker.drain()
        assert results and results[-1].tid, results
        return str(results[-1].tid)

    async def staff_reply(self, tid: str) -> str:
        result = await self.app.desk.reply(Actor.system("agent"), tid, "Here is what to do.")
        ticket = await tickets.by_tid(self.app.db, tid)   # type: ignore[arg-type]
        assert ticket is not None
        mids = await self.app.db.fetchall(  # type: ignore[union-attr]
            "SELECT message_id FROM messages WHERE id = ?", (result.message_id,))
        return f"<{mids[0]['message_id'].strip('<>')}>"

    async def status(self, tid: str) -> str:
        ticket = await tickets.by_tid(self.app.db, tid)   # type: ignore[arg-type]
        assert ticket is not None
        return ticket.status

    async def mails(self, event: str) -> list[str]:
        rows = await outbox.listing(self.app.db, None, None)   # type: ignore[arg-type]
        return sorted(r.recipient for r in rows if r.event == event)


def settings_for(root: Path, database_url: str, hours: int = 72) -> config.Settings:
    root.mkdir(parents=True, exist_ok=True)
    inst = Instance(root, database_url=database_url, extra_config=f"\n[autoclose]\nhours = {hours}\n")
    return config.load(inst.config)


@pytest.fixture
async def desk(tmp_path: Path, database_url: str) -> AsyncIterator[Desk]:
    now = [T0]
    settings = settings_for(tmp_path, database_url)
    async with App(settings, clock=Clock(lambda: now[0])) as app:
        yield Desk(app, now, settings)


async def run(desk: Desk, when: datetime) -> dict[str, int]:
    desk.at(when)
    return await scheduler.run_job(desk.app, "auto_close", NODE)


async def test_auto_close_at_n_hours_and_not_a_minute_before_in_its_statuses_only(desk: Desk):
    answered = await desk.client_mail("answered", "ann@client.example")
    await desk.staff_reply(answered)
    replied = await desk.client_mail("customer reply", "bob@client.example")
    ours = await desk.staff_reply(replied)
    await desk.client_mail("Re: customer reply", "bob@client.example", reply_to=ours)
    assert await desk.status(replied) == "Customer-Reply"
    untouched = await desk.client_mail("still open", "cy@client.example")          # Open: not auto-closable
    held = await desk.client_mail("on hold", "dee@client.example")
    await desk.staff_reply(held)
    await desk.app.desk.set_options(Actor.system("agent"), held, Options(status="On Hold"))

    # Ten hours on, a private note and an option change: nothing the client sees, so the ticket stays idle.
    desk.at(T0 + timedelta(hours=10))
    await desk.app.desk.note(Actor.system("agent"), answered, "Waiting for them.")
    await desk.app.desk.set_options(Actor.system("agent"), answered, Options(priority="High"))

    assert await run(desk, T0 + timedelta(hours=72) - timedelta(minutes=1)) == {"closed": 0}
    assert await desk.mails("auto_closed") == []
    assert await run(desk, T0 + timedelta(hours=72)) == {"closed": 2}
    assert [await desk.status(t) for t in (answered, replied, untouched, held)] == \
        ["Closed", "Closed", "Open", "On Hold"]
    assert await desk.mails("auto_closed") == ["ann@client.example", "bob@client.example"]
    ticket = await tickets.by_tid(desk.app.db, answered)   # type: ignore[arg-type]
    assert ticket is not None
    log = [r for r in await tickets.events(desk.app.db, ticket.id) if r["event"] == "auto_closed"]  # type: ignore[arg-type]
    assert len(log) == 1 and log[0]["actor"] == "system" and log[0]["at"] == iso(T0 + timedelta(hours=72))
    assert json.loads(log[0]["detail"]) == {"idle_hours": 72, "status": ["Answered", "Closed"]}

    # Run again, much later: nothing is closed or mailed twice.
    assert await run(desk, T0 + timedelta(days=30)) == {"closed": 0}
    assert await desk.mails("auto_closed") == ["ann@client.example", "bob@client.example"]
    runs = await jobs.last_runs(desk.app.db)   # type: ignore[arg-type]
    assert runs["auto_close"].runs == 3 and runs["auto_close"].result == {"closed": 0}


async def test_a_reply_after_the_ticket_was_picked_keeps_it_open(desk: Desk):
    tid = await desk.client_mail("picked", "eve@client.example")
    ours = await desk.staff_reply(tid)
    desk.at(T0 + timedelta(hours=80))
    cutoff = iso(T0 + timedelta(hours=8))
    picked = await tickets.idle(desk.app.db, ("Answered", "Customer-Reply"), cutoff, 10)  # type: ignore[arg-type]
    assert len(picked) == 1
    await desk.client_mail("Re: picked", "eve@client.example", reply_to=ours)   # arrives meanwhile
    assert await desk.app.desk.close_idle(picked, ("Answered", "Customer-Reply"), cutoff, 72) == []
    assert await desk.status(tid) == "Customer-Reply"
    assert await desk.mails("auto_closed") == []


async def test_overlapping_runs_close_and_mail_each_ticket_once(desk: Desk, tmp_path: Path):
    tids = []
    for i in range(7):
        tid = await desk.client_mail(f"overlap {i}", f"o{i}@client.example")
        await desk.staff_reply(tid)
        tids.append(tid)
    desk.at(T0 + timedelta(hours=73))
    # A second process's App: its own connection (as the daemon's run and an admin's `jobs run` would be).
    async with App(desk.settings, clock=desk.app.clock) as other:
        results = await asyncio.gather(scheduler.run_job(desk.app, "auto_close", NODE),
                                       scheduler.run_job(other, "auto_close", "other-node"))
    assert sum(r["closed"] for r in results) == 7
    assert [await desk.status(t) for t in tids] == ["Closed"] * 7
    assert len(await desk.mails("auto_closed")) == 7


async def test_auto_close_is_off_with_zero_hours(tmp_path: Path, database_url: str):
    now = [T0]
    off = settings_for(tmp_path, database_url, hours=0)
    async with App(off, clock=Clock(lambda: now[0])) as app:
        d = Desk(app, now, off)
        tid = await d.client_mail("never closes", "fay@client.example")
        await d.staff_reply(tid)
        assert not scheduler.JOBS["auto_close"].active(off)
        assert await run(d, T0 + timedelta(days=400)) == {"closed": 0}
        assert await d.status(tid) == "Answered"


def _table(path: Path) -> dict:
    import tomllib

    data = tomllib.loads(path.read_text())
    data.pop("autoclose", None)
    return data


def test_statuses_in_the_config_are_checked(tmp_path: Path):
    base = settings_for(tmp_path, "")
    data = {**_table(base.source), "autoclose": {"hours": 24, "statuses": ["answered", "on hold"]}}
    assert config.from_dict(base.source, data).autoclose.statuses == ("Answered", "On Hold")
    with pytest.raises(config.ConfigError, match="autoclose.statuses.*'Closed'"):
        config.from_dict(base.source, {**data, "autoclose": {"statuses": ["Closed"]}})
    with pytest.raises(config.ConfigError, match="jobs.auto_close"):
        config.from_dict(base.source, {**data, "jobs": {"auto_close": 0}})


def test_next_run_waits_for_the_interval_and_catches_up_once():
    from maild.store.jobs import JobRun

    settings = config.from_dict(Path("/tmp/x.toml"), {**_table(Path(__file__).parent.parent / "ticketd.toml")})
    job = scheduler.JOBS["auto_close"]
    now = T0
    assert scheduler.next_run(job, settings, None, now) == now                    # never ran: now

    def ran(minutes_ago: int) -> JobRun:
        stamp = iso(now - timedelta(minutes=minutes_ago))
        return JobRun("auto_close", "a", stamp, stamp, stamp, {}, "", 1)

    # Restarted 3 minutes after a run: the next one keeps to the interval (no second run now).
    assert scheduler.next_run(job, settings, ran(3), now) == now + timedelta(minutes=7)
    # Down for three days: one run now, not one per missed interval (APScheduler coalesces the rest).
    assert scheduler.next_run(job, settings, ran(3 * 24 * 60), now) == now


def test_jobs_list_and_run_from_the_command_line(instance: Instance):
    instance.extra_config = "\n[autoclose]\nhours = 24\n"
    instance.write_config()
    listed = instance.cli_json("jobs", "list")["jobs"]
    assert [j["name"] for j in listed] == ["auto_close"]
    assert listed[0]["runs"] == 0 and listed[0]["active"] and listed[0]["every_minutes"] == 10
    done = instance.cli_json("jobs", "run", "auto_close", "--now", "2031-05-01T10:00:00Z")
    assert done == {"job": "auto_close", "as_of": "2031-05-01T10:00:00Z", "result": {"closed": 0}}
    listed = instance.cli_json("jobs", "list")["jobs"]
    assert listed[0]["runs"] == 1 and listed[0]["last_as_of"].startswith("2031-05-01T10:00:00")
    # The record's own time is the wall clock's: a run "as if" in 2031 does not push the schedule there.
    assert listed[0]["last_started_at"] < "2031" and listed[0]["next_run_at"] < "2031"
    text = instance.cli("jobs", "list").stdout.decode()
    assert "auto_close  (every 10 min)" in text and "closed 0" in text
    bad = instance.cli("jobs", "run", "auto_close", "--now", "next tuesday", check=False)
    assert bad.returncode == 64 and b"ISO 8601" in bad.stderr
