"""Prepare: the CPU-bound part of the pipeline (parsing, decoding), outside the database transaction.

Small batches are parsed in a thread; big ones are split across a pool of worker processes, so that on a
multi-core machine parsing runs beside the event loop instead of competing with it for one core.
A broken pool (a worker killed) is replaced, and the batch is parsed in a thread instead.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from pathlib import Path

from maild.pipeline.attachments import AttachmentPolicy, judge
from maild.pipeline.parse import ParsedMail, parse
from maild.store.files import FileStore

log = logging.getLogger("ticketd.pipeline")

# Shipping a batch to another process costs more than parsing small mail in a thread; big batches pay.
POOL_MIN_BYTES = 256 * 1024


def parse_all(raws: list[bytes], files_root: Path, policy: AttachmentPolicy) -> list[ParsedMail | BaseException]:
    """Parse each message, judge its attachments and store the kept ones' bytes under ``files_root``
    (fsync'd, content-addressed), so that the database transaction never waits for the disk on their
    account. Files of messages that end up blocked or duplicate are orphans, collected by housekeeping."""
    store = FileStore(files_root)
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
    import mailparser  # noqa: F401  (the first parse should not pay for imports)


class Preparer:
    def __init__(self, processes: int, files_root: Path, policy: AttachmentPolicy) -> None:
        self.processes = processes
        self.parse_all = partial(parse_all, files_root=files_root, policy=policy)
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # forkserver: never fork the daemon itself, whose threads (aiosqlite) hold locks.
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
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
