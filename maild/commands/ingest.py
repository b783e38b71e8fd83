"""``ticketd ingest`` (spool and process files) and ``ticketd process`` (drain the spool)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from maild.app import App
from maild.cli import EX_NOINPUT
from maild.commands.output import plural, print_json
from maild.config import Settings
from maild.outcomes import label
from maild.pipeline.worker import Result
from maild.receive.ingest import SourceError, count_messages, iter_messages
from maild.spool import Incoming
from maild.spoolwriter import spool_many
from maild.store import importlog

SPOOL_BATCH = 200
AHEAD = 2000          # messages spooled but not yet processed, at most


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
        print(f"\rprocessed {done}{of} messages ({rate:.0f}/s)", end="", file=sys.stderr, flush=True)

    def end(self) -> None:
        if self.on:
            print(file=sys.stderr)


def _summary(rows: list[dict], seconds: float) -> dict:
    counts = Counter(label(r["outcome"], r["reason"]) for r in rows)
    return {
        "messages": len(rows),
        "seconds": round(seconds, 3),
        "outcomes": dict(sorted(counts.items())),
        "items": rows,
    }


def _item(queue_id: int, source_ref: str | None, outcome: str, reason: str, tid: str | None) -> dict:
    return {"queue_id": queue_id, "source_ref": source_ref, "outcome": outcome, "reason": reason, "ticket": tid}


def _print(summary: dict, as_json: bool) -> None:
    if as_json:
        print_json(summary)
        return
    print(f"{plural(summary['messages'], 'message')} processed in {summary['seconds']} s")
    if summary.get("also_processed"):
        print(f"  (and {plural(summary['also_processed'], 'message')} that waited in the spool before;"
              " see ticketd import-log)")
    for name, n in summary["outcomes"].items():
        print(f"  {name:32} {n}")
    for item in summary["items"]:
        if item["outcome"] == "failed":
            print(f"  failed: queue id {item['queue_id']} {item['source_ref'] or ''}"
                  f" (see: ticketd import-log --outcome failed)")


async def _ingest(args: argparse.Namespace, settings: Settings, dept: str | None) -> dict:
    """Read and spool on one side while the worker processes on the other; at most ``AHEAD`` messages
    wait in the spool, so a big mbox runs in bounded memory. The summary is read back from the import
    log, so messages that a ``serve`` running beside us processed are counted too. Our worker also processes
    what was waiting in the spool before us; that is counted apart (``also_processed``), never as ours."""
    started = time.monotonic()
    progress = Progress(count_messages(args.paths))
    mine: list[int] = []
    mine_set: set[int] = set()
    seen: set[int] = set()      # finished: by our worker, or found in the import log
    done = 0                    # how many of ``mine`` are in ``seen``
    moved = asyncio.Event()

    def finished(ids: Iterable[int]) -> None:
        nonlocal done
        for i in ids:
            if i not in seen:
                seen.add(i)
                done += i in mine_set

    def on_result(result: Result) -> None:
        finished((result.inbound.id,))
        progress.show(done)
        moved.set()

    def spooled(ids: list[int]) -> None:
        nonlocal done
        mine.extend(ids)
        mine_set.update(ids)
        done += sum(1 for i in ids if i in seen)   # processed before spool_many returned

    async with App(settings, parsers=settings.worker.parsers) as app:
        db, worker = app.db, app.worker
        assert db is not None and worker is not None
        spool_db = await db.another()
        stop = asyncio.Event()
        worker.listeners.append(on_result)
        task = asyncio.create_task(worker.run(stop), name="pipeline-worker")

        async def wait_until(pending: int) -> None:
            while len(mine) - done > pending:
                if task.done():
                    await task  # raises what stopped it
                    raise RuntimeError("the pipeline worker stopped early")
                moved.clear()
                waiter = asyncio.ensure_future(moved.wait())
                ready, _ = await asyncio.wait([waiter, task], timeout=1, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if not ready:  # no news for a second: another worker may have taken our rows
                    unseen = [i for i in mine if i not in seen]
                    finished(r["inbound_id"] for r in await importlog.outcomes_for(db, unseen))

        try:
            batch: list[Incoming] = []
            for raw, ref in iter_messages(args.paths):
                batch.append(Incoming(raw=raw, source="ingest", source_ref=ref, department_hint=dept))
                if len(batch) >= SPOOL_BATCH:
                    spooled(await spool_many(spool_db, batch, app.clock.stamp()))
                    batch.clear()
                    worker.wake()
                    await wait_until(AHEAD)
            if batch:
                spooled(await spool_many(spool_db, batch, app.clock.stamp()))
                worker.wake()
            await wait_until(0)
        finally:
            stop.set()
            await task
            await spool_db.close()
        await app.notifier.expand()   # the notifications the pipeline queued become outbox mail
        rows = await importlog.outcomes_for(db, mine)
    progress.end()
    items = [_item(r["inbound_id"], r["source_ref"], r["outcome"], r["reason"], r["tid"]) for r in rows]
    return {**_summary(items, time.monotonic() - started), "also_processed": len(seen - mine_set)}


async def _process(settings: Settings) -> dict:
    started = time.monotonic()
    async with App(settings) as app:
        assert app.worker is not None
        results = await app.worker.drain()
    items = [_item(r.inbound.id, r.inbound.source_ref, r.outcome.name, r.outcome.reason, r.tid) for r in results]
    return _summary(items, time.monotonic() - started)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "process":
        _print(asyncio.run(_process(settings)), args.json)
        return 0
    dept = None
    if args.department:
        found = settings.department(args.department)
        if found is None:
            names = ", ".join(d.name for d in settings.departments)
            print(f"ticketd ingest: no department {args.department!r}; configured: {names}", file=sys.stderr)
            return EX_NOINPUT
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
