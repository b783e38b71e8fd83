"""Test helpers: a ticketd configuration on free ports, the real daemon as a subprocess, CLI calls,
and polling the database (read-only) instead of sleeping."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
TICKETD = [sys.executable, "-m", "maild"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONFIG = """
[storage]
state_dir = "{state}"
{database}

[mail]
domain = "helpdesk.example"
max_message_size = {max_size}
{mail_extra}

[smtp]
listen = "127.0.0.1:{smtp}"

[lmtp]
listen = "127.0.0.1:{lmtp}"

[web]
listen = false

# Most tests send many new tickets from one address; the rate limit has tests of its own.
[limits]
new_tickets_per_sender = {rate_limit}

[[departments]]
name = "Technical Support"
addresses = ["support@helpdesk.example", "help@helpdesk.example"]

[[departments]]
name = "Billing"
addresses = ["billing@helpdesk.example"]

[[departments]]
name = "Sales"
addresses = ["sales@helpdesk.example"]
"""


def query(db_path: Path, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
    """A read-only query: the daemon keeps writing meanwhile."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


class PgRow(tuple):
    """A row as tests read sqlite3.Row: by name or by position, iterated as values, ``dict(row)``."""

    names: dict[str, int]

    def __getitem__(self, key):
        return super().__getitem__(self.names[key] if isinstance(key, str) else key)

    def keys(self) -> list[str]:
        return list(self.names)


