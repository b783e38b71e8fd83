"""A real SMTP relay for tests: aiosmtpd on a free loopback port, in a thread of its own, recording every
transaction it accepts. Use the ``relay`` fixture (registered in conftest.py) or :class:`Relay` directly.

Switchable while it runs:

* ``relay.answer["mail" | "rcpt" | "data"] = "451 4.3.0 Try again later"``: refuse at that step;
* ``relay.refuse["bob@client.example"] = "550 5.1.1 No such user"``: refuse one recipient at RCPT;
* ``relay.down()`` / ``relay.up()``: stop listening (dropping open connections), come back on the port;
* ``relay.reconfigure(tls="starttls" | "tls" | "none", users={"name": "password"})``: offer STARTTLS or
  speak implicit TLS with a self-signed certificate (``relay.cert_file``, for ``ca_file``); require AUTH.

``relay.transactions`` (envelope sender, recipients, exact DATA bytes, which connection, TLS, login),
``relay.connections`` (connections accepted) and ``relay.outbound_toml()`` (an ``[outbound]`` table that
points ticketd at this relay).
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.helpers import free_port

HOSTNAME = "relay.test"


@functools.cache
def certificate() -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (and its key), made once per test run."""
    folder = Path(tempfile.mkdtemp(prefix="ticketd-relay-cert-"))
    atexit.register(shutil.rmtree, folder, True)
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=30)
    return cert, key


@dataclass(frozen=True)
class Transaction:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    connection: int                # serial number of the connection (1, 2, ...)
    tls: bool
    login: str | None
    mail_options: tuple[str, ...]


class _Server(SMTP):
    """aiosmtpd's SMTP, numbering its connections for the relay."""

    def __init__(self, relay: Relay, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.relay = relay
        self.serial = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.serial == 0           # STARTTLS calls it again for the same connection
        super().connection_made(transport)
        if first:
            self.serial = self.relay._connected(self)

    def connection_lost(self, error: Exception | None) -> None:
        self.relay._open.discard(self)
        super().connection_lost(error)


class _Handler:
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    async def handle_MAIL(self, server: _Server, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        if self.relay.users and not session.authenticated:
            return "530 5.7.0 Authentication required"
        if reply := self.relay.answer.get("mail"):
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: _Server, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        if reply := self.relay.refuse.get(address.lower()) or self.relay.answer.get("rcpt"):
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: _Server, session: Session, envelope: Envelope) -> str:
        if reply := self.relay.answer.get("data"):
            return reply
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        content = envelope.original_content or b""
        with self.relay._lock:
            self.relay.transactions.append(Transaction(
                envelope.mail_from or "", tuple(envelope.rcpt_tos), content, server.serial,
                _encrypted(server), login, tuple(envelope.mail_options)))
            n = len(self.relay.transactions)
        return f"250 2.0.0 Ok: queued as {n}"


def _encrypted(server: SMTP) -> bool:
    return server.transport is not None and server.transport.get_extra_info("sslcontext") is not None


@dataclass
class Relay:
    tls: str = "none"                                  # none | starttls | tls
    users: dict[str, str] = field(default_factory=dict)  # AUTH required when not empty
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    answer: dict[str, str] = field(default_factory=dict)
    refuse: dict[str, str] = field(default_factory=dict)
    transactions: list[Transaction] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[_Server] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"relay-{self.port}", daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self.cert_file, self.key_file = certificate()

    # -- control, from the test's thread ---------------------------------------------------------------

    def start(self) -> Relay:
        self._thread.start()
        self.up()
        return self

    def stop(self) -> None:
        self.down()
        self._call(self._cancel_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def up(self) -> None:
        """Listen (again) on ``port``."""
        self._call(self._listen())

    def down(self) -> None:
        """Stop listening and drop every open connection: clients see a dead relay."""
        self._call(self._close())

    def reconfigure(self, tls: str | None = None, users: dict[str, str] | None = None) -> None:
        self.down()
        if tls is not None:
            self.tls = tls
        if users is not None:
            self.users = users
        self.up()

    def wait_for(self, count: int, timeout: float = 20) -> list[Transaction]:
        deadline = time.monotonic() + timeout
        while len(self.transactions) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"the relay got {len(self.transactions)} of {count} mails in {timeout} s")
            time.sleep(0.02)
        return list(self.transactions)

    def outbound_toml(self, **overrides: object) -> str:
        """An ``[outbound]`` table sending to this relay (values as TOML literals via repr-like quoting)."""
        values: dict[str, object] = {"transport": "smtp", "host": self.host, "port": self.port,
                                     "security": self.tls, "timeout": 5}
        if self.tls != "none":
            values["ca_file"] = str(self.cert_file)
        values.update(overrides)
        lines = ["", "[outbound]"]
        for key, value in values.items():
            if value is None:
                continue
            literal = str(value).lower() if isinstance(value, bool) else (
                str(value) if isinstance(value, int) else '"' + str(value).replace("\\", "\\\\") + '"')
            lines.append(f"{key} = {literal}")
        return "\n".join(lines) + "\n"

    # -- inside the relay's loop -----------------------------------------------------------------------

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(15)

    def _context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def _factory(self) -> _Server:
        kwargs: dict[str, Any] = {"hostname": HOSTNAME, "ident": "test relay", "decode_data": False,
                                  "enable_SMTPUTF8": True}
        if self.tls == "starttls":
            kwargs["tls_context"] = self._context()
        if self.users:
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        return _Server(self, _Handler(self), **kwargs)

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login, password = auth_data.login.decode(), auth_data.password.decode()
            if self.users.get(login) == password:
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    def _connected(self, server: _Server) -> int:
        self._open.add(server)
        with self._lock:
            self.connections += 1
            return self.connections

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await self._loop.create_server(
                self._factory, self.host, self.port, ssl=self._context() if self.tls == "tls" else None)

    async def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for smtp in list(self._open):
            for transport in (smtp._original_transport, smtp.transport):
                if isinstance(transport, asyncio.Transport):
                    transport.abort()
        self._open.clear()
        if server is not None:
            await server.wait_closed()
        await asyncio.sleep(0.01)   # let the aborted sessions' tasks see it

    async def _cancel_all(self) -> None:
        tasks = [t for t in asyncio.all_tasks(self._loop) if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
def relay() -> Iterator[Relay]:
    """A plain relay that accepts everything; see the module docstring for its switches."""
    r = Relay().start()
    try:
        yield r
    finally:
        r.stop()
