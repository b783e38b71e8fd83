"""The scheduler: APScheduler 3 (``AsyncIOScheduler``, inside ``ticketd serve``) says when to look, each job
every ``[jobs] NAME`` minutes; the job asks the database what is due as of the injected clock's time.

* With several nodes, one node at a time runs the jobs: the one holding the ``scheduler`` lease
  (maild/nodes.py); another takes it over when that node dies.
* Each run is recorded in ``job_runs`` (``ticketd jobs list``). A node that starts (or takes the lease
  over) runs a job at once only when its interval has passed since the last run anywhere, else when it
  has: never twice after a restart.
* Coalescing on and no misfire grace limit: a busy or suspended process runs a late job once when it can,
  never once per missed interval and never silently not at all.
* ``ticketd jobs run NAME [--now ISO]`` runs one job once, as if at that time (cron-style set-ups, tests).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from maild.clock import Clock, iso, parse
from maild.jobs import NAMES, autoclose, escalate, feedback, housekeeping
from maild.nodes import LeaseKeeper
from maild.store import jobs as runs
from maild.store.jobs import JobRun

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from maild.app import App
    from maild.config import Settings

log = logging.getLogger("ticketd.jobs")

LEASE = "scheduler"


@dataclass(frozen=True)
class Job:
    name: str
    summary: str
    work: Callable[[App, datetime], Awaitable[dict[str, int]]]
    active: Callable[[Settings], bool] = lambda settings: True

    def minutes(self, settings: Settings) -> int:
        return int(getattr(settings.jobs, self.name))


JOBS: dict[str, Job] = {job.name: job for job in (
    Job("auto_close", "close tickets idle for [autoclose] hours in [autoclose] statuses", autoclose.run,
        lambda s: s.autoclose.hours > 0),
    Job("escalate", "fire the [[escalations]] rules on the tickets they are due on", escalate.run,
        lambda s: bool(s.escalations)),
    Job("feedback", "ask the clients of tickets closed for [feedback] delay_minutes for feedback, once",
        feedback.run, lambda s: any(d.feedback for d in s.departments)),
    Job("housekeeping", "empty old raw mail, remove unused attachment bytes, database upkeep", housekeeping.run),
)}


assert tuple(JOBS) == NAMES, "maild/jobs/__init__.py NAMES lists every job"


def next_run(job: Job, settings: Settings, last: JobRun | None, now: datetime) -> datetime:
    """When ``job`` is due next: its interval after the last run's start, or now if that has passed (a
    late job runs once, whatever it missed)."""
    if last is None or not last.started_at:
        return now
    due = parse(last.started_at) + timedelta(minutes=job.minutes(settings))
    return max(due, now)


async def run_job(app: App, name: str, node: str, as_of: datetime | None = None,
                  wall: Clock | None = None) -> dict[str, int]:
    """Run job ``name`` once as of ``as_of`` (default: the clock's now), recorded in job_runs and logged.
    ``wall`` stamps the record when the run is "as if" at another time (``jobs run --now``), so that a run
    as of next year does not hold the daemon's schedule back until then."""
    assert app.db is not None
    job = JOBS[name]
    when = as_of or app.clock.now()
    stamps = wall or app.clock
    await runs.started(app.db, name, node, stamps.stamp(), iso(when))
    try:
        result = await job.work(app, when)
    except Exception as exc:
        await runs.finished(app.db, name, stamps.stamp(), {}, f"{type(exc).__name__}: {exc}")
        raise
    await runs.finished(app.db, name, stamps.stamp(), result)
    log.info("job", extra={"kv": {"job": name, "as_of": iso(when), **result}})
    return result


def describe(settings: Settings, last: dict[str, JobRun], now: datetime) -> list[dict[str, Any]]:
    """Each job as ``jobs list`` shows it."""
    out = []
    for job in JOBS.values():
        run = last.get(job.name)
        active = job.active(settings)
        out.append({
            "name": job.name, "summary": job.summary, "every_minutes": job.minutes(settings), "active": active,
            "last_started_at": run.started_at if run else None,
            "last_finished_at": (run.finished_at or None) if run else None,
            "last_as_of": run.as_of if run else None, "last_node": run.node if run else None,
            "last_result": run.result if run else None, "last_error": (run.error or None) if run else None,
            "runs": run.runs if run else 0,
            "next_run_at": iso(next_run(job, settings, run, now)) if active else None,
        })
    return out


class Scheduler:
    """The jobs of ``ticketd serve``: scheduled while this node holds the scheduler lease."""

    def __init__(self, app: App, node: str) -> None:
        assert app.db is not None
        self.app, self.node = app, node
        self.settings = app.settings
        self._aps: AsyncIOScheduler | None = None
        self._keeper = LeaseKeeper(app.db, LEASE, node, app.clock, app.settings.database.lease_seconds,
                                   self._gained, self._lost)
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self._aps = AsyncIOScheduler(timezone=UTC, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        self._aps.start(paused=True)
        self._task = asyncio.create_task(self._keeper.run(), name="scheduler-lease")

    async def _gained(self) -> None:
        assert self._aps is not None and self.app.db is not None
        last = await runs.last_runs(self.app.db)
        now = self.app.clock.now()
        for job in JOBS.values():
            if not job.active(self.settings):
                continue
            first = next_run(job, self.settings, last.get(job.name), now)
            self._aps.add_job(self._tick, "interval", args=(job.name,), id=job.name, name=job.name,
                              minutes=job.minutes(self.settings), start_date=first, next_run_time=first,
                              replace_existing=True)
        self._aps.resume()
        log.info("scheduler started", extra={"kv": {"node": self.node, "jobs": ",".join(
            j.name for j in JOBS.values() if j.active(self.settings))}})

    async def _lost(self) -> None:
        if self._aps is not None:
            self._aps.pause()
            self._aps.remove_all_jobs()
        for task in list(self._running):   # a run in hand ends (the desk re-checks what it changes)
            await asyncio.wait([task])

    async def _tick(self, name: str) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            await run_job(self.app, name, self.node)
        except Exception as exc:
            log.error("job failed: %s", exc, extra={"kv": {"job": name}}, exc_info=True)
        finally:
            if task is not None:
                self._running.discard(task)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self._keeper.release()
        if self._aps is not None:
            self._aps.shutdown(wait=False)
            self._aps = None
