"""``ticketd jobs list | run NAME [--now ISO]``: the scheduler's jobs, their runs, and one run by hand."""

from __future__ import annotations

import argparse
import asyncio
from datetime import datetime
from typing import Any

from maild.app import App
from maild.clock import Clock, utcnow
from maild.commands.output import print_json
from maild.config import Settings
from maild.jobs import scheduler
from maild.store import jobs as runs
from maild.store.db import node_name


async def _list(settings: Settings) -> list[dict[str, Any]]:
    async with App(settings) as app:
        assert app.db is not None
        return scheduler.describe(settings, await runs.last_runs(app.db), app.clock.now())


async def _run(settings: Settings, name: str, now: datetime | None) -> dict[str, Any]:
    # As if at --now: the desk, the notifications and the run's record read this fixed time.
    clock = Clock((lambda: now) if now is not None else utcnow)
    async with App(settings, clock=clock) as app:
        when = app.clock.now()
        result = await scheduler.run_job(app, name, node_name(settings.database.node), when,
                                         wall=Clock() if now is not None else None)
        return {"job": name, "as_of": when.isoformat().replace("+00:00", "Z"), "result": result}


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.jobs_command == "list":
        jobs = asyncio.run(_list(settings))
        if args.json:
            print_json({"jobs": jobs})
            return 0
        for j in jobs:
            state = f"every {j['every_minutes']} min" if j["active"] else "off"
            print(f"{j['name']}  ({state}): {j['summary']}")
            if j["last_started_at"]:
                outcome = (f"failed: {j['last_error']}" if j["last_error"] else
                           ", ".join(f"{k} {v}" for k, v in sorted(j["last_result"].items())) or "done"
                           if j["last_finished_at"] else "did not finish")
                print(f"    last run {j['last_started_at'][:19]}Z on {j['last_node']} (as of {j['last_as_of'][:19]}Z):"
                      f" {outcome}; {j['runs']} run(s) in all")
            else:
                print("    never run")
            if j["next_run_at"]:
                print(f"    next run {j['next_run_at'][:19]}Z (when ticketd serve holds the scheduler)")
        return 0
    if args.jobs_command == "run":
        done = asyncio.run(_run(settings, args.name, args.now))
        if args.json:
            print_json(done)
        else:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(done["result"].items())) or "nothing to do"
            print(f"{args.name} as of {done['as_of']}: {counts}")
        return 0
    raise AssertionError(args.jobs_command)
