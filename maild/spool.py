"""The spool: raw mail plus envelope, committed before any receiver acknowledges it.

Receivers in the daemon share one :class:`SpoolWriter`, which commits what arrived meanwhile in one
transaction (group commit: one fsync for many messages) and only then wakes each waiting receiver with
its queue id. ``ticketd pipe`` uses :func:`spool_sync` with the plain sqlite3 module instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from maild.clock import Clock

if TYPE_CHECKING:
    from maild.store.db import Database

log = logging.getLogger("ticketd.spool")

INSERT_SQL = (
    "INSERT INTO inbound (received_at, source, source_ref, peer, envelope_from, envelope_to,"
    " department_hint, size, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


@dataclass
class Incoming:
    """One message as a receiver got it: bytes and envelope, nothing parsed."""

    raw: bytes
    source: str
    envelope_from: str | None = None
    envelope_to: Sequence[str] = ()
    peer: str | None = None
    source_ref: str | None = None
    department_hint: str | None = None
    received_at: str = field(default="")

    def row(self, stamp: str) -> tuple:
        return (
            self.received_at or stamp,
            self.source,
            self.source_ref,
            self.peer,
            self.envelope_from,
            json.dumps(list(self.envelope_to)),
            self.department_hint,
            len(self.raw),
            self.raw,
        )


class SpoolError(Exception):
    """The message could not be stored: the sender must retry (451 / EX_TEMPFAIL)."""


def spool_sync(conn: sqlite3.Connection, item: Incoming, clock: Clock | None = None) -> int:
    """Commit one message with a plain sqlite3 connection; return its queue id."""
    stamp = (clock or Clock()).stamp()
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(INSERT_SQL, item.row(stamp))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise SpoolError(str(exc)) from exc
    return int(cur.lastrowid or 0)


async def spool_many(db: Database, items: Sequence[Incoming], stamp: str) -> list[int]:
    """Commit ``items`` in one transaction; return their queue ids in order."""
    ids = []
    async with db.transaction():
        for item in items:
            ids.append(await db.execute(INSERT_SQL, item.row(stamp)))
    return ids


class SpoolWriter:
    """Group commit for the receivers: ``await put(item)`` returns once the item is durable."""

    def __init__(self, db: Database, clock: Clock | None = None, max_batch: int = 256) -> None:
        self.db = db
        self.clock = clock or Clock()
        self.max_batch = max_batch
        self._pending: list[tuple[Incoming, asyncio.Future[int]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[], None]] = []

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after each commit (the pipeline worker uses it to wake up)."""
        self._listeners.append(callback)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="spool-writer")

    async def close(self) -> None:
        """Commit what is pending, then stop."""
        if self._task is None:
            return
        task, self._task = self._task, None
        while self._pending:
            await asyncio.sleep(0.005)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    async def put(self, item: Incoming) -> int:
        return (await self.put_many([item]))[0]

    async def put_many(self, items: Sequence[Incoming]) -> list[int]:
        if self._task is None:
            raise SpoolError("spool writer is not running")
        loop = asyncio.get_running_loop()
        futures = []
        for item in items:
            fut: asyncio.Future[int] = loop.create_future()
            self._pending.append((item, fut))
            futures.append(fut)
        self._wake.set()
        return list(await asyncio.gather(*futures))

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: len(batch)]
                await self._commit(batch)

    async def _commit(self, batch: list[tuple[Incoming, asyncio.Future[int]]]) -> None:
        try:
            ids = await spool_many(self.db, [item for item, _ in batch], self.clock.stamp())
        except Exception as exc:  # any storage failure: nobody gets a 250
            log.error("spool commit failed for %d message(s): %s", len(batch), exc)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(SpoolError(str(exc)))
            return
        for (_, fut), queue_id in zip(batch, ids, strict=True):
            if not fut.done():
                fut.set_result(queue_id)
        for callback in self._listeners:
            callback()
