"""``ticketd ingest`` (spool and process files) and ``ticketd process`` (drain the spool)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

from maild.app import App
from maild.cli import EX_NOINPUT, EX_USAGE
from maild.commands.output import print_json
from maild.config import Settings
from maild.pipeline.worker import Result
from maild.receive.ingest import SourceError, count_messages, iter_messages
from maild.spool import Incoming
from maild.spoolwriter import spool_many

SPOOL_BATCH = 200


class Progress:
    """A progress line on stderr, only when stdout is a terminal."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.on = sys.stdout.isatty()
        self.start = time.monotonic()

    def show(self, done: int) -> None:
        if not self.on:
            return
        rate = done / max(time.monotonic() - self.start, 1e-6)
        of = f"/{self.total}" if self.total is not None else ""
        print(f"\ringested {done}{of} messages ({rate:.0f}/s)", end="", file=sys.stderr, flush=True)

    def end(self) -> None:
        if self.on:
            print(file=sys.stderr)


def _summary(results: list[Result], seconds: float) -> dict:
    counts = Counter(r.outcome.label for r in results)
    return {
        "messages": len(results),
        "seconds": round(seconds, 3),
        "outcomes": dict(sorted(counts.items())),
        "items": [
            {
                "queue_id": r.inbound.id,
                "source_ref": r.inbound.source_ref,
                "outcome": r.outcome.name,
                "reason": r.outcome.reason,
                "ticket": r.tid,
            }
            for r in results
        ],
    }


def _print(summary: dict, as_json: bool) -> None:
    if as_json:
        print_json(summary)
        return
    print(f"{summary['messages']} messages in {summary['seconds']} s")
    for label, n in summary["outcomes"].items():
        print(f"  {label:32} {n}")
    for item in summary["items"]:
        if item["outcome"] == "failed":
            print(f"  failed: queue id {item['queue_id']} {item['source_ref'] or ''}"
                  f" (see: ticketd import-log --outcome failed)")


async def _ingest(args: argparse.Namespace, settings: Settings, dept: str | None) -> dict:
    started = time.monotonic()
    progress = Progress(count_messages(args.paths))
    mine: set[int] = set()
    results: list[Result] = []
    async with App(settings, parsers=settings.worker_parsers) as app:
        db, worker = app.db, app.worker
        assert db is not None and worker is not None
        batch: list[Incoming] = []

        async def flush() -> None:
            ids = await spool_many(db, batch, app.clock.stamp())
            mine.update(ids)
            batch.clear()
            results.extend(r for r in await worker.drain() if r.inbound.id in mine)
            progress.show(len(results))

        for raw, ref in iter_messages(args.paths):
            batch.append(Incoming(raw=raw, source="ingest", source_ref=ref, department_hint=dept))
            if len(batch) >= SPOOL_BATCH:
                await flush()
        if batch:
            await flush()
    progress.end()
    return _summary(results, time.monotonic() - started)


async def _process(settings: Settings) -> dict:
    started = time.monotonic()
    async with App(settings) as app:
        assert app.worker is not None
        results = await app.worker.drain()
    return _summary(results, time.monotonic() - started)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "process":
        _print(asyncio.run(_process(settings)), args.json)
        return 0
    dept = None
    if args.department:
        found = settings.department(args.department)
        if found is None:
            names = ", ".join(d.name for d in settings.departments)
            print(f"ticketd ingest: --department {args.department!r} is not a configured department"
                  f" ({names})", file=sys.stderr)
            return EX_USAGE
        dept = found.name
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        print(f"ticketd ingest: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return EX_NOINPUT
    try:
        summary = asyncio.run(_ingest(args, settings, dept))
    except (SourceError, OSError) as exc:
        print(f"ticketd ingest: {exc}", file=sys.stderr)
        return EX_NOINPUT
    _print(summary, args.json)
    return 0
