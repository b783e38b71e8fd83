"""The PostgreSQL engine (asyncpg): for several ticketd nodes on one database.

The query modules' SQL is shared with SQLite: ``?`` placeholders become ``$1, $2...`` here (once per
statement text, cached), and the few SQLite functions the shared SQL uses (``instr``, ``group_concat``) are
defined by the first migration. Migrations are numbered like SQLite's and recorded in ``schema_version``;
nodes starting together migrate one at a time under an advisory lock.

Write transactions run side by side (READ COMMITTED), one per node's worker, receivers and sender. What
SQLite got from its single writer comes from the schema and the queries instead: unique constraints decide
idempotence (a message's key, ticket numbers, Message-IDs), rows are claimed before work
(:meth:`PostgresDatabase.claim_rows`, ``FOR UPDATE SKIP LOCKED``), a row read to decide a change is locked
(:meth:`PostgresDatabase.lock_clause`), and a deadlock or serialisation failure is a :class:`Transient`
error that the caller retries.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from maild.store.db import POSTGRES, Database, DatabaseURL, Row, WriteGate
from maild.store.errors import Conflict, SchemaError, StorageError, Transient
from maild.store.postgres.schema import migration_files, rewrite, schema_version, storable

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger("ticketd.store")

MIGRATION_LOCK = 0x7469636B  # 'tick': one node migrates at a time
CONNECT_TIMEOUT = 10.0
SESSION_SETTINGS = {
    "jit": "off",
    # A node that vanished mid-transaction (a dead host, a network split) must not hold row locks for the
    # hours TCP takes to notice: its session ends, and its claims run out, within minutes.
    "idle_in_transaction_session_timeout": "120s",
    "tcp_keepalives_idle": "60", "tcp_keepalives_interval": "10", "tcp_keepalives_count": "3",
}

_KEY_COLUMNS = re.compile(r"Key \(([^)]*)\)=")
_DOLLAR = re.compile(r"\$[A-Za-z_]*\$")


def placeholders(sql: str) -> str:
    """``?`` → ``$n`` (outside quoted strings and identifiers)."""
    return rewrite(sql, True)


def _broken(exc: BaseException) -> bool:
    """The connection itself failed (not the statement): it must not be used again."""
    import asyncpg.exceptions as pg

    return isinstance(exc, (pg.PostgresConnectionError, pg.InterfaceError, pg.InternalClientError,
                            pg.AdminShutdownError, ConnectionError, OSError, asyncio.TimeoutError))


def translate(exc: BaseException) -> BaseException:
    """The engine-neutral error for an asyncpg one (others pass through)."""
    import asyncpg.exceptions as pg

    if isinstance(exc, pg.UniqueViolationError):
        match = _KEY_COLUMNS.search(exc.detail or "")
        columns = tuple(c.strip().strip('"') for c in match.group(1).split(",")) if match else ()
        return Conflict(str(exc), exc.table_name or "", columns)
    # A failover to a read-only standby, or a statement prepared before another node migrated the schema,
    # is over with the next try too.
    transient = (pg.TransactionRollbackError, pg.LockNotAvailableError, pg.PostgresConnectionError,
                 pg.OperatorInterventionError, pg.InsufficientResourcesError, pg.InterfaceError,
                 pg.CannotConnectNowError, pg.ReadOnlySQLTransactionError, pg.InvalidCachedStatementError,
                 pg.IdleInTransactionSessionTimeoutError, pg.InternalClientError,
                 ConnectionError, asyncio.TimeoutError, OSError)
    if isinstance(exc, transient):
        return Transient(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, (pg.PostgresError, pg.InterfaceError)):
        return StorageError(str(exc))
    return exc


async def _connect(url: DatabaseURL, timeout: float) -> asyncpg.Connection:
    import asyncpg

    try:
        # No JIT: short OLTP statements whose estimates look big (an OR of IN-subqueries) would spend far
        # longer compiling than running (measured: most of PostgreSQL's CPU per message with it on).
        conn = await asyncpg.connect(url.dsn, password=url.password(), timeout=timeout,
                                     server_settings=SESSION_SETTINGS)
    except Exception as exc:  # asyncpg raises OSError, TimeoutError, PostgresError...
        err = translate(exc)
        if err is exc or not isinstance(err, StorageError):
            raise Transient(f"cannot connect to {url.display}: {exc}") from exc
        raise type(err)(f"cannot connect to {url.display}: {err}") from exc
    try:
        await _migrate(conn)
    except BaseException:
        await conn.close()
        raise
    return conn


def _split(sql: str) -> list[str]:
    """A migration's statements: split at a ``;`` that ends a line, outside dollar-quoted bodies
    (``$$ ... $$``, ``$f$ ... $f$``) and comment lines."""
    parts, buf, quote = [], [], ""
    for line in sql.splitlines():
        buf.append(line)
        if not quote and line.lstrip().startswith("--"):
            continue
        for tag in _DOLLAR.findall(line):
            if not quote:
                quote = tag
            elif tag == quote:
                quote = ""
        if not quote and line.rstrip().endswith(";"):
            text = "\n".join(buf).strip()
            if text:
                parts.append(text)
            buf = []
    if "\n".join(buf).strip(" \n;"):
        parts.append("\n".join(buf))
    return parts


async def _migrate(conn: asyncpg.Connection) -> int:
    import asyncpg

    latest = schema_version()
    current = 0
    if await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL"):
        current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
    if current > latest:
        raise SchemaError(f"database schema version {current} is newer than this ticketd ({latest})")
    if current == latest:
        return current
    await conn.execute(f"SELECT pg_advisory_lock({MIGRATION_LOCK})")
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
                           " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
        for number, path in migration_files():
            if number <= current:
                continue
            try:
                async with conn.transaction():
                    for statement in _split(path.read_text()):
                        await conn.execute(statement)
                    await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", number)
            except asyncpg.PostgresError as exc:
                raise SchemaError(f"migration {path.name} failed: {exc}") from exc
            current = number
    finally:
        await conn.execute(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})")
    return current


class PostgresDatabase(Database):
    """One asyncpg connection; statements from several tasks are taken one at a time (as a SQLite
    connection's thread takes them)."""

    engine = POSTGRES

    def __init__(self, conn: asyncpg.Connection, url: DatabaseURL, gate: WriteGate | None) -> None:
        super().__init__(url, gate)
        self.conn = conn
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, url: DatabaseURL, gate: WriteGate | None = None) -> PostgresDatabase:
        return cls(await _connect(url, CONNECT_TIMEOUT), url, gate)

    async def another(self, inline: bool = False) -> PostgresDatabase:
        return await PostgresDatabase.open(self.url, self.gate)

    async def close(self) -> None:
        await self.conn.close()

    async def _call(self, op: str, sql: str, *args: Any) -> Any:
        """One statement, taken in turn; a connection that was lost (a server restart, a failover, a dropped
        idle connection) is opened again first, outside a transaction (inside one, the loss is the
        transaction's: Transient, and the caller runs it again). Never inside another task's transaction
        (store/db.py: _wait_turn)."""
        if self._tx_task is not None:
            await self._wait_turn()
        async with self._lock:
            if self.conn.is_closed():
                if self._in_tx:
                    raise Transient(f"the connection to {self.url.display} was lost in a transaction")
                log.warning("database connection lost; connecting again", extra={"kv": {"db": self.url.display}})
                self.conn = await _connect(self.url, CONNECT_TIMEOUT)
            try:
                return await getattr(self.conn, op)(sql, *args)
            except Exception as exc:
                if _broken(exc) and not self.conn.is_closed():
                    self.conn.terminate()   # its state is unknown: the next statement connects again
                raise translate(exc) from exc

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return [Row(r.items()) for r in await self._call("fetch", placeholders(sql), *storable(params))]

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return await self._call("fetchval", placeholders(sql), *storable(params))

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        status = await self._call("execute", placeholders(sql), *storable(params))
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        found = await self._call("fetchval", placeholders(sql) + " RETURNING id", *storable(params))
        return int(found or 0)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            await self._call("executemany", placeholders(sql), [storable(r) for r in rows])

    async def claim_rows(self, table: str, columns: str, where: str, params: Sequence[Any], order: str, limit: int,
                         node: str, now: str, until: str) -> list[Row]:
        n = len(params)
        # Rows another node has locked are skipped, not waited for; a claim that ran out is taken over.
        sql = (f"UPDATE {table} SET claimed_by = ${n + 1}, claimed_until = ${n + 2} WHERE id IN"
               f" (SELECT id FROM {table} WHERE {placeholders(where)} AND (claimed_until IS NULL"
               f" OR claimed_until < ${n + 3} OR claimed_by = ${n + 1}) ORDER BY {order} LIMIT ${n + 4}"
               f" FOR UPDATE SKIP LOCKED) RETURNING {columns}")
        records = await self._call("fetch", sql, *storable(params), node, until, now, limit)
        return [Row(r.items()) for r in records]

    async def renew_claim(self, table: str, row_id: int, node: str, until: str) -> bool:
        return await self.execute(f"UPDATE {table} SET claimed_until = ? WHERE id = ? AND claimed_by = ?",
                                  (until, row_id, node)) == 1

    async def tables(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for r in await self.fetchall(
                "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND table_name != 'schema_version' ORDER BY table_name, ordinal_position"):
            found.setdefault(r["table_name"], []).append(r["column_name"])
        return found

    async def reset_ids(self, table: str) -> None:
        await self.scalar(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce(max(id), 0) + 1, false)"
                          f" FROM {table}")

    def lock_clause(self, alias: str) -> str:
        return f" FOR UPDATE OF {alias}"

    def text_match(self, text: str, column: str = "id", newest: int | None = None
                   ) -> tuple[str, list[Any]] | None:
        if not text.split():
            return None
        assert column in ("id", "ticket_id"), column
        # The very expression of the index messages_search (migration 0010), so that the index answers.
        sql = (f"SELECT {column} FROM messages WHERE"
               " to_tsvector('simple', ticketd_words(coalesce(subject, '') || ' ' || body))"
               " @@ plainto_tsquery('simple', ticketd_words(?))")
        if newest is None:
            return sql, [text]
        # The latest matches: all of them from the index first (OFFSET 0 keeps the planner from walking the
        # primary key backwards and testing each message's text instead, which it misjudges), then the top.
        inner = "id" if column == "id" else f"id, {column}"
        return (f"SELECT {column} FROM (SELECT {inner} FROM messages WHERE {sql.split(' WHERE ', 1)[1]}"
                f" OFFSET 0) matched ORDER BY id DESC LIMIT ?", [text, newest])

    async def _run_plain(self, sql: str) -> None:
        await self._call("execute", sql)

    async def _begin(self) -> None:
        await self._run_plain("BEGIN")

    async def _commit(self) -> None:
        try:
            await self._run_plain("COMMIT")
        except BaseException:
            if self.conn.is_in_transaction():
                try:
                    await self._run_plain("ROLLBACK")
                except Exception:  # the connection may be gone; its transaction is gone with it
                    pass
            raise

    async def _rollback(self) -> None:
        if not self.conn.is_closed():
            await self._run_plain("ROLLBACK")
