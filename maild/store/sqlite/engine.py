"""The SQLite engine: one file in WAL mode, numbered migrations, ``BEGIN IMMEDIATE`` transactions.

Migrations and the spool insert of ``ticketd pipe`` use the standard ``sqlite3`` module (``schema.py``).
The daemon's connections each own one database thread (as aiosqlite's do), so a statement never blocks
the event loop; a :meth:`~maild.store.db.Database.unit` of work runs whole on that thread, crossing from
the loop and back once instead of once per statement. A connection opened ``inline`` runs everything on
the loop's own thread (see :func:`maild.store.db.open_database`).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from maild.store.db import SQLITE, Database, DatabaseURL, Row, WriteGate, run_to_end
from maild.store.sqlite.schema import ASYNC_BUSY_TIMEOUT_MS, BUSY_TIMEOUT_MS, connect_file, row_factory, translate

T = TypeVar("T")

log = logging.getLogger("ticketd.store")


class _Cancelled(RuntimeError):
    """A unit of work whose caller was cancelled, stopped on its thread (rolled back)."""


class _Thread:
    """A connection's database thread: the connection is used there only (except by an ``inline`` one)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ticketd-sqlite")
        self.ident = self._pool.submit(threading.get_ident).result()

    def here(self) -> bool:
        return threading.get_ident() == self.ident

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(fn, *args))

    def close(self) -> None:
        self._pool.shutdown(wait=False)


def _open(path: Any) -> sqlite3.Connection:
    raw = connect_file(path)
    raw.row_factory = row_factory
    # Waiting for another process's write lock is done by BEGIN's own short retries (below), not by SQLite's
    # busy handler, whose naps grow to 100 ms and would stall SMTP answers.
    raw.execute(f"PRAGMA busy_timeout={ASYNC_BUSY_TIMEOUT_MS}")
    return raw


