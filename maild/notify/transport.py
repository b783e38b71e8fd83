"""Outbound transports: how a mail leaves ticketd, and how each attempt ended.

A :class:`Transport` opens :class:`Session`\\ s; a session delivers one mail at a time (one SMTP
transaction, or one Maildir file) and may keep its connection for the next mail. Every attempt ends in a
:class:`Delivery`, classified once here (STYLE 7):

* ``sent``: the relay answered 250 to DATA (or the Maildir file is in ``new/``);
* ``temporary``: worth trying again later: connection errors, timeouts, TLS trouble, AUTH trouble (our
  configuration, not the mail's fault), any 4xx, 530 and 552 (see :func:`classify_code`);
* ``permanent``: any other 5xx to MAIL, RCPT or DATA; the server's code and text are kept.

Transports: ``smtp`` (:mod:`maild.notify.relay`, aiosmtplib to the configured relay) and ``maildir``
(:mod:`maild.notify.maildir`, the embedded default: files under ``settings.sent_dir``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from maild.config import Settings

SENT = "sent"
TEMPORARY = "temporary"
PERMANENT = "permanent"

# The steps of one delivery, as `ticketd outbox test` reports them.
CONNECT = "connect"
TLS = "tls"
AUTH = "auth"
MAIL = "mail"
RCPT = "rcpt"
DATA = "data"
WRITE = "write"          # the maildir transport
STEPS = (CONNECT, TLS, AUTH, MAIL, RCPT, DATA, WRITE)


@dataclass(frozen=True)
class Envelope:
    """One SMTP transaction: MAIL FROM ``sender``, RCPT TO ``recipient``, DATA ``raw``. ``key`` names the
    mail stably across attempts (the maildir transport's file name)."""

    sender: str
    recipient: str
    raw: bytes
    key: str


@dataclass(frozen=True)
class Delivery:
    """How one attempt ended: ``status`` sent|temporary|permanent; for a failure, the ``step`` it failed
    at and the server's ``code`` and ``text`` (or the local error). ``where`` says where a maildir
    transport wrote the mail; ``transcript`` lists the steps that went well, for ``outbox test``."""

    status: str
    step: str = ""
    code: int | None = None
    text: str = ""
    where: str = ""
    transcript: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == SENT

    @property
    def error(self) -> str:
        """One line for ``last_error`` and the logs: ``RCPT 550 5.1.1 <bob@x>: no such user``."""
        if self.ok:
            return ""
        code = f" {self.code}" if self.code is not None else ""
        return f"{self.step.upper()}{code} {self.text}".strip()


def classify_code(code: int, step: str) -> str:
    """temporary or permanent, for a server's refusal ``code`` at ``step``.

    552 is retried: RFC 5321 (section 4.5.3.1.10) tells clients to treat a 552 to RCPT as the 452 "too
    many recipients" that old servers wrongly sent, and at DATA it is "exceeded storage allocation",
    mostly a full mailbox, which clears; the retry deadline bounds it either way. Refusals before MAIL
    (greeting, EHLO, STARTTLS, AUTH) are about our relay or our configuration, never about this mail,
    so they are temporary too: an admin can fix them and the queue drains. So is 530 "authentication
    required" (RFC 4954), which relays give at MAIL when ticketd has no AUTH configured."""
    if step in (CONNECT, TLS, AUTH):
        return TEMPORARY
    if code in (530, 552) or code < 500:
        return TEMPORARY
    return PERMANENT


def failure(step: str, code: int | None, text: str, transcript: tuple[str, ...] = ()) -> Delivery:
    status = TEMPORARY if code is None else classify_code(code, step)
    return Delivery(status, step, code, " ".join(text.split()), transcript=transcript)


class Session(Protocol):
    """One connection's worth of deliveries, one at a time."""

    async def send(self, envelope: Envelope) -> Delivery: ...

    async def close(self) -> None: ...

    @property
    def idle_since(self) -> float | None:
        """``time.monotonic()`` of the last use while a connection is open; None when closed."""
        ...


class Transport(Protocol):
    name: str

    def session(self) -> Session: ...

    def describe(self) -> str:
        """Where mail goes, for logs and ``outbox test``: ``smtp relay.example:587 (starttls)``."""
        ...


def build_transport(settings: Settings) -> Transport:
    """The transport ``[outbound]`` configures."""
    if settings.outbound.transport == "smtp":
        from maild.notify.relay import SmtpTransport

        return SmtpTransport(settings.outbound, settings.mail.domain)
    from maild.notify.maildir import MaildirTransport

    return MaildirTransport(settings.sent_dir)
