"""The storage interface: one database, two engines (SQLite embedded by default, PostgreSQL for several nodes).

Everything above ``maild/store/`` talks to a :class:`Database` and reads :class:`Row` objects and the errors of
:mod:`maild.store.errors`; it never imports a driver or sees an engine's rows or error text. The query modules
beside this one (``tickets``, ``messages``...) hold the SQL, written once in the dialect both engines speak
(``?`` placeholders, ``ON CONFLICT``, ``RETURNING``); each engine (``sqlite/``, ``postgres/``) holds only what
differs: connecting, transactions and locks, migrations, error translation.

Importing this module imports no driver: ``ticketd pipe`` must start in milliseconds.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

from maild.store.errors import ConfigurationError, Conflict, NotFound, SchemaError, StorageError, Transient

__all__ = [
    "NO_LIMIT", "node_name", "Conflict", "Database", "DatabaseURL", "NotFound", "Row", "SchemaError", "StorageError",
    "SyncConnection", "Transient", "WriteGate", "connect_sync", "is_transient", "open_database", "parse_url",
    "run_to_end",
]

T = TypeVar("T")

# "No limit" for a ``LIMIT ?`` (SQLite takes -1 for it, PostgreSQL refuses a negative one; both take this).
NO_LIMIT = 2**62

SQLITE = "sqlite"
POSTGRES = "postgresql"


class Row(dict[str, Any]):
    """A row, read by column name (``row["tid"]``): the same type whatever the engine."""

    __slots__ = ()


def node_name(configured: str = "") -> str:
    """Who claims rows and leases: ``[database] node``, else this host's name. Stable across restarts, so
    a node that restarts takes its own claims and leases back at once instead of waiting for them to run
    out; two nodes on one host must be given different names."""
    import socket

    return configured or socket.gethostname()


def is_transient(exc: BaseException) -> bool:
    """Storage trouble that a retry can cure (a lock, a full disk, I/O, a lost connection), as opposed to a
    bug or bad data."""
    return isinstance(exc, (Transient, OSError))


@dataclass(frozen=True)
class DatabaseURL:
    """Where the database is: ``sqlite:///relative/or/absolute.sqlite3`` or ``postgresql://user@host:port/db``.

    A PostgreSQL password comes from ``password_file`` (``?password_file=/path``), the URL itself or the
    driver's standard environment (``PGPASSWORD``, ``~/.pgpass``)."""

    engine: str
    path: Path | None = None       # SQLite: the file
    dsn: str = ""                  # PostgreSQL: the URL without our own query parameters
    password_file: Path | None = None

    @property
    def display(self) -> str:
        """The URL without any password, for logs and error messages."""
        if self.engine == SQLITE:
            return f"sqlite:///{self.path}"
        parts = urlsplit(self.dsn)
        host = parts.hostname or ""
        netloc = f"{parts.username}@" if parts.username else ""
        netloc += f"[{host}]" if ":" in host else host
        netloc += f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{netloc}{parts.path}"

    def password(self) -> str | None:
        """The password from ``password_file`` (its first line), if one is named."""
        if self.password_file is None:
            return None
        try:
            return self.password_file.read_text().splitlines()[0] if self.password_file.stat().st_size else ""
        except OSError as exc:
            raise ConfigurationError(f"cannot read the database password file {self.password_file}: "
                                     f"{exc.strerror or exc}") from exc


def parse_url(text: str, state_dir: Path) -> DatabaseURL:
    """Parse a ``[database] url``; a relative SQLite path is relative to the state directory. Raises
    ValueError saying what is wrong."""
    text = text.strip()
    if text.startswith("sqlite:"):
        rest = text[len("sqlite:"):]
        if not rest.startswith("///"):
            raise ValueError("a SQLite URL is sqlite:///FILE (relative to the state directory) "
                             "or sqlite:////absolute/FILE")
        name = unquote(rest[3:])
        if not name or name.endswith("/"):
            raise ValueError("the SQLite URL names no file (sqlite:///ticketd.sqlite3)")
        path = Path(name)
        return DatabaseURL(SQLITE, path=(path if path.is_absolute() else state_dir / path))
    scheme = text.split(":", 1)[0].lower()
    if scheme in ("postgresql", "postgres"):
        parts = urlsplit(text)
        if not parts.path.strip("/"):
            raise ValueError("the PostgreSQL URL names no database (postgresql://user@host:5432/ticketd)")
        query, password_file = [], None
        for item in filter(None, parts.query.split("&")):
            key, _, value = item.partition("=")
            if key == "password_file":
                password_file = Path(unquote(value))
                if not password_file.is_absolute():
                    password_file = state_dir / password_file
            else:
                query.append(item)
        dsn = parts._replace(scheme="postgresql", query="&".join(query)).geturl()
        return DatabaseURL(POSTGRES, dsn=dsn, password_file=password_file)
    raise ValueError(f"unknown database scheme {scheme!r}: use sqlite:///FILE or postgresql://USER@HOST:PORT/DB")