class SqliteDatabase(Database):
    """A connection in autocommit mode; write transactions are explicit and IMMEDIATE."""

    engine = SQLITE
    one_writer = True

    def __init__(self, raw: sqlite3.Connection, url: DatabaseURL, gate: WriteGate | None,
                 thread: _Thread | None) -> None:
        super().__init__(url, gate)
        self.raw = raw
        self.thread = thread

    @property
    def inline(self) -> bool:
        return self.thread is None

    @classmethod
    async def open(cls, url: DatabaseURL, gate: WriteGate | None = None, inline: bool = False) -> SqliteDatabase:
        path = url.path
        assert path is not None
        if inline:
            return cls(_open(path), url, gate, None)
        thread = _Thread()
        try:
            raw = await thread.run(_open, path)
        except BaseException:
            thread.close()
            raise
        return cls(raw, url, gate, thread)

    async def another(self, inline: bool = False) -> SqliteDatabase:
        return await SqliteDatabase.open(self.url, self.gate, inline)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the connection's thread: directly when already there (inside a unit of work) or
        inline, else by one trip to the database thread and back."""
        if self.thread is not None and self.thread.here():
            return fn(*args)
        if self._tx_task is not None:
            await self._wait_turn()
        if self.thread is None:
            return fn(*args)
        return await self.thread.run(fn, *args)

    async def _to_end(self, fn: Callable[[], T]) -> T:
        """``fn`` (BEGIN, COMMIT, ROLLBACK) on the database thread, run to its end even when the caller is
        cancelled meanwhile: dropped from the thread's queue, a COMMIT or ROLLBACK would leave the
        transaction open (and the write lock held) with nobody to end it. The cancellation is raised once
        ``fn`` has run."""
        if self.thread is None or self.thread.here():
            return fn()
        job = asyncio.ensure_future(self.thread.run(fn))
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            await _finished(job)
            raise

    async def close(self) -> None:
        try:
            await self._call(self.raw.close)
        finally:
            if self.thread is not None:
                self.thread.close()

    # -- statements, run on the database thread --------------------------------------------------------

    def _fetchall(self, sql: str, params: Sequence[Any]) -> list[Row]:
        try:
            return self.raw.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    def _execute(self, sql: str, params: Sequence[Any]) -> int:
        try:
            return self.raw.execute(sql, params).rowcount
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    def _insert(self, sql: str, params: Sequence[Any]) -> int:
        try:
            cursor = self.raw.execute(sql, params)
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        # lastrowid keeps the connection's previous insert when this one inserted nothing.
        return (cursor.lastrowid or 0) if cursor.rowcount > 0 else 0

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            self.raw.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self._call(self._fetchall, sql, params)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = await self.fetchall(sql, params)
        return next(iter(rows[0].values())) if rows else None

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return await self._call(self._execute, sql, params)

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        return await self._call(self._insert, sql, params)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            await self._call(self._executemany, sql, rows)

    async def claim_rows(self, table: str, columns: str, where: str, params: Sequence[Any], order: str, limit: int,
                         node: str, now: str, until: str) -> list[Row]:
        # One node: nothing to claim against (and an UPDATE would rewrite the spool rows' raw mail).
        return await self.fetchall(f"SELECT {columns} FROM {table} WHERE {where} ORDER BY {order} LIMIT ?",
                                   (*params, limit))

    async def tables(self) -> dict[str, list[str]]:
        names = [r["name"] for r in await self.fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " AND name NOT LIKE 'messages_fts%' ORDER BY name")]
        return {n: [c["name"] for c in await self.fetchall(f'PRAGMA table_info("{n}")')] for n in names}

    async def reset_ids(self, table: str) -> None:
        return None   # an INTEGER PRIMARY KEY continues above the largest id by itself

    async def maintain(self) -> dict[str, int]:
        await self.execute("PRAGMA optimize")
        # PASSIVE: copy what no reader still needs into the database file, never waiting for a reader.
        busy = log_pages = done = 0
        rows = await self.fetchall("PRAGMA wal_checkpoint(PASSIVE)")
        if rows:
            busy, log_pages, done = (int(v) for v in rows[0].values())
        return {"wal_pages": max(log_pages, 0), "wal_pages_checkpointed": max(done, 0), "checkpoint_busy": busy}

    async def renew_claim(self, table: str, row_id: int, node: str, until: str) -> bool:
        return True   # nothing was claimed (one node)

    def lock_clause(self, alias: str) -> str:
        return ""   # BEGIN IMMEDIATE: one writer at a time already

    def text_match(self, text: str, column: str = "id", newest: int | None = None
                   ) -> tuple[str, list[Any]] | None:
        words = text.split()
        if not words:
            return None
        assert column in ("id", "ticket_id"), column
        # Each word a quoted FTS5 string (its own punctuation is tokenised away, never read as syntax).
        query = " ".join('"' + w.replace('"', '""') + '"' for w in words)
        ids = "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?"
        params: list[Any] = [query]
        if newest is not None:
            ids += " ORDER BY rowid DESC LIMIT ?"
            params.append(newest)
        if column == "id":
            return ids, params
        return f"SELECT ticket_id FROM messages WHERE id IN ({ids})", params

    # -- transactions --------------------------------------------------------------------------------------

    async def unit(self, work: Callable[[], Awaitable[T]]) -> T:
        if self.thread is None:
            return await super().unit(work)   # inline: no trips to save
        if self.thread.here():
            raise RuntimeError("a unit of work inside a unit of work; use savepoint()")
        if self._tx_task is asyncio.current_task():
            raise RuntimeError("a unit of work inside a transaction; use savepoint()")
        async with self.gate.hold():
            cancelled = threading.Event()
            job = asyncio.ensure_future(self.thread.run(self._run_unit, work, cancelled))
            try:
                return await asyncio.shield(job)
            except asyncio.CancelledError:
                # A thread cannot be stopped: the unit rolls back instead of committing (unless its COMMIT
                # had begun), and the write gate stays held until it has, so that no other writer of this
                # connection starts meanwhile.
                cancelled.set()
                await _finished(job)
                raise

    def _run_unit(self, work: Callable[[], Awaitable[T]], cancelled: threading.Event) -> T:
        """On the database thread: BEGIN, ``work`` to its end, COMMIT (ROLLBACK if it raised, or if the
        caller was cancelled meanwhile)."""
        self._begin_waiting(cancelled)
        self._enter_unit()
        try:
            try:
                result = run_to_end(work())
                if cancelled.is_set():
                    raise _Cancelled("unit of work cancelled")
            except BaseException:
                self._rollback_now()
                raise
            self._commit_now()
        finally:
            self._leave_unit()
        return result

    def _try_begin(self) -> bool:
        """``BEGIN IMMEDIATE``: False while another process holds the write lock."""
        try:
            self.raw.execute("BEGIN IMMEDIATE")
            return True
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise translate(exc) from exc
            return False

    def _begin_waiting(self, cancelled: threading.Event) -> None:
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        delay = 0.0005
        while not self._try_begin():
            if cancelled.is_set():   # nobody waits for this unit any more
                raise _Cancelled("unit of work cancelled")
            if time.monotonic() > deadline:
                raise translate(sqlite3.OperationalError("database is locked"))
            time.sleep(delay)
            delay = min(delay * 2, 0.005)

    def _commit_now(self) -> None:
        try:
            self.raw.execute("COMMIT")
        except sqlite3.Error as exc:
            # A failed COMMIT (disk full, I/O error) can leave the transaction open.
            if self.raw.in_transaction:
                self.raw.execute("ROLLBACK")
            raise translate(exc) from exc

    def _rollback_now(self) -> None:
        if not self.raw.in_transaction:
            return
        try:
            self.raw.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    def _plain(self, sql: str) -> None:
        try:
            self.raw.execute(sql)
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    async def _run_plain(self, sql: str) -> None:
        await self._call(self._plain, sql)

    async def _begin(self) -> None:
        """``BEGIN IMMEDIATE`` takes the write lock up front, so a transaction never deadlocks; another
        process's lock is waited for in short naps here, not in SQLite's growing ones."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        delay = 0.0005
        while not await self._to_end(self._try_begin):
            if time.monotonic() > deadline:
                raise translate(sqlite3.OperationalError("database is locked"))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.005)

    async def _commit(self) -> None:
        await self._to_end(self._commit_now)

    async def _rollback(self) -> None:
        await self._to_end(self._rollback_now)


async def _finished(job: asyncio.Future[Any]) -> None:
    """Wait for a database-thread job whose caller was cancelled (cancelled again meanwhile or not); what
    it failed with is logged, since the caller hears only of the cancellation."""
    while not job.done():
        try:
            await asyncio.wait([job])
        except asyncio.CancelledError:
            continue
    if not job.cancelled() and (exc := job.exception()) is not None and not isinstance(exc, _Cancelled):
        log.warning("database work of a cancelled caller failed: %s", exc)
