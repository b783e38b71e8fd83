"""The spool: raw mail plus envelope, committed before any receiver acknowledges it.

``ticketd pipe`` commits with :func:`maild.store.inbound.spool_sync` over a synchronous connection (neither
imports anything heavy); the daemon's receivers share a group-committing
:class:`maild.spoolwriter.SpoolWriter`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Incoming:
    """One message as a receiver got it: bytes and envelope, nothing parsed."""

    raw: bytes
    source: str
    envelope_from: str | None = None
    envelope_to: Sequence[str] = ()
    peer: str | None = None
    source_ref: str | None = None
    department_hint: str | None = None
    received_at: str = field(default="")
    size: int | None = None        # the size as received, when ``raw`` is not all of it (too large)

    def row(self, stamp: str) -> tuple:
        return (
            self.received_at or stamp,
            self.source,
            storable(self.source_ref),
            storable(self.peer),
            storable(self.envelope_from),
            json.dumps([storable(a) for a in self.envelope_to]),
            storable(self.department_hint),
            self.size if self.size is not None else len(self.raw),
            self.raw,
        )


def storable(text: str | None) -> str | None:
    """Envelope text as it can be stored: 8-bit garbage in MAIL FROM (decoded by aiosmtpd or Python with
    surrogate escapes) becomes visible escapes instead of failing the commit, and the batch with it."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class SpoolError(Exception):
    """The message could not be stored: the sender must retry (451 / EX_TEMPFAIL)."""
