"""SMTP and LMTP receivers (aiosmtpd) on the daemon's event loop.

RCPT TO an address of no department is refused at once (550 5.1.1): we never accept and bounce later.
DATA is answered 250 only after the spool commit; a storage failure answers 451 so the sender retries.
LMTP answers once per recipient.

No client can lock the others out (the ``[smtp]``/``[lmtp]`` limits, :class:`ListenerLimits`): sessions
are capped overall and per client address (``421 4.7.0`` and closed, before the greeting), a session that
goes too many commands or too long without delivering a message is ended with ``421``, recipients per
message are capped (``452 4.5.3``), and a listener out of file descriptors says so in one log line a minute
and accepts again as soon as sessions close (asyncio retries the accept every second).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from maild.addressbook import AddressBook
from maild.config import ListenerLimits
from maild.receive import codes
from maild.spool import Incoming, SpoolError
from maild.spoolwriter import SpoolWriter

log = logging.getLogger("ticketd.receive")

# RFC 5321 caps lines at 1000 octets, but real mail breaks that; we store it rather than refuse it.
LINE_LIMIT = 1 << 20
NOTICE_SECONDS = 60.0     # a recurring refusal is logged at most this often (with how many meanwhile)


class Throttled:
    """Logs a recurring event at most once per ``every`` seconds, with how many times it happened since
    the last line: a flood of refused clients must not become a flood of log lines."""

    def __init__(self, message: str, every: float = NOTICE_SECONDS, level: int = logging.WARNING) -> None:
        self.message, self.every, self.level = message, every, level
        self.last = -every
        self.count = 0

    def __call__(self, **kv: object) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= self.every:
            log.log(self.level, self.message, extra={"kv": {**kv, "times": self.count}})
            self.last, self.count = now, 0


class Sessions:
    """The sessions open on one listener, in all and per client address."""

    def __init__(self, limits: ListenerLimits, source: str) -> None:
        self.limits = limits
        self.total = 0
        self.per_client: Counter[str] = Counter()
        self.refused = Throttled("connection refused")
        self.source = source

    def admit(self, client: str) -> str | None:
        """Count a new session in, or return the 421 that refuses it."""
        if self.total >= self.limits.max_connections:
            reply = codes.S421_TOO_MANY_CONNECTIONS
        elif self.per_client[client] >= self.limits.max_per_client:
            reply = codes.S421_TOO_MANY_FROM_YOU
        else:
            self.total += 1
            self.per_client[client] += 1
            return None
        self.refused(source=self.source, peer=client, reply=reply[:9], sessions=self.total,
                     from_peer=self.per_client[client])
        return reply

    def release(self, client: str) -> None:
        self.total -= 1
        self.per_client[client] -= 1
        if self.per_client[client] <= 0:
            del self.per_client[client]


class _Guarded(SMTP):
    """aiosmtpd's session with the listener's limits: a session over a connection cap is answered 421 and
    closed before the greeting; a session that goes ``max_commands_without_mail`` commands (accepted
    recipients aside) or ``max_seconds_without_mail`` without delivering a message gets 421 at its next
    command and is closed. (aiosmtpd's own ``timeout`` ends a session that sends nothing, or a DATA that
    does not finish, after 300 s.)"""

    line_length_limit = LINE_LIMIT

    def __init__(self, handler: SpoolHandler, sessions: Sessions, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._sessions = sessions
        self._limits = sessions.limits
        self._client: str | None = None
        self._refused = False
        self._commands = 0
        self._since = 0.0
        self._smtp_methods = {name: self._budgeted(name, method) for name, method in self._smtp_methods.items()}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None and self._client is None:  # a new session (not a TLS upgrade)
            client = _host(transport.get_extra_info("peername"))
            refusal = self._sessions.admit(client)
            if refusal is not None:
                self._refused = True
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(refusal.encode() + b"\r\n")
                transport.close()
                return
            self._client = client
            self.delivered()
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        if self._client is not None:
            self._sessions.release(self._client)
            self._client = None
        super().connection_lost(error)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def eof_received(self) -> bool | None:
        return False if self._refused else super().eof_received()

    def delivered(self) -> None:
        """A message was accepted: the session made progress, its budget starts again."""
        self._commands = 0
        self._since = time.monotonic()

    def _budgeted(self, name: str, method: Callable[[str | None], Awaitable[None]]) -> Callable[
            [str | None], Awaitable[None]]:
        async def run(arg: str | None) -> None:
            if name != "QUIT" and (self._commands >= self._limits.max_commands_without_mail
                                   or time.monotonic() - self._since > self._limits.max_seconds_without_mail):
                log.info("session ended", extra={"kv": {"source": self._sessions.source, "peer": self._client,
                                                        "commands": self._commands, "reply": "421 4.7.0"}})
                await self.push(codes.S421_NO_PROGRESS)
                if self.transport is not None:
                    self.transport.close()
                return
            before = len(self.envelope.rcpt_tos) if self.envelope is not None else 0
            self._commands += 1
            await method(arg)
            if name == "RCPT" and self.envelope is not None and len(self.envelope.rcpt_tos) > before:
                self._commands -= 1  # accepted recipients are capped by max_recipients instead
        return run


class _SMTP(_Guarded):
    pass


class _LMTP(_Guarded, LMTP):
    pass


class SpoolHandler:
    """aiosmtpd handler: one hook per verb that needs us."""

    def __init__(self, spool: SpoolWriter, book: AddressBook, source: str,
                 limits: ListenerLimits | None = None) -> None:
        self.spool = spool
        self.book = book
        self.source = source
        self.limits = limits or ListenerLimits()
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if "\x00" in address:  # it would end up in the spool and in every query that reads it
            return codes.S501_NUL_IN_ADDRESS
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return codes.S250_SENDER_OK

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if "\x00" in address:
            return codes.S501_NUL_IN_ADDRESS
        if len(envelope.rcpt_tos) >= self.limits.max_recipients:
            return codes.S452_TOO_MANY_RECIPIENTS
        if self.book.department_for(address) is None:
            log.info("refused", extra={"kv": {"source": self.source, "rcpt": address,
                                              "peer": _peer(session), "reply": "550 5.1.1"}})
            return codes.S550_NO_SUCH_USER
        envelope.rcpt_tos.append(address)
        return codes.S250_RCPT_OK

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.in_flight += 1
        self.idle.clear()
        try:
            status = await self._spool(session, envelope)
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self.idle.set()
        if status.startswith("250") and isinstance(server, _Guarded):
            server.delivered()
        if self.source == "lmtp":
            return "\r\n".join(status for _ in envelope.rcpt_tos)
        return status

    async def _spool(self, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        item = Incoming(
            raw=bytes(raw),
            source=self.source,
            envelope_from="" if envelope.mail_from in (None, "", "<>") else envelope.mail_from,
            envelope_to=list(envelope.rcpt_tos),
            peer=_peer(session),
        )
        try:
            queue_id = await self.spool.put(item)
        except SpoolError as exc:
            log.error("tempfail", extra={"kv": {"source": self.source, "peer": item.peer,
                                                "reply": "451 4.3.0", "error": str(exc)}})
            return codes.S451_SPOOL_FAILED
        except Exception as exc:  # anything else must still not become aiosmtpd's permanent 500
            log.exception("tempfail", extra={"kv": {"source": self.source, "error": repr(exc)}})
            return codes.S451_SPOOL_FAILED
        log.info("queued", extra={"kv": {"queue_id": queue_id, "source": self.source, "peer": item.peer,
                                         "from": item.envelope_from, "rcpt": ",".join(item.envelope_to),
                                         "size": len(item.raw)}})
        return codes.queued(queue_id)


def _peer(session: Session) -> str:
    peer: Any = session.peer
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


def _host(peername: Any) -> str:
    if isinstance(peername, tuple) and peername:
        return str(peername[0])
    return str(peername)


OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def guard_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Out of file descriptors (or kernel memory), asyncio's accept loop pauses a second and tries again,
    which is what we want, but it reports every attempt with a traceback. Say it in one line a minute
    instead; everything else goes to the handler there was before."""
    previous = loop.get_exception_handler()
    notice = Throttled("cannot accept connections: out of file descriptors or memory; retrying every"
                       " second (sessions already open go on)", level=logging.ERROR)

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in OUT_OF_RESOURCES and "accept" in str(context.get("message")):
            notice(error=exc.strerror or str(exc))
            return
        handle = context.get("handle")
        retry = getattr(getattr(handle, "_callback", None), "__name__", "")
        args: tuple[Any, ...] = tuple(getattr(handle, "_args", None) or ())
        gone = len(args) > 1 and isinstance(args[1], socket.socket) and args[1].fileno() == -1
        if isinstance(exc, ValueError) and retry == "_start_serving" and gone:
            # That retry's timer outlives a listener closed meanwhile (stopping while out of descriptors):
            # asyncio does not cancel it, and it finds the socket gone. Nothing is wrong.
            log.debug("accept retry of a closed listener skipped")
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


async def start_server(
    handler: SpoolHandler, host: str, port: int, hostname: str, max_size: int, lmtp: bool = False
) -> asyncio.Server:
    """Listen with ``handler.limits``: its accept backlog, connection caps and session budget."""
    loop = asyncio.get_running_loop()
    cls = _LMTP if lmtp else _SMTP
    sessions = Sessions(handler.limits, handler.source)

    def factory() -> SMTP:
        return cls(
            handler,
            sessions,
            hostname=hostname,
            ident="ticketd ESMTP" if not lmtp else "ticketd LMTP",
            data_size_limit=max_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            loop=loop,
        )

    return await loop.create_server(factory, host=host, port=port, backlog=handler.limits.backlog)
