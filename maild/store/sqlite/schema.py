"""The SQLite engine's synchronous part: the schema (numbered migrations), error translation, and the
committed INSERT of ``ticketd pipe``. Only ``sqlite3`` is imported here, so a pipe delivery starts fast.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from maild.store.db import DatabaseURL, Row
from maild.store.errors import Conflict, SchemaError, StorageError, Transient

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


def translate(exc: sqlite3.Error) -> StorageError:
    """The engine-neutral error for a sqlite3 one."""
    text = str(exc)
    if isinstance(exc, sqlite3.IntegrityError) and text.startswith("UNIQUE constraint failed: "):
        names = [n.strip() for n in text.split(": ", 1)[1].split(",")]
        table = names[0].split(".", 1)[0] if names else ""
        return Conflict(text, table, tuple(n.split(".", 1)[-1] for n in names))
    if isinstance(exc, sqlite3.OperationalError) and any(w in text.lower() for w in _TRANSIENT):
        return Transient(text)
    return StorageError(text)


def row_factory(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> Row:
    return Row(zip([d[0] for d in cursor.description], values, strict=True))


def migration_files() -> list[tuple[int, Path]]:
    return sorted((int(p.name.split("_", 1)[0]), p) for p in MIGRATIONS.glob("*.sql"))


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
        raise SchemaError(f"database schema version {current} is newer than this ticketd ({latest})")
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


def connect_file(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection with our pragmas, the schema up to date (creates the file)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Any thread may use it (the attachment store's callers serialise their use themselves).
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        try:
            for pragma in PRAGMAS:
                conn.execute(pragma)
            migrate(conn)
        except BaseException:
            conn.close()
            raise
    except sqlite3.Error as exc:
        raise translate(exc) from exc
    return conn


class SqliteSync:
    """A synchronous connection (``ticketd pipe``, the attachment store): each write commits on its own."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @classmethod
    def connect(cls, url: DatabaseURL) -> SqliteSync:
        assert url.path is not None
        return cls(connect_file(url.path))

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            cur = self.conn.execute(sql, params)
            names = [d[0] for d in cur.description or ()]
            return [Row(zip(names, r, strict=True)) for r in cur.fetchall()]
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = self.fetchall(sql, params)
        return rows[0] if rows else None

    def _write(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[sqlite3.Cursor]:
        """Statements in one write transaction of their own; their cursors."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                cursors = [self.conn.execute(sql, params) for sql, params in statements]
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        return cursors

    def execute_together(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        """Several statements in one write transaction; the rows each changed."""
        return [c.rowcount for c in self._write(statements)]

    def _committed(self, sql: str, params: Sequence[Any]) -> sqlite3.Cursor:
        """One statement in a write transaction of its own."""
        return self._write([(sql, params)])[0]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._committed(sql, params).rowcount

    def insert_committed(self, sql: str, params: Sequence[Any]) -> int:
        return int(self._committed(sql, params).lastrowid or 0)

    def close(self) -> None:
        self.conn.close()