class WriteGate:
    """Orders the write transactions of this process's connections (the receivers' spool writer and the
    pipeline worker) in an asyncio queue, instead of the engine's own waiting (SQLite's sleep-and-retry busy
    handler, whose naps would stall SMTP answers). ``waiting`` lets a long writer see that someone needs it."""

    def __init__(self) -> None:
        import asyncio  # here, not at the top: ``ticketd pipe`` imports this module and needs no event loop

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


def run_to_end(coro: Awaitable[T]) -> T:
    """Run a coroutine that never waits (it awaits only statements that complete at once: a unit of work on
    its database's thread) to its end, without an event loop."""
    assert isinstance(coro, Coroutine)
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("a unit of work awaited something other than its database's statements")


class _InUnit:
    """Marks a connection whose transaction is a unit of work running on the database's thread."""


IN_UNIT = _InUnit()


class Database(ABC):
    """One connection to the database. Reads run as they come; writes run in :meth:`transaction`, which
    commits or rolls back as a whole (``savepoint`` nests a part that can fail alone), or as a
    :meth:`unit` of work, which does the same and crosses to the engine once."""

    engine: str
    one_writer = False   # the engine runs one write transaction at a time (SQLite): hand it over often

    def __init__(self, url: DatabaseURL, gate: WriteGate | None = None) -> None:
        self.url = url
        self.gate = gate or WriteGate()
        self._in_tx = False
        self._tx_task: object = None     # the task whose transaction this connection is in (IN_UNIT, None)
        self._tx_over: Any = None        # an asyncio.Event, set while no task's transaction is open

    # Reads and writes; ``sql`` uses ``?`` placeholders on every engine.
    @abstractmethod
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    @abstractmethod
    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    @abstractmethod
    async def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    @abstractmethod
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""

    @abstractmethod
    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one INSERT into a table with an ``id`` column; the new row's id (0 when ``ON CONFLICT DO
        NOTHING`` inserted nothing)."""

    @abstractmethod
    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement for many rows, in one trip to the engine."""

    @abstractmethod
    async def claim_rows(self, table: str, columns: str, where: str, params: Sequence[Any], order: str, limit: int,
                         node: str, now: str, until: str) -> list[Row]:
        """Rows of ``table`` (``columns``) matching ``where`` in ``order``, at most ``limit``, that no other
        node is working on, claimed for ``node`` until ``until``: of several nodes asking at once each gets
        its own rows, and the rows of a node that died (its claim ran out) go to another. The table has
        ``claimed_by`` and ``claimed_until`` columns. SQLite, one node by nature, claims nothing."""

    @abstractmethod
    async def renew_claim(self, table: str, row_id: int, node: str, until: str) -> bool:
        """Keep a row claimed by :meth:`claim_rows` for ``node`` until ``until``: False when another node has
        taken it meanwhile (its claim ran out), and ``node`` must leave it alone. SQLite: always True."""

    @abstractmethod
    def lock_clause(self, alias: str) -> str:
        """What a SELECT inside a write transaction appends to lock the rows of ``alias`` it reads until the
        transaction ends, so that another node's writer waits instead of working on what it read (PostgreSQL:
        ``FOR UPDATE OF alias``; SQLite, whose writers take turns anyway: nothing)."""

    @abstractmethod
    def text_match(self, text: str, column: str = "id", newest: int | None = None
                   ) -> tuple[str, list[Any]] | None:
        """A subquery of the ids (``column``: ``id`` or ``ticket_id``) of the messages whose subject or text
        hold every word of ``text`` (case and accents folded), and its parameters; None when ``text`` has no
        word to look for; ``newest``: only the latest that many matching messages. The engine's own
        full-text index answers it (FTS5 on SQLite, text search on PostgreSQL)."""

    @abstractmethod
    async def tables(self) -> dict[str, list[str]]:
        """The schema's tables and their columns (the engine's own bookkeeping and index tables left out)."""

    @abstractmethod
    async def reset_ids(self, table: str) -> None:
        """After rows were copied in with their ids: new rows get ids above them (PostgreSQL's identity
        sequence; SQLite needs nothing)."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def another(self, inline: bool = False) -> Database:
        """A second connection to the same database, sharing this one's write gate."""

    def _foreign_transaction(self) -> bool:
        """A transaction of another task is open on this connection (a unit of work on SQLite's thread does
        not count: the thread runs other statements after it)."""
        import asyncio

        owner = self._tx_task
        if owner is None or owner is IN_UNIT:
            return False
        try:
            return owner is not asyncio.current_task()
        except RuntimeError:   # no event loop on this thread
            return False

    async def _wait_turn(self) -> None:
        """Before a statement: while another task's transaction is open on this connection, wait for it to
        end. Tasks may share a connection (the outbox sender's lanes and its committer); a statement of one
        must not run inside another's transaction, where it would be rolled back with it (a claim undone
        while its rows are being sent) or commit only when that transaction does."""
        while self._foreign_transaction():
            await self._tx_over.wait()

    def _own(self, task: object) -> None:
        import asyncio

        if self._tx_over is None:
            self._tx_over = asyncio.Event()
        self._tx_over.clear()
        self._tx_task = task

    def _disown(self) -> None:
        self._tx_task = None
        if self._tx_over is not None:
            self._tx_over.set()

    async def maintain(self) -> dict[str, int]:
        """The engine's own upkeep, run by the housekeeping job: SQLite refreshes its planner statistics
        and checkpoints its write-ahead log; PostgreSQL's autovacuum needs no help. What was done."""
        return {}

    def others_waiting(self) -> bool:
        """Another writer of this process waits for the write lock."""
        return self.gate.waiting > 0

    async def unit(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work()`` as one write transaction (committed when it returns, rolled back when it raises)
        that crosses from the event loop to the engine once: on SQLite it runs whole on the connection's
        database thread, its statements called there directly. ``work`` must await nothing but this
        database's statements (and ``savepoint``); it must not open a transaction of its own. PostgreSQL,
        whose statements are trips to the server anyway, runs it as a plain transaction on the loop."""
        async with self.transaction():
            return await work()

    def _enter_unit(self) -> None:
        """On the database thread, as a unit of work begins (its gate held by the caller)."""
        self._in_tx, self._tx_task = True, IN_UNIT

    def _leave_unit(self) -> None:
        self._in_tx, self._tx_task = False, None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Database]:
        """A write transaction: commits when the block ends, rolls back when it raises. Another task of this
        process that wants one on the same connection waits for it (the outbox sender's committer and its
        lanes' notification expansion share one); the same task asking again is a bug (use savepoint())."""
        import asyncio

        try:
            task = asyncio.current_task()
        except RuntimeError:   # no event loop on this thread: inside a unit of work
            raise RuntimeError("a transaction inside a unit of work; use savepoint()") from None
        if self._tx_task is task:
            raise RuntimeError("nested transaction; use savepoint()")
        async with self.gate.hold():
            self._own(task)
            try:
                try:
                    await self._begin()
                except BaseException:
                    # Cancelled or failed half-way: leave no transaction open on the connection.
                    try:
                        await self._rollback()
                    except Exception:
                        pass
                    raise
                self._in_tx = True
                try:
                    try:
                        yield self
                    except BaseException:
                        await self._rollback()
                        raise
                    await self._commit()
                finally:
                    self._in_tx = False
            finally:
                self._disown()

    @asynccontextmanager
    async def savepoint(self, name: str = "sp") -> AsyncIterator[Database]:
        """Inside a transaction: a part that rolls back alone when the block raises."""
        await self._run_plain(f"SAVEPOINT {name}")
        try:
            yield self
        except BaseException:
            await self._run_plain(f"ROLLBACK TO SAVEPOINT {name}")
            await self._run_plain(f"RELEASE SAVEPOINT {name}")
            raise
        else:
            await self._run_plain(f"RELEASE SAVEPOINT {name}")

    @abstractmethod
    async def _begin(self) -> None: ...

    @abstractmethod
    async def _commit(self) -> None: ...

    @abstractmethod
    async def _rollback(self) -> None: ...

    @abstractmethod
    async def _run_plain(self, sql: str) -> None: ...


async def open_database(url: DatabaseURL, gate: WriteGate | None = None, inline: bool = False) -> Database:
    """Connect (creating or migrating the schema); connections of one process share ``gate``. ``inline``
    (SQLite only): queries run on the event loop's own thread, for a process whose loop has nothing else to
    answer (the pipeline worker's), where each trip to a thread and back cost more than most queries."""
    if url.engine == SQLITE:
        from maild.store.sqlite.engine import SqliteDatabase

        return await SqliteDatabase.open(url, gate, inline)
    from maild.store.postgres.engine import PostgresDatabase

    return await PostgresDatabase.open(url, gate)


class SyncConnection(Protocol):
    """What synchronous callers need (``ticketd pipe``, the attachment store in parser processes): each
    write commits on its own."""

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    def insert_committed(self, sql: str, params: Sequence[Any]) -> int: ...

    def execute_together(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        """Several statements in one write transaction; the rows each changed."""

    def close(self) -> None: ...


def connect_sync(url: DatabaseURL, timeout: float | None = None) -> SyncConnection:
    """A synchronous connection (schema brought up to date); ``timeout`` bounds the connect in seconds
    (default ``$TICKETD_DB_CONNECT_TIMEOUT`` or 5). Raises :class:`StorageError` (``Transient`` when a
    retry may cure it). No event loop, and only the engine's synchronous driver, is imported."""
    if url.engine == SQLITE:
        from maild.store.sqlite.schema import SqliteSync

        return SqliteSync.connect(url)
    from maild.store.postgres.sync import PostgresSync

    return PostgresSync.connect(url, timeout or float(os.environ.get("TICKETD_DB_CONNECT_TIMEOUT", "5")))
