"""The SQLite engine: one file in WAL mode, numbered migrations, ``BEGIN IMMEDIATE`` transactions.

Migrations and the spool insert of ``ticketd pipe`` use the standard ``sqlite3`` module (``schema.py``);
the daemon's connections run their queries on an aiosqlite thread, so they never block the event loop, or,
opened ``inline``, directly on the loop's thread (see :func:`maild.store.db.open_database`).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from maild.store.db import SQLITE, Database, DatabaseURL, Row, WriteGate
from maild.store.sqlite.schema import (
    ASYNC_BUSY_TIMEOUT_MS,
    BUSY_TIMEOUT_MS,
    PRAGMAS,
    connect_file,
    row_factory,
    translate,
)

if TYPE_CHECKING:
    import aiosqlite

class _Inline:
    """The part of aiosqlite's connection that :class:`SqliteDatabase` uses, run on the caller's thread."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, params)

    async def execute_fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._conn.execute(sql, params).fetchall()

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> sqlite3.Cursor:
        return self._conn.executemany(sql, rows)

    async def close(self) -> None:
        self._conn.close()


class SqliteDatabase(Database):
    """A connection in autocommit mode; write transactions are explicit and IMMEDIATE."""

    engine = SQLITE

    def __init__(self, conn: aiosqlite.Connection | _Inline, url: DatabaseURL, gate: WriteGate | None,
                 inline: bool) -> None:
        super().__init__(url, gate)
        self.conn = conn
        self.inline = inline

    @classmethod
    async def open(cls, url: DatabaseURL, gate: WriteGate | None = None, inline: bool = False) -> SqliteDatabase:
        import aiosqlite

        path = url.path
        assert path is not None
        if inline:
            raw = connect_file(path)
            raw.row_factory = row_factory
            raw.execute(f"PRAGMA busy_timeout={ASYNC_BUSY_TIMEOUT_MS}")  # see below
            return cls(_Inline(raw), url, gate, True)
        await asyncio.to_thread(lambda: connect_file(path).close())
        try:
            conn = await aiosqlite.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.row_factory = row_factory  # type: ignore[assignment]
            for pragma in PRAGMAS:
                await conn.execute(pragma)
            # Waiting for another process's write lock is done by BEGIN's own short retries (below), not by
            # SQLite's busy handler, whose naps grow to 100 ms and would stall SMTP answers.
            await conn.execute(f"PRAGMA busy_timeout={ASYNC_BUSY_TIMEOUT_MS}")
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        return cls(conn, url, gate, False)

    async def another(self, inline: bool = False) -> SqliteDatabase:
        return await SqliteDatabase.open(self.url, self.gate, inline)

    async def close(self) -> None:
        await self.conn.close()

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            return list(await self.conn.execute_fetchall(sql, params))  # type: ignore[arg-type]
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = await self.fetchall(sql, params)
        return next(iter(rows[0].values())) if rows else None

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            cursor = await self.conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        return cursor.rowcount

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            cursor = await self.conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        # lastrowid keeps the connection's previous insert when this one inserted nothing.
        return (cursor.lastrowid or 0) if cursor.rowcount > 0 else 0

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            try:
                await self.conn.executemany(sql, rows)
            except sqlite3.Error as exc:
                raise translate(exc) from exc

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

    async def renew_claim(self, table: str, row_id: int, node: str, until: str) -> bool:
        return True   # nothing was claimed (one node)

    def lock_clause(self, alias: str) -> str:
        return ""   # BEGIN IMMEDIATE: one writer at a time already

    def text_match(self, text: str) -> tuple[str, list[Any]] | None:
        words = text.split()
        if not words:
            return None
        # Each word a quoted FTS5 string (its own punctuation is tokenised away, never read as syntax).
        query = " ".join('"' + w.replace('"', '""') + '"' for w in words)
        return "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?", [query]

    async def _run_plain(self, sql: str) -> None:
        try:
            await self.conn.execute(sql)
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    async def _begin(self) -> None:
        """``BEGIN IMMEDIATE`` takes the write lock up front, so a transaction never deadlocks; another
        process's lock is waited for in short naps here, not in SQLite's growing ones."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        delay = 0.0005
        while True:
            try:
                await self.conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise translate(exc) from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.005)

    async def _commit(self) -> None:
        try:
            await self.conn.execute("COMMIT")
        except BaseException as exc:
            # A failed COMMIT (disk full, I/O error) can leave the transaction open.
            if self.conn.in_transaction:
                await self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise translate(exc) from exc
            raise

    async def _rollback(self) -> None:
        try:
            await self.conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise translate(exc) from exc
