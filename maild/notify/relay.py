"""The ``smtp`` transport: aiosmtplib to the relay configured in ``[outbound]``.

Contract:

* One SMTP transaction per mail: MAIL FROM the envelope sender, RCPT TO its one recipient, DATA its
  bytes. A session keeps its connection for the next mail and reconnects after any error; a reused
  connection that turns out dead (the relay timed it out) is replaced once, at no cost to the mail.
* ``security = "tls"`` is implicit TLS; ``"starttls"`` fails closed: a relay that does not offer
  STARTTLS gets no command after EHLO (nothing travels in clear text) and the attempt is a temporary
  failure naming TLS; ``"none"`` is plain text. Certificates are verified (the system's CAs, or
  ``ca_file``) unless ``tls_verify = false`` says otherwise.
* AUTH when a username is configured; the password is read from its file at each connection.
* Every step has the configured timeout. Outcomes are classified by :mod:`maild.notify.transport`.
"""

from __future__ import annotations

import ssl
import time
from typing import TYPE_CHECKING

import aiosmtplib
from aiosmtplib import SMTPException, SMTPResponseException, SMTPTimeoutError

from maild.notify.transport import AUTH, CONNECT, DATA, MAIL, RCPT, SENT, TLS, Delivery, Envelope, failure

if TYPE_CHECKING:
    from maild.config import OutboundSettings


def tls_context(outbound: OutboundSettings) -> ssl.SSLContext:
    """Verifying by default (the system's CAs, or ``ca_file``); ``tls_verify = false`` turns it off."""
    context = ssl.create_default_context(cafile=str(outbound.ca_file) if outbound.ca_file else None)
    if not outbound.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class SmtpTransport:
    name = "smtp"

    def __init__(self, outbound: OutboundSettings, local_hostname: str) -> None:
        self.outbound = outbound
        self.local_hostname = local_hostname
        self.context = tls_context(outbound) if outbound.security != "none" else None

    def session(self) -> SmtpSession:
        return SmtpSession(self)

    def describe(self) -> str:
        o = self.outbound
        return f"smtp {o.host}:{o.effective_port} ({o.security})"


class _Failed(Exception):
    """A step failed; ``delivery`` says how."""

    def __init__(self, delivery: Delivery) -> None:
        super().__init__(delivery.error)
        self.delivery = delivery


