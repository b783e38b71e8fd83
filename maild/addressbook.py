"""Our own addresses and tokens: department addresses (with plus-addressing) and the subject token.

Light on imports: the SMTP/LMTP receivers use it at RCPT time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from maild.config import Settings


def strip_plus(addr: str) -> str:
    """``support+anything@x`` → ``support@x`` (lower-cased)."""
    local, _, domain = addr.lower().rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


class AddressBook:
    """Department addresses → department names."""

    def __init__(self, settings: Settings) -> None:
        self._by_addr = {a: d.name for d in settings.departments for a in d.addresses}

    def department_for(self, address: str) -> str | None:
        addr = address.strip().strip("<>").lower()
        return self._by_addr.get(addr) or self._by_addr.get(strip_plus(addr))

    def first_match(self, addresses: Iterable[str]) -> str | None:
        for addr in addresses:
            name = self.department_for(addr)
            if name:
                return name
        return None


def subject_token_pattern(settings: Settings) -> re.Pattern[str]:
    """A loose regex for ``mail.subject_token``: clients mangle spacing and case."""
    before, _, after = settings.mail.subject_token.partition("{tid}")

    def loose(literal: str) -> str:
        return r"\s*".join(re.escape(ch) for ch in literal if not ch.isspace())

    return re.compile(loose(before) + r"\s*(\d{4,12})\s*" + loose(after), re.IGNORECASE)


def subject_token(settings: Settings, tid: str) -> str:
    return settings.mail.subject_token.replace("{tid}", tid)


def loop_marker(domain: str) -> str:
    """The X-Loop value our outbound mail carries, recognised by the loop guard on the way back in (RFC 3834
    section 5 suggests such a header)."""
    return f"ticketd@{domain}"
