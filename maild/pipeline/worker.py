"""The pipeline worker: takes spooled messages in order and runs the chain on each.

A batch is parsed in a thread (no lock held), then applied in one write transaction, each message inside
its own savepoint: a message's ticket rows and its import-log outcome commit together, and one commit
(one fsync) covers the batch. An unexpected exception parks that message as ``failed`` with its
traceback and the worker moves on; a storage error (disk full, I/O) rolls the batch back, and the worker
retries later, so nothing is half-done.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import traceback
from collections.abc import Sequence
from dataclasses import dataclass

from maild.outcomes import Failed, Outcome
from maild.pipeline import chain
from maild.pipeline.context import Env, MessageContext
from maild.pipeline.parse import ParsedMail, parse
from maild.store import importlog, inbound
from maild.store.inbound import InboundRow

log = logging.getLogger("ticketd.pipeline")

POLL_SECONDS = 0.5            # rows spooled by other processes (ticketd pipe) are found this fast
RETRY_SECONDS = (1, 2, 5, 10, 30, 60)
_TRANSIENT = ("locked", "busy", "disk", "full", "i/o", "unable to open", "readonly", "read-only")


def is_transient(exc: BaseException) -> bool:
    """Storage trouble that a retry can cure, as opposed to a bug or a bad message."""
    if isinstance(exc, OSError):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return any(word in text for word in _TRANSIENT)
    return False


@dataclass(frozen=True)
class Result:
    inbound: InboundRow
    outcome: Outcome
    tid: str | None


class Worker:
    def __init__(self, env: Env, batch: int | None = None) -> None:
        self.env = env
        self.batch = batch or env.settings.worker_batch
        self._wake = asyncio.Event()
        self.processed = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Process until ``stop`` is set; the batch in hand is always finished first."""
        failures = 0
        while not stop.is_set():
            try:
                results = await self.process_batch()
                failures = 0
            except Exception as exc:
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                log.error("pipeline batch rolled back, retrying in %ss: %s", delay, exc,
                          exc_info=not is_transient(exc))
                await _wait_any(stop, None, delay)
                continue
            if not results:
                self._wake.clear()
                await _wait_any(stop, self._wake, POLL_SECONDS)

    async def drain(self) -> list[Result]:
        """Process every pending row, then return (used by ``ingest``, ``process`` and tests)."""
        done: list[Result] = []
        while results := await self.process_batch():
            done.extend(results)
        return done

    async def process_batch(self) -> list[Result]:
        rows = await inbound.pending(self.env.db, self.batch)
        if not rows:
            return []
        return await self.process_rows(rows, from_state="new")

    async def process_rows(self, rows: Sequence[tuple[InboundRow, bytes]], from_state: str) -> list[Result]:
        parsed = await asyncio.to_thread(_parse_all, [raw for _, raw in rows])
        db = self.env.db
        results: list[Result] = []
        async with db.transaction():
            for (row, raw), mail in zip(rows, parsed, strict=True):
                if not await inbound.claim(db, row.id, "done", from_state=from_state):
                    continue  # another worker (an `ingest` beside `serve`) took it
                outcome = await self._one(row, raw, mail)
                results.append(Result(row, outcome, await self._tid(outcome)))
        self.processed += len(results)
        for result in results:
            _log_outcome(result)
        return results

    async def _one(self, row: InboundRow, raw: bytes, mail: ParsedMail | BaseException) -> Outcome:
        db = self.env.db
        ctx = None
        try:
            if isinstance(mail, BaseException):
                raise mail
            ctx = MessageContext(inbound=row, raw=raw, mail=mail)
            async with db.savepoint("message"):
                outcome = await chain.run(ctx, self.env)
                await importlog.record(db, _entry(row, ctx, outcome), self.env.clock.stamp())
            return outcome
        except Exception as exc:
            if is_transient(exc):
                raise
            outcome = Failed(reason=type(exc).__name__, detail="".join(traceback.format_exception(exc)))
            await inbound.set_state(db, row.id, "failed")
            try:
                async with db.savepoint("failed"):
                    await importlog.record(db, _entry(row, ctx, outcome), self.env.clock.stamp())
            except Exception as exc2:
                if is_transient(exc2):
                    raise
                # The message's own fields broke the log row too: record the failure without them.
                await importlog.record(db, _entry(row, None, outcome), self.env.clock.stamp())
            return outcome

    async def _tid(self, outcome: Outcome) -> str | None:
        if outcome.ticket_id is None:
            return None
        return await self.env.db.scalar("SELECT tid FROM tickets WHERE id = ?", (outcome.ticket_id,))


def _parse_all(raws: list[bytes]) -> list[ParsedMail | BaseException]:
    out: list[ParsedMail | BaseException] = []
    for raw in raws:
        try:
            out.append(parse(raw))
        except Exception as exc:  # parse() is built not to raise; if it does, the message is parked
            out.append(exc)
    return out


def _entry(row: InboundRow, ctx: MessageContext | None, outcome: Outcome) -> importlog.Entry:
    mail = ctx.mail if ctx else None
    notes = list(mail.notes) if mail else []
    if ctx:
        notes += ctx.notes
    detail = outcome.detail
    if notes:
        detail = (detail + "\n" if detail else "") + "\n".join(notes)
    return importlog.Entry(
        inbound_id=row.id,
        outcome=outcome.name,
        reason=outcome.reason,
        detail=detail,
        ticket_id=outcome.ticket_id,
        department_id=ctx.department.id if ctx and ctx.department else None,
        from_addr=ctx.author_email if ctx else "",
        from_name=mail.from_name if mail else "",
        subject=mail.subject if mail else "",
        message_id=mail.message_id if mail else "",
        dedupe_key=mail.dedupe_key if mail else "",
    )


def _log_outcome(result: Result) -> None:
    row, outcome = result.inbound, result.outcome
    level = logging.ERROR if outcome.name == "failed" else logging.INFO
    log.log(
        level,
        "processed",
        extra={"kv": {
            "queue_id": row.id,
            "source": row.source,
            "outcome": outcome.name,
            "reason": outcome.reason or None,
            "ticket": result.tid,
            "size": row.size,
        }},
    )


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event | None, timeout: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