class SmtpSession:
    def __init__(self, transport: SmtpTransport) -> None:
        self.transport = transport
        self._smtp: aiosmtplib.SMTP | None = None
        self._last_used: float | None = None
        self._transcript: list[str] = []

    @property
    def idle_since(self) -> float | None:
        return self._last_used if self._smtp is not None else None

    async def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None and smtp.is_connected:
            try:
                await smtp.quit(timeout=min(5.0, self.transport.outbound.timeout))
            except (SMTPException, OSError):
                smtp.close()
        elif smtp is not None:
            smtp.close()

    async def send(self, envelope: Envelope) -> Delivery:
        self._transcript = []
        reused = self._smtp is not None and self._smtp.is_connected
        try:
            if not reused:
                await self._connect()
            try:
                return await self._transaction(envelope)
            except _Failed as exc:
                # A cached connection the relay has meanwhile closed fails at MAIL without an answer, or
                # with the 421 it sent when it timed the connection out: that says nothing about this
                # mail, so connect afresh and try once more.
                if not (reused and exc.delivery.step == MAIL and exc.delivery.code in (None, 421)):
                    raise
                self._drop()
                self._transcript.append("reconnect (the cached connection was closed)")
                await self._connect()
                return await self._transaction(envelope)
        except _Failed as exc:
            if exc.delivery.code is None or exc.delivery.step in (CONNECT, TLS, AUTH):
                self._drop()  # not a clean SMTP refusal: the connection state is unknown
            return exc.delivery
        except BaseException:
            self._drop()  # cancelled (or a bug) in mid-transaction
            raise
        finally:
            self._last_used = time.monotonic()

    def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    def _fail(self, step: str, exc: BaseException) -> _Failed:
        return _Failed(_classify(step, exc, tuple(self._transcript)))

    async def _connect(self) -> None:
        o = self.transport.outbound
        smtp = aiosmtplib.SMTP(hostname=o.host, port=o.effective_port, timeout=o.timeout,
                               local_hostname=self.transport.local_hostname, use_tls=o.security == "tls",
                               start_tls=False, tls_context=self.transport.context if o.security == "tls" else None)
        try:
            greeting = await smtp.connect()
            self._transcript.append(f"connect {o.host}:{o.effective_port}: {greeting.code} {greeting.message}"
                                    .splitlines()[0])
            await smtp.ehlo()
        except BaseException as exc:
            smtp.close()
            raise self._fail(TLS if _is_tls_error(exc) else CONNECT, exc) from exc
        self._smtp = smtp
        if o.security == "tls":
            self._transcript.append(f"tls {_cipher(smtp)}")
        elif o.security == "starttls":
            if not smtp.supports_extension("starttls"):
                raise _Failed(failure(TLS, None, f"{o.host} does not offer STARTTLS (security = \"starttls\");"
                                      " nothing was sent", tuple(self._transcript)))
            try:
                await smtp.starttls(tls_context=self.transport.context, server_hostname=o.host)
                await smtp.ehlo()
            except BaseException as exc:
                raise self._fail(TLS, exc) from exc
            self._transcript.append(f"starttls {_cipher(smtp)}")
        if o.username:
            try:
                password = o.password()
            except OSError as exc:
                raise _Failed(failure(AUTH, None, f"cannot read the password file: {exc}",
                                      tuple(self._transcript))) from exc
            try:
                reply = await smtp.login(o.username, password)
            except BaseException as exc:
                raise self._fail(AUTH, exc) from exc
            self._transcript.append(f"auth {o.username}: {reply.code} {reply.message}")

    async def _transaction(self, envelope: Envelope) -> Delivery:
        smtp = self._smtp
        assert smtp is not None
        utf8 = not (envelope.sender.isascii() and envelope.recipient.isascii())
        if utf8 and not smtp.supports_extension("smtputf8"):
            return failure(RCPT, 553, "the address is not ASCII and the relay does not offer SMTPUTF8",
                           tuple(self._transcript))
        options = ["SMTPUTF8"] if utf8 else []
        if smtp.supports_extension("8bitmime") and not envelope.raw.isascii():
            options.append("BODY=8BITMIME")
        if smtp.supports_extension("size"):
            options.append(f"SIZE={len(envelope.raw)}")
        encoding = "utf-8" if utf8 else "ascii"
        step = MAIL
        try:
            reply = await smtp.mail(envelope.sender, options=options, encoding=encoding)
            self._transcript.append(f"mail from:<{envelope.sender}>: {reply.code} {reply.message}")
            step = RCPT
            reply = await smtp.rcpt(envelope.recipient, encoding=encoding)
            self._transcript.append(f"rcpt to:<{envelope.recipient}>: {reply.code} {reply.message}")
            step = DATA
            reply = await smtp.data(envelope.raw)
            self._transcript.append(f"data {len(envelope.raw)} bytes: {reply.code} {reply.message}")
        except SMTPResponseException as exc:
            if smtp.is_connected:
                await self._reset(smtp)  # ready for the next mail on this connection
            raise self._fail(step, exc) from exc
        except BaseException as exc:
            raise self._fail(step, exc) from exc
        return Delivery(SENT, code=reply.code, text=reply.message, transcript=tuple(self._transcript))

    async def _reset(self, smtp: aiosmtplib.SMTP) -> None:
        try:
            await smtp.rset()
        except (SMTPException, OSError):
            self._drop()


def _is_tls_error(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, ssl.SSLError | ssl.CertificateError):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def _classify(step: str, exc: BaseException, transcript: tuple[str, ...]) -> Delivery:
    if isinstance(exc, SMTPResponseException):
        return failure(step, exc.code, exc.message, transcript)
    if _is_tls_error(exc):
        return failure(TLS, None, f"TLS failed: {exc}", transcript)
    if isinstance(exc, SMTPTimeoutError | TimeoutError):
        return failure(step, None, f"timed out: {exc}", transcript)
    if isinstance(exc, SMTPException | OSError):
        return failure(step, None, f"{type(exc).__name__}: {exc}", transcript)
    raise exc  # a bug (or cancellation): not a delivery outcome


def _cipher(smtp: aiosmtplib.SMTP) -> str:
    try:
        cipher = smtp.get_transport_info("cipher")
    except SMTPException:
        return ""
    return f"{cipher[1]} {cipher[0]}" if cipher else ""
