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
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from maild.clock import iso
from maild.outcomes import Failed, Outcome
from maild.pipeline import chain
from maild.pipeline.context import Env, MessageContext
from maild.pipeline.parse import ParsedMail
from maild.pipeline.prepare import Preparer
from maild.store import importlog, inbound
from maild.store.db import is_transient, node_name
from maild.store.inbound import InboundRow

log = logging.getLogger("ticketd.pipeline")

POLL_SECONDS = 0.5            # rows spooled by other processes (ticketd pipe) are found this fast
MAX_TX_SECONDS = 0.25         # hold the write lock no longer (in-process writers are seen waiting anyway)
RETRY_SECONDS = (1, 2, 5, 10, 30, 60)
RESCAN_SECONDS = 2.0          # the whole spool is looked at again at least this often


class _Careful(Exception):
    """A message failed in an optimistic batch: roll it back and run it again with savepoints."""


@dataclass(frozen=True)
class Result:
    inbound: InboundRow
    outcome: Outcome

    @property
    def tid(self) -> str | None:
        return self.outcome.tid


class Worker:
    def __init__(self, env: Env, preparer: Preparer, batch: int | None = None,
                 poll_seconds: float = POLL_SECONDS, max_tx_seconds: float = MAX_TX_SECONDS) -> None:
        self.env = env
        self.poll_seconds = poll_seconds
        self.max_tx_seconds = max_tx_seconds
        self.batch = batch or env.settings.worker.batch
        self.preparer = preparer
        self._wake = asyncio.Event()
        self._high = 0                 # highest queue id fetched; the next fetch starts above it
        self._rescan_at = 0.0          # time.monotonic() when the next fetch starts from the spool's start
        self._next: tuple[list[tuple[InboundRow, bytes]], asyncio.Future] | None = None
        self.processed = 0
        self.node = node_name(env.settings.database.node)
        # Spool rows fetched are this node's for so long (then another node's: see [database] lease_seconds).
        self.lease = timedelta(seconds=env.settings.database.lease_seconds)
        self.listeners: list[Callable[[Result], None]] = []   # told of each outcome once committed

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._forget_prefetch()
        self.preparer.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Process until ``stop`` is set; the batch in hand is always finished first."""
        failures = 0
        try:
            while not stop.is_set():
                try:
                    results = await self.process_batch()
                    failures = 0
                except Exception as exc:
                    delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                    failures += 1
                    log.error("pipeline batch rolled back, retrying in %ss: %s", delay, exc,
                              exc_info=not is_transient(exc))
                    await wait_any(delay, stop)
                    continue
                if not results and self._next is None:
                    self._wake.clear()
                    await wait_any(self.poll_seconds, stop, self._wake)
        finally:
            self._forget_prefetch()

    async def drain(self) -> list[Result]:
        """Process every pending row and turn the notifications queued meanwhile into outbox mail, then return
        (used by ``ingest``, ``process`` and tests; in ``serve`` the outbox sender expands the queue)."""
        done: list[Result] = []
        while True:
            results = await self.process_batch()
            done.extend(results)
            if not results and self._next is None:
                await self.env.notifier.expand()
                return done

    async def _fetch(self, in_hand: Sequence[int] = ()) -> tuple[list[tuple[InboundRow, bytes]], asyncio.Future] | None:
        now = self.env.clock.now()
        if time.monotonic() >= self._rescan_at:
            # Rows below the last one fetched can still appear: a pipe delivery that committed late, rows
            # another node had claimed and died with. Under steady load the spool never runs dry, so look
            # from its start again now and then, not only when it is empty.
            self._high = 0
            self._rescan_at = time.monotonic() + RESCAN_SECONDS
        rows = await inbound.pending(self.env.db, self.batch, after=self._high, exclude=in_hand,
                                     claim=(self.node, iso(now), iso(now + self.lease)))
        if not rows:
            self._high = 0  # next time, look at the whole spool again
            return None
        self._high = rows[-1][0].id
        return rows, asyncio.ensure_future(self.preparer.prepare([raw for _, raw in rows]))

    def _forget_prefetch(self) -> None:
        if self._next is not None:
            self._next[1].cancel()
            self._next = None
        self._high = 0

    async def process_batch(self) -> list[Result]:
        """Apply one batch while the next one is being parsed."""
        try:
            current = self._next or await self._fetch()
            self._next = None
            if current is None:
                return []
            rows, preparing = current
            parsed = await preparing
            self._next = await self._fetch([row.id for row, _ in rows])
            return await self._apply(rows, parsed, from_state="new")
        except BaseException:
            self._forget_prefetch()  # a rolled-back batch is fetched again from the start
            raise

    async def process_rows(self, rows: Sequence[tuple[InboundRow, bytes]], from_state: str) -> list[Result]:
        """Process ``rows`` (``reprocess``) and expand the notifications they queued."""
        parsed = await self.preparer.prepare([raw for _, raw in rows])
        results = await self._apply(rows, parsed, from_state)
        await self.env.notifier.expand()
        return results

    async def _apply(self, rows: Sequence[tuple[InboundRow, bytes]], parsed: list[ParsedMail | BaseException],
                     from_state: str) -> list[Result]:
        """Apply a batch in as few transactions as possible, but hand the write lock over as soon as the
        receivers need it (they hold an SMTP client waiting for its 250)."""
        db = self.env.db
        results: list[Result] = []
        todo = list(zip(rows, parsed, strict=True))
        careful = False
        while todo:
            committed: list[Result] = []
            try:
                # The batch's statements run on the database's side in one go (Database.unit).
                done = await db.unit(partial(self._transaction, todo, from_state, careful, committed))
            except _Careful:
                careful = True  # the batch rolled back whole; again, one savepoint per message
                continue
            finally:
                self.env.deferred = None
            todo = todo[done:]
            self.processed += len(committed)
            for result in committed:
                _log_outcome(result)
                for listener in self.listeners:
                    listener(result)
            results.extend(committed)
        return results

    async def _transaction(self, todo: list[tuple[tuple[InboundRow, bytes], ParsedMail | BaseException]],
                           from_state: str, careful: bool, committed: list[Result]) -> int:
        """One transaction's part of the batch: the messages it got to (how many), their results added to
        ``committed``."""
        db = self.env.db
        began = time.monotonic()
        # Optimistically, the messages' notifications are followed together at the end of the transaction
        # (a few statements for the batch instead of per message).
        self.env.deferred = None if careful else []
        # Rows another worker took meanwhile drop out; ours stay ours while we hold the lock.
        mine = await inbound.owned(db, [row.id for (row, _), _ in todo], from_state)
        done = 0
        for (row, raw), mail in todo:
            done += 1
            if row.id in mine:
                committed.append(Result(row, await self._one(row, raw, mail, careful)))
            if db.others_waiting() or time.monotonic() - began > self.max_tx_seconds:
                break  # the receivers need the lock: the rest waits for the next transaction
        await self._follow_deferred()
        await inbound.finish(db, [r.inbound.id for r in committed if not isinstance(r.outcome, Failed)], from_state)
        return done

    async def _follow_deferred(self) -> None:
        """The batch's notifications, queued in the batch's transaction (one statement; the mail is made
        outside the write lock). If that fails, the batch runs again with a savepoint per message, each
        queueing its own, so that one message's trouble stays its own."""
        events, self.env.deferred = self.env.deferred, None
        if not events:
            return
        try:
            await self.env.notifier.follow(events)
        except Exception as exc:
            if is_transient(exc):
                raise
            raise _Careful from exc

    async def _one(self, row: InboundRow, raw: bytes, mail: ParsedMail | BaseException, careful: bool) -> Outcome:
        """Run the chain on one message. Optimistically without a savepoint (two round trips saved per
        message); the first failure rolls the batch back and it runs again ``careful``ly, where a failing
        message's changes are undone alone and it is parked as ``failed``."""
        db = self.env.db
        ctx = None
        try:
            if isinstance(mail, BaseException):
                raise mail
            ctx = MessageContext(inbound=row, raw=raw, mail=mail)
            if not careful:
                outcome = await chain.run(ctx, self.env)
                await importlog.record(db, _entry(row, ctx, outcome), self.env.clock.stamp())
                return outcome
            async with db.savepoint("message"):
                outcome = await chain.run(ctx, self.env)
                await importlog.record(db, _entry(row, ctx, outcome), self.env.clock.stamp())
            return outcome
        except Exception as exc:
            if is_transient(exc):
                raise
            if not careful:
                raise _Careful from exc
            outcome = Failed(reason=type(exc).__name__, detail="".join(traceback.format_exception(exc)))
            await inbound.mark_failed(db, row.id)
            try:
                async with db.savepoint("failed"):
                    await importlog.record(db, _entry(row, ctx, outcome), self.env.clock.stamp())
            except Exception as exc2:
                if is_transient(exc2):
                    raise
                # The message's own fields broke the log row too: record the failure without them.
                await importlog.record(db, _entry(row, None, outcome), self.env.clock.stamp())
            return outcome

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


async def wait_any(timeout: float, *events: asyncio.Event) -> None:
    """Sleep up to ``timeout`` seconds, less if one of ``events`` is set. Leaves no waiter behind (a loop
    that waits twice a second for a day must not pile up tasks)."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
