"""Header helpers that never raise: encoded words, addresses, Message-ID lists."""

from __future__ import annotations

import re
from email.errors import InvalidHeaderDefect
from email.header import decode_header
from email.headerregistry import AddressHeader, HeaderRegistry
from email.utils import getaddresses

from maild.pipeline.content import decode_text

_MSGID_RE = re.compile(r"<[^<>\s]+>")
_WS_RE = re.compile(r"\s+")
_REGISTRY = HeaderRegistry()


MAX_DECODE = 16 * 1024
MAX_ADDRESS_HEADER = 256 * 1024   # the stdlib decoder is quadratic on broken words; no header we show is longer


def decode_words(value: object) -> str:
    """RFC 2047 words to text, tolerating bad charsets, bad encodings and raw 8-bit bytes."""
    text = str(value)[:MAX_DECODE] if value is not None else ""
    if "=?" not in text:
        return _WS_RE.sub(" ", text).strip()
    try:
        chunks = decode_header(text)
    except Exception:
        return _WS_RE.sub(" ", text).strip()
    out = []
    for chunk, charset in chunks:
        out.append(decode_text(chunk, charset) if isinstance(chunk, bytes) else chunk)
    return _WS_RE.sub(" ", "".join(out)).strip()


def addresses(values: list[str]) -> list[tuple[str, str]]:
    """(name, lower-cased address) pairs from address headers; junk entries are dropped."""
    try:
        pairs = getaddresses([str(v)[:MAX_ADDRESS_HEADER] for v in values[:50]])
    except Exception:
        return []
    result = []
    for name, addr in pairs:
        addr = addr.strip().strip("<>").lower()
        if "@" in addr and " " not in addr:
            result.append((decode_words(name), addr))
    return result


def message_ids(value: object) -> list[str]:
    """Every ``<id>`` in a Message-ID, In-Reply-To or References header, in order."""
    return _MSGID_RE.findall(str(value or ""))


def one_message_id(value: object) -> str:
    found = message_ids(value)
    if found:
        return found[0]
    text = str(value or "").strip()
    return f"<{text}>" if text and " " not in text else ""


def single_author(values: list[str]) -> tuple[str, str, str]:
    """(name, address, problem) of the From header. Exactly one header with exactly one well-formed mailbox
    gives an address; anything else (``owner@a <attacker@b>``, two mailboxes, two From headers) gives none
    and says why, so that no one can pass as someone else by a trick of syntax."""
    if not values:
        return "", "", ""
    if len(values) > 1:
        return "", "", "several From headers"
    try:
        header = _REGISTRY("From", values[0][:MAX_DECODE])
        assert isinstance(header, AddressHeader)  # the registry's class for From
        mailboxes = list(header.addresses)
        invalid = [d for d in header.defects if isinstance(d, InvalidHeaderDefect)]
    except Exception as exc:
        return "", "", f"unreadable From header ({type(exc).__name__})"
    if invalid or len(mailboxes) != 1:
        return "", "", f"ambiguous From header: {values[0][:200]!r}"
    box = mailboxes[0]
    addr = (box.addr_spec or "").strip().lower()
    if "@" not in addr or " " in addr or not box.domain:
        return "", "", f"no valid address in the From header: {values[0][:200]!r}"
    # The name as every other header's is decoded (charset supersets), not as the registry did it.
    pairs = addresses(values)
    return (pairs[0][0] if len(pairs) == 1 and pairs[0][1] == addr else str(box.display_name or "")), addr, ""
