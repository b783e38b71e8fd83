"""The database: one SQLite file in WAL mode, numbered migrations, transactions.

Migrations and the spool insert of ``ticketd pipe`` use the standard ``sqlite3`` module (fast to import);
everything inside the daemon goes through :class:`Database`. Its queries run on an aiosqlite thread, so
they never block the event loop, or, opened ``inline``, directly on the loop's thread: for a process whose
loop has nothing else to answer (the pipeline worker's own process), where each trip to a thread and back
(two thread switches, tens of microseconds) cost more than most of its queries.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiosqlite

# What the layers above see of the engine, by these names only (issue 10 gives them a second engine).
Row = sqlite3.Row                 # a row: read by column name
StorageError = sqlite3.Error      # anything the database refused

MIGRATIONS = Path(__file__).with_name("migrations")
BUSY_TIMEOUT_MS = 15000
ASYNC_BUSY_TIMEOUT_MS = 2
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
)


_TRANSIENT = ("locked", "busy", "disk", "full", "i/o", "unable to open", "readonly", "read-only")


def is_transient(exc: BaseException) -> bool:
    """Storage trouble that a retry can cure (a lock, a full disk, I/O), as opposed to a bug or bad data."""
    if isinstance(exc, OSError):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return any(word in text for word in _TRANSIENT)
    return False


def migration_files() -> list[tuple[int, Path]]:
    found = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        number = int(path.name.split("_", 1)[0])
        found.append((number, path))
    return found


def schema_version() -> int:
    return migration_files()[-1][0]


def _statements(sql: str) -> Iterable[str]:
    buf: list[str] = []
    for line in sql.splitlines(keepends=True):
        buf.append(line)
        text = "".join(buf)
        if sqlite3.complete_statement(text):
            if text.strip():
                yield text
            buf.clear()


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations not yet applied, each in its own write transaction; return the version."""
    latest = schema_version()
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > latest:
        raise RuntimeError(f"database schema version {current} is newer than this ticketd ({latest})")
    for number, path in migration_files():
        if number <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the lock.
            if conn.execute("PRAGMA user_version").fetchone()[0] >= number:
                conn.execute("ROLLBACK")
                continue
            for statement in _statements(path.read_text()):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        current = number
    return current


def connect_sync(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection with our pragmas, the schema up to date (creates the file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        for pragma in PRAGMAS:
            conn.execute(pragma)
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


class WriteGate:
    """Orders the write transactions of this process's connections (the receivers' spool writer and the
    pipeline worker) in an asyncio queue, instead of SQLite's sleep-and-retry busy handler, whose naps
    would stall SMTP answers. ``waiting`` lets a long writer see that someone needs the lock."""

    def __init__(self) -> None:
        import asyncio

        self._lock = asyncio.Lock()
        self.waiting = 0

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        self.waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._lock.release()


class _Inline:
    """The part of aiosqlite's connection that :class:`Database` uses, run on the caller's thread."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, params)

    async def execute_fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self._conn.execute(sql, params).fetchall()

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> sqlite3.Cursor:
        return self._conn.executemany(sql, rows)

    async def close(self) -> None:
        self._conn.close()


class Database:
    """A connection in autocommit mode; write transactions are explicit and IMMEDIATE."""

    def __init__(self, conn: aiosqlite.Connection | _Inline, path: Path, gate: WriteGate | None = None) -> None:
        self.conn = conn
        self.path = path
        self.gate = gate or WriteGate()
        self._in_tx = False

    @classmethod
    async def open(cls, path: Path, gate: WriteGate | None = None, inline: bool = False) -> Database:
        """Open (and create or migrate) the database; connections of one process share ``gate``. ``inline``:
        queries block the event loop (see the module's docstring)."""
        import asyncio

        import aiosqlite

        if inline:
            raw = connect_sync(path)
            raw.row_factory = sqlite3.Row
            raw.execute(f"PRAGMA busy_timeout={ASYNC_BUSY_TIMEOUT_MS}")  # see below
            return cls(_Inline(raw), path, gate)
        await asyncio.to_thread(lambda: connect_sync(path).close())
        conn = await aiosqlite.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.row_factory = sqlite3.Row
        for pragma in PRAGMAS:
            await conn.execute(pragma)
        # Waiting for another process's write lock is done by BEGIN's own short retries (below), not by
        # SQLite's busy handler, whose naps grow to 100 ms and would stall SMTP answers.
        await conn.execute(f"PRAGMA busy_timeout={ASYNC_BUSY_TIMEOUT_MS}")
        return cls(conn, path, gate)

    def others_waiting(self) -> bool:
        """Another writer of this process waits for the write lock."""
        return self.gate.waiting > 0

    async def close(self) -> None:
        await self.conn.close()

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return list(await self.conn.execute_fetchall(sql, params))

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        rows = await self.conn.execute_fetchall(sql, params)
        return next(iter(rows), None)

    async def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = await self.fetchone(sql, params)
        return row[0] if row is not None else None

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return the new row id (INSERT) or the number of rows changed."""
        cursor = await self.conn.execute(sql, params)
        if sql.lstrip()[:6].upper() == "INSERT":
            return cursor.lastrowid or 0
        return cursor.rowcount

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement for many rows, in one trip to the database thread."""
        if rows:
            await self.conn.executemany(sql, rows)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Database]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``: takes the write lock up front, so it never deadlocks."""
        if self._in_tx:
            raise RuntimeError("nested transaction; use savepoint()")
        async with self.gate.hold():
            async with self._transaction():
                yield self

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        await self._begin()
        self._in_tx = True
        try:
            try:
                yield
            except BaseException:
                await self.conn.execute("ROLLBACK")
                raise
            try:
                await self.conn.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (disk full, I/O error) can leave the transaction open.
                if self.conn.in_transaction:
                    await self.conn.execute("ROLLBACK")
                raise
        finally:
            self._in_tx = False

    async def _begin(self) -> None:
        import asyncio
        import time

        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        delay = 0.0005
        while True:
            try:
                await self.conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.005)

    @asynccontextmanager
    async def savepoint(self, name: str = "sp") -> AsyncIterator[Database]:
        await self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield self
        except BaseException:
            await self.conn.execute(f"ROLLBACK TO {name}")
            await self.conn.execute(f"RELEASE {name}")
            raise
        else:
            await self.conn.execute(f"RELEASE {name}")