class PgReader:
    """Synchronous queries on a PostgreSQL database for tests (which may run inside an event loop): asyncpg
    on a thread with a loop of its own. Rows are :class:`PgRow`; ``?`` placeholders as in the store's SQL."""

    class Missing(Exception):
        """The schema is not there yet (the daemon has not migrated)."""

    live: set[PgReader] = set()   # closed after each test (tests/conftest.py), whoever opened them

    def __init__(self, url: str) -> None:
        import asyncio
        import threading

        self.url = url
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.conn = None
        PgReader.live.add(self)

    def _run(self, coro):
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def query(self, sql: str, params: tuple = ()) -> list[PgRow]:
        import asyncpg

        from maild.store.postgres.engine import placeholders

        async def run() -> list[PgRow]:
            if self.conn is None:
                self.conn = await asyncpg.connect(self.url)
            try:
                records = await self.conn.fetch(placeholders(sql), *params)  # also writes
            except asyncpg.UndefinedTableError as exc:
                raise PgReader.Missing(str(exc)) from exc
            rows = []
            for r in records:
                row = PgRow(r.values())
                row.names = {k: i for i, k in enumerate(r.keys())}
                rows.append(row)
            return rows

        return self._run(run())

    def close(self) -> None:
        PgReader.live.discard(self)
        if self.conn is not None:
            self._run(self.conn.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def wait_listening(port: int, exit_code: Callable[[], int | None], deadline: float) -> str:
    """Wait until 127.0.0.1:``port`` accepts a connection: "" then; else what went wrong (the process
    ``exit_code`` reports on exited first, or the port never opened by ``deadline``)."""
    while True:
        if (code := exit_code()) is not None:
            return f"exited {code} before listening on port {port}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return ""
        except OSError:
            if time.monotonic() > deadline:
                return f"never opened port {port}"
            time.sleep(0.02)


@dataclass
class Instance:
    """One ticketd configuration and state directory; optionally a running daemon."""

    root: Path
    smtp_port: int = field(default_factory=free_port)
    lmtp_port: int = field(default_factory=free_port)
    max_size: int = 1024 * 1024
    extra_config: str = ""         # appended to the file, e.g. [[imap]] tables
    rate_limit: int = 0            # limits.new_tickets_per_sender
    mail_extra: str = ""           # more keys of the [mail] table
    database_url: str = ""         # [database] url; "" keeps the default (SQLite in the state directory)
    proc: subprocess.Popen | None = None
    _pg: PgReader | None = None

    def __post_init__(self) -> None:
        self.state = self.root / "var"
        self.config = self.root / "ticketd.toml"
        self.write_config()

    def write_config(self) -> None:
        database = f'[database]\nurl = "{self.database_url}"\n' if self.database_url else ""
        self.config.write_text(CONFIG.format(state=self.state, smtp=self.smtp_port, lmtp=self.lmtp_port,
                                             max_size=self.max_size, rate_limit=self.rate_limit,
                                             mail_extra=self.mail_extra, database=database)
                               + self.extra_config)

    @property
    def db_path(self) -> Path:
        return self.state / "ticketd.sqlite3"

    def cli(self, *args: str, input: bytes | None = None, env: dict | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([*TICKETD, "--config", str(self.config), *args], input=input,
                              capture_output=True, env={**os.environ, **(env or {})}, cwd=ROOT, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"ticketd {' '.join(args)} exited {proc.returncode}: {proc.stderr.decode()}")
        return proc

    def cli_json(self, *args: str) -> object:
        return json.loads(self.cli(*args, "--json").stdout)

    def start(self) -> None:
        with open(self.root / "daemon.log", "ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen([*TICKETD, "--config", str(self.config), "serve"], cwd=ROOT,
                                         stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        for port in (self.smtp_port, self.lmtp_port):
            if problem := wait_listening(port, self.proc.poll, deadline):
                raise AssertionError(f"ticketd serve {problem}: {self.daemon_log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self.proc = None
        return code

    def daemon_log(self) -> str:
        path = self.root / "daemon.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def engine(self) -> str:
        return "postgres" if self.database_url else "sqlite"

    def query(self, sql: str, params: tuple = ()) -> list:
        """Rows read by column name (``row["tid"]``), on either engine; ``?`` placeholders."""
        if not self.database_url:
            return query(self.db_path, sql, params)
        if self._pg is None:
            self._pg = PgReader(self.database_url)
        return self._pg.query(sql, params)

    def execute(self, sql: str, params: tuple = ()) -> None:
        """Change rows behind the daemon's back, on either engine (tests of states no command makes)."""
        if not self.database_url:
            conn = sqlite3.connect(self.db_path, timeout=10)
            with conn:
                conn.execute(sql, params)
            conn.close()
            return
        if self._pg is None:
            self._pg = PgReader(self.database_url)
        self._pg.query(sql, params)

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
            self._pg = None

    def wait_outcomes(self, count: int, timeout: float = 20) -> list[sqlite3.Row]:
        """Wait until ``count`` import-log rows exist; return them oldest first."""
        deadline = time.monotonic() + timeout
        while True:
            rows = []
            if self.database_url or self.db_path.exists():
                try:
                    rows = self.query("SELECT * FROM import_log ORDER BY inbound_id")
                except (sqlite3.OperationalError, PgReader.Missing):
                    rows = []
            if len(rows) >= count:
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(rows)} of {count} outcomes after {timeout}s:\n"
                                     f"{self.daemon_log()[-3000:]}")
            time.sleep(0.02)


def make_mail(
    subject: str = "Printer on fire",
    body: str = "Hello,\nmy printer is on fire.\n",
    sender: str = "alice@client.example",
    to: str = "support@helpdesk.example",
    cc: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    message_id: str | None = None,
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"Alice Client <{sender}>"
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or make_msgid(domain="client.example")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    msg.set_content(body)
    return msg


def ingest(inst: Instance, msg: EmailMessage) -> dict:
    """``ticketd ingest`` of one message (in a folder of its own); its item of the JSON report."""
    folder = inst.root / f"in{len(list(inst.root.glob('in*')))}"
    folder.mkdir()
    (folder / "m.eml").write_bytes(msg.as_bytes())
    (item,) = inst.cli_json("ingest", str(folder))["items"]
    return item


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        raise AssertionError(f"the shared corpus is missing: expected {CORPUS} (a checkout of ../shared)")
    files = sorted(CORPUS.rglob("*.eml"))
    assert len(files) >= 600, f"expected the 692-message corpus in {CORPUS}, found {len(files)} files"
    return files


async def process_mail(app: Any, subject: str, sender: str, *, reply_to: str = "", body: str = "",
                       html: str = "") -> str:
    """A client's mail to support@helpdesk.example through ``app``'s spool and pipeline, in this process (on
    the app's clock); the number of the ticket it went to."""
    from maild.spool import Incoming
    from maild.store import inbound

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "support@helpdesk.example", subject
    msg["Message-ID"] = make_msgid(domain="client.example")
    if reply_to:
        msg["In-Reply-To"] = reply_to
    msg.set_content(body or f"About {subject}.\n")
    if html:
        msg.add_alternative(html, subtype="html")
    async with app.db.transaction():
        await inbound.insert(app.db, [Incoming(raw=msg.as_bytes(), source="smtp", envelope_from=sender,
                                               envelope_to=["support@helpdesk.example"])], app.clock.stamp())
    results = await app.worker.drain()
    assert results and results[-1].tid, results
    return str(results[-1].tid)
