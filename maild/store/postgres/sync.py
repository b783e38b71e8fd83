"""PostgreSQL for synchronous callers: ``ticketd pipe`` (one committed INSERT, within the MTA's patience) and
the attachment store in the parser processes. psycopg2 imports in about 25 ms and needs no event loop;
asyncpg would bring asyncio along (twice that). The daemon's own connections are asyncpg's (engine.py).

A database whose schema is missing or old is brought up to date by the engine's migrations first (the
rare case: a pipe delivery before any ``ticketd serve`` ran), which imports asyncpg then.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from maild.store.db import DatabaseURL, Row
from maild.store.errors import Conflict, StorageError, Transient
from maild.store.postgres.schema import rewrite, storable

STATEMENT_TIMEOUT_MS = 30000


def pyformat(sql: str) -> str:
    """``?`` → ``%s`` (and a literal ``%`` → ``%%``) outside quoted strings and identifiers."""
    return rewrite(sql, False)


def translate(exc: BaseException) -> BaseException:
    import psycopg2
    import psycopg2.errors as pe

    if isinstance(exc, pe.UniqueViolation):
        diag = exc.diag
        return Conflict(str(exc), diag.table_name or "", ())
    if isinstance(exc, (psycopg2.OperationalError, pe.SerializationFailure, pe.DeadlockDetected,
                        pe.LockNotAvailable, pe.AdminShutdown, pe.CannotConnectNow, pe.TooManyConnections,
                        pe.ReadOnlySqlTransaction,
                        psycopg2.InterfaceError, OSError)):
        return Transient(f"{type(exc).__name__}: {str(exc).strip()}")
    if isinstance(exc, psycopg2.Error):
        return StorageError(str(exc).strip())
    return exc


class PostgresSync:
    """One psycopg2 connection. Each write commits on its own (``insert_committed``, ``execute``)."""

    def __init__(self, conn: Any, url: DatabaseURL, timeout: float) -> None:
        self.conn = conn
        self.url = url
        self.timeout = timeout

    @staticmethod
    def _open(url: DatabaseURL, timeout: float) -> Any:
        import psycopg2

        try:
            # Keepalives: a connection a firewall dropped while idle is noticed, not waited on for hours.
            # Each statement bounded too: a server that stalls after the connect (a synchronous standby
            # gone) costs the MTA's pipe a clear exit 75, not its whole patience.
            return psycopg2.connect(url.dsn, password=url.password(), connect_timeout=max(1, math.ceil(timeout)),
                                    keepalives=1, keepalives_idle=60, keepalives_interval=10, keepalives_count=3,
                                    options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c jit=off")
        except Exception as exc:
            err = translate(exc)
            if not isinstance(err, StorageError):
                err = Transient(str(exc))
            raise type(err)(f"cannot connect to {url.display}: {err}") from exc

    @classmethod
    def connect(cls, url: DatabaseURL, timeout: float) -> PostgresSync:
        conn = cls._open(url, timeout)
        self = cls(conn, url, timeout)
        try:
            self._ensure_schema()
        except BaseException:
            conn.close()
            raise
        return self

    def _ensure_schema(self) -> None:
        from maild.store.postgres.schema import schema_version

        exists = self.fetchone("SELECT to_regclass('schema_version') IS NOT NULL AS e")
        current = self.fetchone("SELECT max(version) AS v FROM schema_version") if exists and exists["e"] else None
        if current is not None and current["v"] == schema_version():
            return
        import asyncio

        from maild.store.postgres.engine import PostgresDatabase

        async def migrate() -> None:
            await (await PostgresDatabase.open(self.url)).close()

        asyncio.run(migrate())

    def _run(self, sql: str, params: Sequence[Any], fetch: bool) -> tuple[list[Row], int]:
        rows, counts = self._together([(sql, params)], fetch)
        return rows, counts[0]

    def _together(self, statements: Sequence[tuple[str, Sequence[Any]]], fetch: bool
                  ) -> tuple[list[Row], list[int]]:
        """Statements in one transaction (committed, or rolled back): the last one's rows (``fetch``) and
        the rows each changed."""
        if self.conn.closed:   # lost (a server restart, a failover): each statement is its own transaction
            self.conn = self._open(self.url, self.timeout)
        try:
            with self.conn, self.conn.cursor() as cur:
                counts: list[int] = []
                for sql, params in statements:
                    cur.execute(pyformat(sql), storable(params))
                    counts.append(cur.rowcount)
                rows: list[Row] = []
                if fetch and cur.description is not None:
                    names = [d[0] for d in cur.description]
                    rows = [Row(zip(names, (bytes(v) if isinstance(v, memoryview) else v for v in r), strict=True))
                            for r in cur.fetchall()]
                return rows, counts
        except Exception as exc:
            err = translate(exc)
            if err is exc:
                raise
            raise err from exc

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._run(sql, params, True)[0]

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = self.fetchall(sql, params)
        return rows[0] if rows else None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement in a transaction of its own; the rows it changed."""
        return self._run(sql, params, False)[1]

    def execute_together(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        """Several statements in one transaction; the rows each changed."""
        return self._together(statements, False)[1]

    def insert_committed(self, sql: str, params: Sequence[Any]) -> int:
        rows, _ = self._run(sql + " RETURNING id", params, True)
        return int(rows[0]["id"]) if rows else 0

    def close(self) -> None:
        self.conn.close()
