"""The outbox sender: delivers queued outbox rows through the configured transport.

Contract:

* ``outbound.connections`` lanes deliver at once, each over its own session (one SMTP connection, kept
  while there is work and closed after :data:`IDLE_CLOSE_SECONDS` without any). One SMTP transaction per
  row, MAIL FROM the signed VERP address ``sender+b{id}-{mac}@domain`` (:mod:`maild.notify.tokens`).
* A mail is marked sent in a commit right after the relay's 250. Attempts that end while a commit is
  being written share the next one (a group commit), but no commit waits for a send that has not
  ended. A crash therefore resends at most the mails in flight (same bytes, same Message-ID) and loses
  none.
* A temporary failure is retried after ``BACKOFF_BASE_SECONDS * 2**attempts`` (capped at
  ``outbound.max_backoff_seconds``) until ``created_at + outbound.retry_hours``, then the mail fails; a
  permanent one fails at once with the server's answer. A client's mail that fails leaves a
  ``mail_failed`` row in its ticket's log, so staff see that the client did not get it.
* One log line per attempt (``ticketd.outbox``). Time for backoff and deadlines comes from the injected
  clock; polling (rows come from other processes too) and idle connections use real time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from maild import clock as clocks
from maild.clock import Clock
from maild.notify.follow import Notifier
from maild.notify.tokens import Signer, with_tag
from maild.notify.transport import MAIL, PERMANENT, Delivery, Envelope, Session, Transport, build_transport, failure
from maild.pipeline.worker import wait_any
from maild.store import outbox, tickets
from maild.store.db import Database, is_transient, node_name
from maild.store.outbox import OutboxRow

if TYPE_CHECKING:
    from maild.config import Settings

log = logging.getLogger("ticketd.outbox")

BACKOFF_BASE_SECONDS = 30        # the first retry; each further one waits twice as long (up to the cap)
POLL_SECONDS = 0.5               # rows queued by other processes (the pipeline's) are found this fast
IDLE_CLOSE_SECONDS = 5.0         # a connection without work for this long is closed (QUIT)
COMMIT_RETRY_SECONDS = (0.5, 1, 2, 5, 10, 30)
SENT, DEFERRED, FAILED = "sent", "deferred", "failed"


@dataclass(frozen=True)
class Attempt:
    """How one delivery attempt ended, as committed: outcome sent|deferred|failed."""

    outbox_id: int
    message_id: str
    recipient: str
    outcome: str
    delivery: Delivery
    error: str = ""
    next_attempt_at: str | None = None


class OutboxSender:
    """The outbox's delivery service: ``start()`` / ``await stop()`` in the daemon, ``wake()`` when a row
    was queued in this process, ``await run_until_empty()`` in tests and one-shot commands."""

    def __init__(self, db: Database, settings: Settings, clock: Clock, signer: Signer,
                 transport: Transport | None = None, poll_seconds: float = POLL_SECONDS,
                 notifier: Notifier | None = None) -> None:
        self.db = db
        # Expands the notification queue on this sender's own connection (follow.py).
        self.notifier = notifier or Notifier.build(db, settings, clock, signer)
        self.clock = clock
        self.signer = signer
        self.outbound = settings.outbound
        self.transport = transport or build_transport(settings)
        self.poll_seconds = poll_seconds
        self.sessions: list[Session] = [self.transport.session() for _ in range(max(1, self.outbound.connections))]
        self.fetch_limit = max(64, 32 * len(self.sessions))
        self.counts = {SENT: 0, DEFERRED: 0, FAILED: 0}
        self.node = node_name(settings.database.node)
        # Rows fetched are this sender's for so long (then another node's: see [database] lease_seconds).
        self.lease = timedelta(seconds=settings.database.lease_seconds)
        self.commits = 0               # group commits written (counts / commits = attempts per fsync)
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pending: list[tuple[OutboxRow, Attempt, asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None

    # -- the service ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self._run(), name="outbox-sender")
        log.info("sender started", extra={"kv": {"transport": self.transport.describe(),
                                                 "connections": len(self.sessions)}})

    async def stop(self) -> None:
        """Finish the mails in flight (and their commit), close the connections, return."""
        self._stop.set()
        if self._task is not None:
            task, self._task = self._task, None
            await task

    def wake(self) -> None:
        self._wake.set()

    async def run_until_empty(self) -> list[Attempt]:
        """Deliver every row due by the clock, then close the connections; return the attempts made."""
        done = await self._drain()
        await self._close_sessions()
        return done

    async def _run(self) -> None:
        failures = 0
        try:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    done = await self._drain()
                    failures = 0
                except Exception as exc:
                    delay = COMMIT_RETRY_SECONDS[min(failures, len(COMMIT_RETRY_SECONDS) - 1)]
                    failures += 1
                    log.error("outbox round failed; retrying in %ss: %s", delay, exc, exc_info=not is_transient(exc))
                    await wait_any(delay, self._stop)
                    continue
                if not done:
                    await self._close_idle()
                    await wait_any(self.poll_seconds, self._stop, self._wake)
        finally:
            await self._close_sessions()

    # -- delivering ----------------------------------------------------------------------------------

    async def _drain(self) -> list[Attempt]:
        """Run the lanes until no row is due (or stop is asked for); each lane refills the shared queue
        from the database when it runs dry, leaving out the rows other lanes have in hand."""
        queue: deque[OutboxRow] = deque()
        claimed: dict[int, datetime] = {}   # when each row in the queue was claimed for this node
        in_flight: set[int] = set()
        done: list[Attempt] = []
        refill = asyncio.Lock()
        exhausted = False
        errors: list[Exception] = []

        async def lane(session: Session) -> None:
            nonlocal exhausted
            while not self._stop.is_set() and not errors:
                try:
                    if not queue:
                        async with refill:
                            if not queue and not exhausted:
                                await self._expand()   # queued events become mail first
                                now = self.clock.now()
                                fetched = await outbox.due(self.db, clocks.iso(now), self.fetch_limit, in_flight,
                                                           self.node, clocks.iso(now + self.lease))
                                claimed.update((row.id, now) for row in fetched)
                                queue.extend(fetched)
                                exhausted = not queue
                        if not queue:
                            return
                    row = queue.popleft()
                    in_flight.add(row.id)
                    try:
                        if attempt := await self._attempt(session, row, claimed.pop(row.id)):
                            done.append(attempt)
                    finally:
                        in_flight.discard(row.id)
                except Exception as exc:  # the other lanes finish the mail in hand, then stop too
                    errors.append(exc)

        await asyncio.gather(*(lane(s) for s in self.sessions))
        if errors:
            raise errors[0]
        return done

    async def _expand(self) -> None:
        """The notification queue into outbox mail; trouble there (a busy database) is logged and never
        holds up delivering what is in the outbox already: the next round tries again."""
        try:
            await self.notifier.expand()
        except Exception as exc:
            log.error("expanding notifications failed; retrying next round: %s", exc, exc_info=not is_transient(exc))

    async def _attempt(self, session: Session, row: OutboxRow, claimed_at: datetime) -> Attempt | None:
        """Send one mail and record the outcome; None when another node took the row over meanwhile.

        A row claimed less than half a lease ago is ours without asking (no node takes it before the lease
        runs out, nodes' clocks being in step: README); an older one, which waited in this sender's queue,
        is renewed first, or left alone if another node has it now."""
        now = self.clock.now()
        if now - claimed_at >= self.lease / 2 and not await outbox.still_mine(
                self.db, row.id, self.node, clocks.iso(now + self.lease)):
            log.info("outbound left to another node", extra={"kv": {"outbox_id": row.id}})
            return None
        try:
            sender = with_tag(row.sender, self.signer.bounce_tag(row.id, row.recipient))
        except ValueError as exc:
            delivery = failure(MAIL, 553, f"cannot make the envelope sender: {exc}")
        else:
            delivery = await session.send(Envelope(sender, row.recipient, row.raw, f"{row.id}-{row.message_id}"))
        attempt = self._judge(row, delivery)
        await self._commit(row, attempt)
        self.counts[attempt.outcome] += 1
        _log(row, attempt)
        return attempt

    def _judge(self, row: OutboxRow, delivery: Delivery) -> Attempt:
        base = (row.id, row.message_id, row.recipient)
        if delivery.ok:
            return Attempt(*base, SENT, delivery)
        if delivery.status == PERMANENT:
            return Attempt(*base, FAILED, delivery, delivery.error)
        now = self.clock.now()
        hours = self.outbound.retry_hours
        deadline = clocks.parse(row.created_at) + timedelta(hours=hours)
        if now >= deadline:
            return Attempt(*base, FAILED, delivery, f"{delivery.error} (gave up: still failing {hours} h after it"
                                                    f" was queued, after {row.attempts + 1} attempts)")
        delay = min(BACKOFF_BASE_SECONDS * 2 ** min(row.attempts, 32), self.outbound.max_backoff_seconds)
        next_at = min(now + timedelta(seconds=delay), deadline)  # the last try falls on the deadline
        return Attempt(*base, DEFERRED, delivery, delivery.error, clocks.iso(next_at))

    # -- group commit ----------------------------------------------------------------------------------

    async def _commit(self, row: OutboxRow, attempt: Attempt) -> None:
        """Return once ``attempt`` is durable. Written by one committer task: whatever ended while it
        wrote the previous group goes into the next one."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, attempt, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_pending(), name="outbox-commit")
        await future

    async def _commit_pending(self) -> None:
        failures = 0
        while self._pending:
            group, self._pending = self._pending, []
            try:
                try:
                    await self._write(group, ticket_log=True)
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    # Recording the outcome matters more than the ticket-log row: without it a sent mail
                    # would be sent again and again. Try once more without the extras.
                    log.error("outbox commit failed; retrying without ticket-log rows", exc_info=True)
                    await self._write(group, ticket_log=False)
            except Exception as exc:
                if is_transient(exc) and not self._stop.is_set():
                    delay = COMMIT_RETRY_SECONDS[min(failures, len(COMMIT_RETRY_SECONDS) - 1)]
                    failures += 1
                    log.error("outbox commit failed; retrying in %ss: %s", delay, exc)
                    self._pending[:0] = group  # the mail went out: keep trying to record it
                    await wait_any(delay, self._stop)
                    continue
                for _, _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            failures = 0
            self.commits += 1
            for _, _, future in group:
                if not future.done():
                    future.set_result(None)

    async def _write(self, group: Sequence[tuple[OutboxRow, Attempt, asyncio.Future[None]]], ticket_log: bool
                     ) -> None:
        stamp = self.clock.stamp()
        db = self.db

        async def work() -> None:   # one unit of work: one trip to SQLite's database thread per group
            await outbox.mark_sent(db, [row.id for row, a, _ in group if a.outcome == SENT], stamp)
            for row, a, _ in group:
                if a.outcome == DEFERRED:
                    assert a.next_attempt_at is not None
                    await outbox.defer(db, row.id, a.error, a.next_attempt_at)
                elif a.outcome == FAILED:
                    await outbox.fail(db, row.id, a.error)
                    if ticket_log and row.audience == "client" and row.ticket_id is not None:
                        await tickets.log_event(db, row.ticket_id, "mail_failed", "outbox", stamp, outbox_id=row.id,
                                                recipient=row.recipient, error=a.error)

        await db.unit(work)

    # -- connections -----------------------------------------------------------------------------------

    async def _close_idle(self) -> None:
        now = time.monotonic()
        for session in self.sessions:
            since = session.idle_since
            if since is not None and now - since >= IDLE_CLOSE_SECONDS:
                await session.close()

    async def _close_sessions(self) -> None:
        for session in self.sessions:
            await session.close()


def _log(row: OutboxRow, attempt: Attempt) -> None:
    d = attempt.delivery
    level = {SENT: logging.INFO, DEFERRED: logging.WARNING, FAILED: logging.ERROR}[attempt.outcome]
    log.log(level, "outbound", extra={"kv": {
        "outbox_id": row.id,
        "message_id": row.message_id,
        "recipient": row.recipient,
        "outcome": attempt.outcome,
        "code": d.code,
        "step": d.step or None,
        "error": attempt.error or None,
        "next_try": attempt.next_attempt_at,
        "attempts": row.attempts + 1,
    }})
