"""Group commit for the daemon's receivers.

Receivers share one :class:`SpoolWriter`, which commits what arrived meanwhile in one transaction (one
fsync for many messages) and only then wakes each waiting receiver with its queue id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from maild.clock import Clock
from maild.spool import Incoming, SpoolError
from maild.store import inbound
from maild.store.db import Database

log = logging.getLogger("ticketd.spool")


async def spool_many(db: Database, items: Sequence[Incoming], stamp: str) -> list[int]:
    """Commit ``items`` in one transaction; return their queue ids in order."""
    return await db.unit(lambda: inbound.insert(db, items, stamp))


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
        self._committing = False       # a batch taken from _pending is being committed

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
        while self._pending or self._committing:
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
                await self._commit()

    async def _commit(self) -> None:
        batch: list[tuple[Incoming, asyncio.Future[int]]] = []

        async def work() -> list[int]:
            # Take the batch only once the write lock is ours: what arrived meanwhile rides along. (On the
            # database thread, while the loop may append: appends go to the end, past what is taken here.)
            batch.extend(self._pending[: self.max_batch])
            del self._pending[: len(batch)]
            return await inbound.insert(self.db, [item for item, _ in batch], self.clock.stamp())

        self._committing = True
        try:
            ids = await self.db.unit(work)
        except Exception as exc:  # any storage failure: nobody gets a 250
            if not batch:  # failed before taking a batch (BEGIN itself): fail those waiting now
                batch.extend(self._pending[: self.max_batch])
                del self._pending[: len(batch)]
            log.error("spool commit failed for %d message(s): %s", len(batch), exc)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(SpoolError(str(exc)))
            return
        except BaseException:  # cancelled: nobody gets a 250 (committed or not; a retry is a duplicate)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(SpoolError("the spool writer was stopped"))
            raise
        finally:
            self._committing = False
        for (_, fut), queue_id in zip(batch, ids, strict=True):
            if not fut.done():
                fut.set_result(queue_id)
        for callback in self._listeners:
            callback()
