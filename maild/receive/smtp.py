"""SMTP and LMTP receivers (aiosmtpd) on the daemon's event loop.

RCPT TO an address of no department is refused at once (550 5.1.1): we never accept and bounce later.
DATA is answered 250 only after the spool commit; a storage failure answers 451 so the sender retries.
LMTP answers once per recipient.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from maild.addressbook import AddressBook
from maild.receive import codes
from maild.spool import Incoming, SpoolError
from maild.spoolwriter import SpoolWriter

log = logging.getLogger("ticketd.receive")

# RFC 5321 caps lines at 1000 octets, but real mail breaks that; we store it rather than refuse it.
LINE_LIMIT = 1 << 20


class _SMTP(SMTP):
    line_length_limit = LINE_LIMIT


class _LMTP(LMTP):
    line_length_limit = LINE_LIMIT


class SpoolHandler:
    """aiosmtpd handler: one hook per verb that needs us."""

    def __init__(self, spool: SpoolWriter, book: AddressBook, source: str) -> None:
        self.spool = spool
        self.book = book
        self.source = source
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
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


async def start_server(
    handler: SpoolHandler, host: str, port: int, hostname: str, max_size: int, lmtp: bool = False
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    cls = _LMTP if lmtp else _SMTP

    def factory() -> SMTP:
        return cls(
            handler,
            hostname=hostname,
            ident="ticketd ESMTP" if not lmtp else "ticketd LMTP",
            data_size_limit=max_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            loop=loop,
        )

    return await loop.create_server(factory, host=host, port=port)
