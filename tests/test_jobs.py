"""The scheduler's jobs, driven by a fake clock through the code ``ticketd serve`` runs (maild/jobs/), on
both engines; and the scheduler itself inside a real ``ticketd serve``."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from maild import config
from maild.app import App
from maild.clock import Clock, iso
from maild.desk.events import Actor
from maild.desk.options import Options
from maild.jobs import scheduler, targets
from maild.spool import Incoming
from maild.store import clientlinks, inbound, jobs, outbox, staff, tickets, websessions
from tests.helpers import Instance, make_mail, process_mail

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
        return await process_mail(self.app, subject, sender, reply_to=reply_to)

    async def staff_reply(self, tid: str) -> str:
        agent = Actor(kind="staff", email="agent@helpdesk.example", name="Agent", username="agent", is_admin=True)
        result = await self.app.desk.reply(agent, tid, "Here is what to do.")
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
    assert [j["name"] for j in listed] == ["auto_close", "escalate", "feedback", "housekeeping"]
    assert listed[0]["runs"] == 0 and listed[0]["active"] and listed[0]["every_minutes"] == 10
    assert not listed[1]["active"] and listed[1]["next_run_at"] is None     # no [[escalations]]: off
    done = instance.cli_json("jobs", "run", "auto_close", "--now", "2031-05-01T10:00:00Z")
    assert done == {"job": "auto_close", "as_of": "2031-05-01T10:00:00Z", "result": {"closed": 0}}
    listed = instance.cli_json("jobs", "list")["jobs"]
    assert listed[0]["runs"] == 1 and listed[0]["last_as_of"].startswith("2031-05-01T10:00:00")
    # The record's own time is the wall clock's: a run "as if" in 2031 does not push the schedule there.
    assert listed[0]["last_started_at"] < "2031" and listed[0]["next_run_at"] < "2031"
    text = instance.cli("jobs", "list").stdout.decode()
    assert "auto_close  (every 10 min)" in text and "closed 0" in text and "escalate  (off)" in text
    bad = instance.cli("jobs", "run", "auto_close", "--now", "next tuesday", check=False)
    assert bad.returncode == 64 and b"ISO 8601" in bad.stderr


# -- escalation rules --------------------------------------------------------------------------------------

BERLIN_OFFICE = '''
[[calendars]]
name = "berlin"
timezone = "Europe/Berlin"
week = { mon = "09:00-17:00", tue = "09:00-17:00", wed = "09:00-17:00", thu = "09:00-17:00", fri = "09:00-17:00" }
holidays = ["2026-12-25"]
'''


@asynccontextmanager
async def escalating(root: Path, database_url: str, rules: str, calendar: bool = False) -> AsyncIterator[Desk]:
    """An App whose config has ``rules`` (and Technical Support on the Berlin office calendar), and two
    staff members of Technical Support: ada (who hears of its new tickets) and bo."""
    root.mkdir(parents=True, exist_ok=True)
    inst = Instance(root, database_url=database_url,
                    extra_config="\n[autoclose]\nhours = 0\n" + (BERLIN_OFFICE if calendar else "") + rules)
    if calendar:
        inst.config.write_text(inst.config.read_text().replace(
            'name = "Technical Support"\n', 'name = "Technical Support"\ncalendar = "berlin"\n', 1))
    settings = config.load(inst.config)
    now = [T0]
    async with App(settings, clock=Clock(lambda: now[0])) as app:
        assert app.db is not None
        support = app.departments["Technical Support"]
        async with app.db.transaction():
            for user in ("ada", "bo"):
                sid = await staff.save(app.db, email=f"{user}@helpdesk.example", username=user, name=user.title(),
                                       is_admin=False, signature=None, stamp=app.clock.stamp())
                await staff.set_departments(app.db, sid, [support], [support] if user == "ada" else [])
        yield Desk(app, now, settings)


async def fired(desk: Desk, when: datetime) -> int:
    desk.at(when)
    return (await scheduler.run_job(desk.app, "escalate", NODE))["fired"]


STALE = '''
[[escalations]]
name = "stale"
minutes = 60
after = "client_reply"
statuses = ["Open", "Customer-Reply"]
priority = "High"
note = "Nobody answered for an hour."
notify = ["bo"]
'''


async def test_an_escalation_fires_once_and_again_only_after_a_person_changed_the_ticket(
        tmp_path: Path, database_url: str):
    async with escalating(tmp_path, database_url, STALE) as desk:
        tid = await desk.client_mail("slow", "gil@client.example")
        assert await fired(desk, T0 + timedelta(minutes=59)) == 0
        assert await fired(desk, T0 + timedelta(minutes=60)) == 1
        ticket = await tickets.by_tid(desk.app.db, tid)   # type: ignore[arg-type]
        assert ticket is not None and ticket.priority == "High"
        log = [r["event"] for r in await tickets.events(desk.app.db, ticket.id)]   # type: ignore[arg-type]
        assert log.count("escalated") == 1 and "options_changed" in log and "note" in log
        # The escalated mail: the department's staff who hear of it (ada) and the one the rule names (bo).
        assert await desk.mails("escalated") == ["ada@helpdesk.example", "bo@helpdesk.example"]
        # Its own change (the priority) is not a change by a person: nothing fires again, however late.
        assert await fired(desk, T0 + timedelta(hours=5)) == 0
        # A staff reply takes it out of the rule's statuses; the client's answer brings it back, and an
        # hour after that the rule fires again.
        desk.at(T0 + timedelta(hours=6))
        ours = await desk.staff_reply(tid)
        assert await fired(desk, T0 + timedelta(hours=8)) == 0
        desk.at(T0 + timedelta(hours=9))
        await desk.client_mail("Re: slow", "gil@client.example", reply_to=ours)
        assert await fired(desk, T0 + timedelta(hours=9, minutes=59)) == 0
        assert await fired(desk, T0 + timedelta(hours=10)) == 1
        assert await fired(desk, T0 + timedelta(hours=11)) == 0
        assert len(await desk.mails("escalated")) == 4
        runs = await jobs.last_runs(desk.app.db)   # type: ignore[arg-type]
        assert runs["escalate"].result == {"fired": 0} and runs["escalate"].runs == 7


async def test_business_minutes_skip_the_night_the_weekend_and_a_holiday(tmp_path: Path, database_url: str):
    rule = '\n[[escalations]]\nname = "first answer"\nminutes = 60\nafter = "staff_reply"\nnote = "Late."\n'
    async with escalating(tmp_path, database_url, rule, calendar=True) as desk:
        berlin = ZoneInfo("Europe/Berlin")
        # Thursday 24 December, 16:30 in Berlin: half an hour of business time that day; the 25th is a
        # holiday, then the weekend: the hour is up on Monday the 28th at 09:30.
        desk.at(datetime(2026, 12, 24, 16, 30, tzinfo=berlin))
        await desk.client_mail("before christmas", "hal@client.example")   # never answered: counts from opening
        for when, expected in (((2026, 12, 24, 17, 29), 0), ((2026, 12, 25, 16, 0), 0), ((2026, 12, 27, 12, 0), 0),
                               ((2026, 12, 28, 9, 29), 0), ((2026, 12, 28, 9, 30), 1)):
            assert await fired(desk, datetime(*when, tzinfo=berlin)) == expected, when


async def test_an_action_that_cannot_be_taken_is_logged_and_the_others_go_on(tmp_path: Path, database_url: str):
    rule = '\n[[escalations]]\nname = "to nobody"\nminutes = 10\nafter = "opened"\nassign = "nobody"\n'
    async with escalating(tmp_path, database_url, rule) as desk:
        first = await desk.client_mail("one", "ivy@client.example")
        await desk.client_mail("two", "jo@client.example")
        assert await fired(desk, T0 + timedelta(minutes=10)) == 2
        ticket = await tickets.by_tid(desk.app.db, first)   # type: ignore[arg-type]
        assert ticket is not None and ticket.assigned_to is None
        failed = [r for r in await tickets.events(desk.app.db, ticket.id)   # type: ignore[arg-type]
                  if r["event"] == "escalation_failed"]
        assert len(failed) == 1 and "nobody" in json.loads(failed[0]["detail"])["error"]
        assert await fired(desk, T0 + timedelta(hours=1)) == 0     # not retried on every run


def test_escalation_rules_in_the_config_are_checked(tmp_path: Path):
    base = settings_for(tmp_path, "")
    data = _table(base.source)
    good = {"name": "x", "minutes": 30, "priority": "high", "statuses": ["customer-reply"]}
    (rule,) = config.from_dict(base.source, {**data, "escalations": [good]}).escalations
    assert (rule.priority, rule.statuses, rule.after, rule.column) == ("High", ("Customer-Reply",), "reply",
                                                                       "last_reply_at")
    for bad, words in (({**good, "minutes": 0}, "escalations[0].minutes"),
                       ({**good, "after": "lunch"}, "escalations[0].after"),
                       ({**good, "departments": ["Nope"]}, "escalations[0].departments"),
                       ({**good, "statuses": ["Closed"]}, "escalations[0].statuses"),
                       ({"name": "idle", "minutes": 5}, "does nothing"),
                       ({**good, "colour": "red"}, "escalations[0].colour")):
        with pytest.raises(config.ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
            config.from_dict(base.source, {**data, "escalations": [bad]})
    with pytest.raises(config.ConfigError, match="calendar.*no \\[\\[calendars\\]\\] table named 'office'"):
        deps = [{**d, "calendar": "office"} for d in data["departments"]]
        config.from_dict(base.source, {**data, "departments": deps})
    with pytest.raises(config.ConfigError, match="calendars\\[0\\].timezone"):
        config.from_dict(base.source, {**data, "calendars": [{"name": "x", "timezone": "Nowhere/Else"}]})


async def test_response_targets_are_due_in_business_time_and_a_breach_escalates(tmp_path: Path, database_url: str):
    rule = '\n[[escalations]]\nname = "late first answer"\nbreached = "first_response"\nnote = "Overdue."\n'
    async with escalating(tmp_path, database_url, rule, calendar=True) as desk:
        text = desk.settings.source.read_text().replace(
            'calendar = "berlin"\n', 'calendar = "berlin"\nfirst_response_minutes = { High = 60 }\n'
                                     'resolution_minutes = 480\n', 1)
        desk.settings.source.write_text(text)
        settings = config.load(desk.settings.source)
        desk.app.settings = settings
        desk.app.desk.settings = settings
        berlin = ZoneInfo("Europe/Berlin")
        desk.at(datetime(2026, 12, 24, 16, 30, tzinfo=berlin))            # Thursday; the 25th is a holiday
        tid = await desk.client_mail("printer", "kim@client.example")
        ticket = await tickets.by_tid(desk.app.db, tid)   # type: ignore[arg-type]
        assert ticket is not None
        due = targets.of(ticket, settings, desk.now[0])
        assert due["first_response"] is None                           # no target for Medium
        assert due["resolution"]["due_at"] == iso(datetime(2026, 12, 28, 16, 30, tzinfo=berlin))
        assert await fired(desk, datetime(2027, 1, 4, 9, 0, tzinfo=berlin)) == 0   # Medium: nothing to breach
        await desk.app.desk.set_options(Actor.system("agent"), tid, Options(priority="High"))
        ticket = await tickets.by_tid(desk.app.db, tid)   # type: ignore[arg-type]
        assert ticket is not None
        first = targets.of(ticket, settings, datetime(2026, 12, 28, 9, 29, tzinfo=berlin))["first_response"]
        assert first == {"minutes": 60, "due_at": iso(datetime(2026, 12, 28, 9, 30, tzinfo=berlin)), "met_at": None,
                         "breached": False}
        assert await fired(desk, datetime(2026, 12, 28, 9, 29, tzinfo=berlin)) == 0
        assert await fired(desk, datetime(2026, 12, 28, 9, 30, tzinfo=berlin)) == 1
        assert await fired(desk, datetime(2026, 12, 28, 12, 0, tzinfo=berlin)) == 0
        desk.at(datetime(2026, 12, 28, 10, 0, tzinfo=berlin))
        await desk.staff_reply(tid)                                      # answered, half an hour late
        ticket = await tickets.by_tid(desk.app.db, tid)   # type: ignore[arg-type]
        assert ticket is not None
        first = targets.of(ticket, settings, desk.now[0])["first_response"]
        assert first["met_at"] == iso(datetime(2026, 12, 28, 10, 0, tzinfo=berlin)) and first["breached"]
        assert targets.of(ticket, settings, desk.now[0])["resolution"]["breached"] is False


def test_ticket_list_and_show_carry_their_targets(instance: Instance):
    instance.write_config()
    instance.config.write_text(instance.config.read_text().replace(
        'name = "Technical Support"\n', 'name = "Technical Support"\nfirst_response_minutes = 30\n', 1))
    instance.cli("pipe", input=make_mail(subject="targets").as_bytes())
    instance.cli("process")
    (row,) = instance.cli_json("ticket", "list")["items"]
    assert row["targets"]["first_response"]["minutes"] == 30 and row["targets"]["resolution"] is None
    shown = instance.cli_json("ticket", "show", row["tid"])
    assert shown["targets"] == row["targets"] and shown["last_staff_reply_at"] is None


# -- feedback requests -------------------------------------------------------------------------------------

async def test_a_closed_ticket_gets_one_feedback_request_after_the_delay(tmp_path: Path, database_url: str):
    inst = Instance(tmp_path, database_url=database_url)
    text = inst.config.read_text()
    inst.config.write_text(text.replace('name = "Billing"\n', 'name = "Billing"\nfeedback = false\n'))
    settings = config.load(inst.config)
    now = [T0]
    async with App(settings, clock=Clock(lambda: now[0])) as app:
        desk = Desk(app, now, settings)
        tid = await desk.client_mail("closing soon", "lu@client.example")
        ours = await desk.staff_reply(tid)
        billing = await desk.client_mail("an invoice", "mo@client.example")
        await app.desk.set_options(Actor.system("agent"), billing, Options(department="Billing"))
        idle = await desk.client_mail("goes idle", "ned@client.example")
        await desk.staff_reply(idle)
        desk.at(T0 + timedelta(hours=1))
        for t in (tid, billing):
            await app.desk.close(Actor.system("agent"), t)

        async def asked(minutes: float) -> int:
            desk.at(T0 + timedelta(hours=1, minutes=minutes))
            return (await scheduler.run_job(app, "feedback", NODE))["requested"]

        assert await asked(29) == 0
        assert await asked(30) == 1                       # Billing asks for no feedback
        (mail,) = [r for r in await outbox.listing(app.db, None, None) if r.event == "feedback_request"]  # type: ignore[arg-type]
        full = await outbox.get(app.db, mail.id)   # type: ignore[arg-type]
        assert full is not None and mail.recipient == "lu@client.example"
        key = re.search(r"/c/([A-Za-z0-9_-]{32})/feedback(?![A-Za-z0-9_-])", full.raw.decode().replace("=\n", ""))
        assert key is not None   # the client's own link, opening the feedback form
        assert await app.db.scalar("SELECT recipient FROM client_links WHERE key_hash = ?",  # type: ignore[union-attr]
                                   (hashlib.sha256(key.group(1).encode()).hexdigest(),)) == "lu@client.example"
        assert await asked(600) == 0
        # Reopened by the client's answer and closed again: still one request per ticket.
        desk.at(T0 + timedelta(hours=2))
        await desk.client_mail("Re: closing soon", "lu@client.example", reply_to=ours)
        await app.desk.close(Actor.system("agent"), tid)
        assert await asked(24 * 60) == 0
        # An auto-closed ticket is asked too, once it has been closed long enough.
        assert await run(desk, T0 + timedelta(hours=80)) == {"closed": 1}
        desk.at(T0 + timedelta(hours=81))
        assert (await scheduler.run_job(app, "feedback", NODE))["requested"] == 1
        assert await desk.mails("feedback_request") == ["lu@client.example", "ned@client.example"]


def test_feedback_list_shows_the_requests(instance: Instance):
    instance.cli("pipe", input=make_mail(subject="rate us", sender="ola@client.example").as_bytes())
    instance.cli("process")
    (ticket,) = instance.cli_json("ticket", "list")["items"]
    instance.cli("staff", "add", "ada@helpdesk.example", "--admin")
    instance.cli("ticket", "close", ticket["tid"], "--as", "ada")
    assert instance.cli_json("feedback", "list")["items"] == []
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")   # past the delay
    done = instance.cli_json("jobs", "run", "feedback", "--now", later)
    assert done["result"] == {"requested": 1}
    (row,) = instance.cli_json("feedback", "list")["items"]
    assert (row["ticket"], row["client_email"], row["rating"], row["answered_at"]) == \
        (ticket["tid"], "ola@client.example", None, None)
    assert instance.cli_json("feedback", "list", "--answered")["items"] == []


# -- housekeeping ------------------------------------------------------------------------------------------

async def test_housekeeping_empties_old_raw_mail_keeps_blocked_longer_and_removes_orphans(desk: Desk):
    from maild.clock import utcnow
    from maild.pipeline.manual import ImportRefused, import_blocked
    from maild.store.blobs import BlobSpec

    app = desk.app
    assert app.db is not None and app.env is not None and app.worker is not None
    first = await desk.client_mail("kept a month", "pat@client.example")
    auto = EmailMessage()
    auto["From"], auto["To"], auto["Subject"] = "robot@client.example", "support@helpdesk.example", "Out of office"
    auto["Auto-Submitted"] = "auto-replied"
    auto.set_content("I am away.\n")
    async with app.db.transaction():
        await inbound.insert(app.db, [Incoming(raw=auto.as_bytes(), source="smtp", envelope_from="robot@client.example",
                                               envelope_to=["support@helpdesk.example"])], app.clock.stamp())
    await app.worker.drain()
    (blocked,) = await app.db.fetchall("SELECT id, inbound_id FROM import_log WHERE outcome = 'blocked'")

    async def housekeeping(when: datetime) -> dict[str, int]:
        desk.at(when)
        return await scheduler.run_job(app, "housekeeping", NODE)

    async def raw_sizes() -> list[int]:
        return [r["n"] for r in await app.db.fetchall("SELECT length(raw) AS n FROM inbound ORDER BY id")]  # type: ignore[union-attr]

    assert (await housekeeping(T0 + timedelta(days=29)))["raw_purged"] == 0
    assert (await housekeeping(T0 + timedelta(days=30)))["raw_purged"] == 1     # the processed one
    sizes = await raw_sizes()
    assert sizes[0] == 0 and sizes[1] > 0                                         # the blocked one waits
    assert (await housekeeping(T0 + timedelta(days=90)))["raw_purged"] == 1
    assert await raw_sizes() == [0, 0]
    assert (await housekeeping(T0 + timedelta(days=400)))["raw_purged"] == 0
    with pytest.raises(ImportRefused, match="emptied by housekeeping"):
        await import_blocked(app.env, app.worker.preparer, blocked["id"], first, "reply", "test")
    # Bytes no attachment refers to go once they are older than orphan_hours by the wall clock (files are
    # dated by the disk; a run "as if" in the future must not take the bytes of mail in flight).
    store = BlobSpec.from_settings(desk.settings).open()
    sha = store.put(b"an attachment of a message that was then blocked")
    path = store.path_for(sha)   # type: ignore[attr-defined]
    assert (await housekeeping(T0 + timedelta(days=3650)))["orphans_removed"] == 0
    day_old = (utcnow() - timedelta(hours=25)).timestamp()
    os.utime(path, (day_old, day_old))      # written 25 hours ago
    # Expired web sessions and failed sign-ins older than the rate limit's window are forgotten.
    member = await staff.save(app.db, email="ada@helpdesk.example", username="ada", name="Ada", is_admin=True,
                              signature=None, stamp=iso(T0))
    when = T0 + timedelta(days=400)
    for token, began in (("old", when - timedelta(hours=13)), ("live", when - timedelta(hours=1))):
        await websessions.create(app.db, token, member, "x", iso(began), iso(began + timedelta(hours=12)))
    await websessions.failed(app.db, ["user:ada", "addr:10.0.0.1"], iso(when - timedelta(minutes=16)))
    await websessions.failed(app.db, ["user:ada"], iso(when - timedelta(minutes=1)))
    # Client links past their expiry go, with the sessions they started; a live one stays.
    ticket_id = await app.db.scalar("SELECT min(id) FROM tickets")
    async with app.db.transaction():
        await clientlinks.issue(app.db, [clientlinks.NewLink(ticket_id, "lu@client.example", "gone", iso(when)),
                                         clientlinks.NewLink(ticket_id, "lu@client.example", "kept",
                                                             iso(when + timedelta(days=1)))], iso(T0))
    gone = await clientlinks.live(app.db, "gone", iso(when - timedelta(days=1)))
    assert gone is not None
    await clientlinks.start_session(app.db, gone, "session", "csrf", iso(T0), iso(when + timedelta(days=9)))
    done = await housekeeping(when)
    assert done["orphans_removed"] == 1 and not path.exists()
    assert done["sign_in_rows_purged"] == 3 and done["client_link_rows_purged"] == 2
    assert [r["key_hash"] for r in await app.db.fetchall("SELECT key_hash FROM client_links")] == ["kept"]
    assert [r["token_hash"] for r in await app.db.fetchall("SELECT token_hash FROM web_sessions")] == ["live"]
    assert await websessions.failures(app.db, "user:ada", iso(when - timedelta(hours=1))) == 1
    if app.db.engine == "sqlite":
        assert {"wal_pages", "wal_pages_checkpointed", "checkpoint_busy"} <= set(done)


PING = '\n[[escalations]]\nname = "ping"\nminutes = 10\nafter = "opened"\nnotify = ["bo"]\n'


async def test_overlapping_escalation_and_feedback_runs_act_once_per_ticket(tmp_path: Path, database_url: str):
    """Two processes running the same job at once (the daemon and an admin's `jobs run`, or two nodes
    around a lease takeover): each ticket is escalated once and asked for feedback once. A notify-only rule
    and a feedback request change no ticket column, so only the record of the firing can decide."""
    async with escalating(tmp_path, database_url, PING) as desk:
        tids = [await desk.client_mail(f"overlap {i}", f"p{i}@client.example") for i in range(6)]
        for tid in tids[:3]:
            await desk.app.desk.close(Actor.system("agent"), tid)
        desk.at(T0 + timedelta(hours=2))
        async with App(desk.settings, clock=desk.app.clock) as other:
            for job, key in (("escalate", "fired"), ("feedback", "requested")):
                results = await asyncio.gather(scheduler.run_job(desk.app, job, NODE),
                                               scheduler.run_job(other, job, "other-node"))
                assert sum(r[key] for r in results) == 3, (job, results)
        rows = await desk.app.db.fetchall(  # type: ignore[union-attr]
            "SELECT ticket_id, count(*) AS n FROM ticket_log WHERE event = 'escalated' GROUP BY ticket_id")
        assert len(rows) == 3 and all(r["n"] == 1 for r in rows)
        assert len(await desk.mails("escalated")) == 3 * 2          # ada (the department) and bo (notify)
        assert len(await desk.mails("feedback_request")) == 3


async def test_a_run_as_of_another_time_does_not_rearm_a_rule(tmp_path: Path, database_url: str):
    """Firing is recorded against the ticket's count of changes, not a time: a run "as if" in the past or
    the future (jobs run --now), or a node whose clock is off, neither fires a rule twice nor stops it."""
    async with escalating(tmp_path, database_url, PING) as desk:
        tid = await desk.client_mail("timeless", "q@client.example")
        desk.at(T0 + timedelta(hours=5))
        ours = await desk.staff_reply(tid)                         # a person's change, at 5 h
        assert await fired(desk, T0 + timedelta(hours=1)) == 1     # as if at 1 h: before that change
        assert await fired(desk, T0 + timedelta(hours=6)) == 0     # now: fired at this count already
        assert await fired(desk, T0 + timedelta(days=365)) == 0    # far ahead: still nothing
        desk.at(T0 + timedelta(hours=7))
        await desk.client_mail("Re: timeless", "q@client.example", reply_to=ours)
        assert await fired(desk, T0 + timedelta(hours=3)) == 1     # a new change re-arms it, whatever the time
