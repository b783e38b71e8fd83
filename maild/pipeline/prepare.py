"""Prepare: the CPU-bound part of the pipeline (parsing, decoding), outside the database transaction.

Small batches are parsed in a thread; big ones are split across a pool of worker processes, so that on a
multi-core machine parsing runs beside the event loop instead of competing with it for one core.
A broken pool (a worker killed) is replaced, and the batch is parsed in a thread instead.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial

from maild.pipeline.attachments import AttachmentPolicy, judge
from maild.pipeline.parse import ParsedMail, parse
from maild.store.blobs import BlobSpec

log = logging.getLogger("ticketd.pipeline")

# Shipping a batch to another process costs more than parsing small mail in a thread; big batches pay.
POOL_MIN_BYTES = 256 * 1024


def parse_all(raws: list[bytes], blobs: BlobSpec, policy: AttachmentPolicy) -> list[ParsedMail | BaseException]:
    """Parse each message, judge its attachments and store the kept ones' bytes in ``blobs`` (durably,
    content-addressed), so that the database transaction never waits for them. Bytes of messages that end
    up blocked or duplicate are orphans, collected by housekeeping (:func:`maild.store.blobs.collect_orphans`)."""
    store = blobs.open()
    out: list[ParsedMail | BaseException] = []
    for raw in raws:
        try:
            mail = parse(raw)
            mail.notes += judge(mail.content.parts, policy)
            for part in mail.content.parts:
                if part.dropped is None:
                    part.sha256 = store.put(part.data)
                    part.data = b""
            out.append(mail)
        except Exception as exc:  # parse() is built not to raise; a storage error is retried later
            out.append(exc)
    return out


def _warm() -> None:
    """Each parser process's start: exit as soon as the worker that owns the pool dies, even by SIGKILL
    and even in the middle of a big message; then the imports."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), name="parent-watch", daemon=True).start()
    import mailparser  # noqa: F401  (the first parse should not pay for imports)


def _exit_with(sentinel: int) -> None:
    # Waiting for the work queue's EOF is not enough: every parser holds a copy of the queue's write end
    # (and of the forkserver's), so with the worker gone they would wait for each other for ever.
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


class Preparer:
    def __init__(self, processes: int, blobs: BlobSpec, policy: AttachmentPolicy) -> None:
        self.processes = processes
        self.parse_all = partial(parse_all, blobs=blobs, policy=policy)
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # forkserver: never fork the daemon itself, whose threads (the database's) hold locks.
            ctx = multiprocessing.get_context("forkserver")
            self._pool = ProcessPoolExecutor(self.processes, mp_context=ctx, initializer=_warm)
        return self._pool

    async def prepare(self, raws: list[bytes]) -> list[ParsedMail | BaseException]:
        if self.processes < 1 or len(raws) < 2 or sum(map(len, raws)) < POOL_MIN_BYTES:
            return await asyncio.to_thread(self.parse_all, raws)
        loop = asyncio.get_running_loop()
        n = min(self.processes, len(raws))
        # Interleave so that one huge message does not leave the other workers idle.
        chunks = [raws[i::n] for i in range(n)]
        try:
            pool = self._get_pool()
            parts = await asyncio.gather(*(loop.run_in_executor(pool, self.parse_all, c) for c in chunks))
        except BrokenProcessPool:
            log.warning("parser pool broke; replacing it and parsing this batch in a thread")
            self.close()
            return await asyncio.to_thread(self.parse_all, raws)
        except (OSError, RuntimeError, AssertionError) as exc:  # no pool can be had here at all
            log.error("parser pool unavailable (%s); parsing in a thread from now on", exc)
            self.close()
            self.processes = 0
            return await asyncio.to_thread(self.parse_all, raws)
        out: list[ParsedMail | BaseException] = [None] * len(raws)  # type: ignore[list-item]
        for i, part in enumerate(parts):
            out[i::n] = part
        return out

    def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            processes = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            # shutdown() lets each parser finish the chunk in hand, and the interpreter's exit waits for them
            # (under CPython 3.11 it sometimes waits for ever, a parser stuck at the work queue's lock): a
            # closed pool has nothing left that we want, so its processes are ended here.
            for process in processes:
                process.kill()
