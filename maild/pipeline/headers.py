"""Header helpers that never raise: encoded words, addresses, Message-ID lists."""

from __future__ import annotations

import re
from email.errors import InvalidHeaderDefect
from email.header import decode_header
from email.headerregistry import Address, AddressHeader, HeaderRegistry
from email.utils import getaddresses

from maild.pipeline.charsets import decode_text

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
    """(name, address, problem) of the From header. Exactly one header naming exactly one well-formed
    address gives that address, even when its display name is messy (an RFC 2047 word inside quotes, stray
    spaces, no space before ``<``, an unquoted comma, a lost ``>``). Anything that names two addresses
    (``owner@a <attacker@b>``, the same hidden in an encoded word, two mailboxes, two From headers) or an
    address that does not parse gives none and says why, so that no one can pass as someone else by a trick
    of syntax. A From with no address at all (``Mailer Daemon``, ``undisclosed-recipients:;``) gives no
    address and no problem: there is no sender to doubt, and the caller may answer the Reply-To; one with
    something in angle brackets that is not an address (``Olivia <owner>``) is an address that does not parse."""
    if not values:
        return "", "", ""
    if len(values) > 1:
        return "", "", "several From headers"
    value = values[0][:MAX_DECODE]
    decoded = _decode_all_words(value)
    if "@" not in decoded:
        if _NON_ADDRESS.search(decoded):   # <owner>: an address was meant but does not parse
            return "", "", f"no valid address in the From header: {values[0][:200]!r}"
        return _clean_name(decoded.replace("<", " ").replace(">", " ")), "", ""
    mailboxes: list[Address]
    try:
        header = _REGISTRY("From", value)
        assert isinstance(header, AddressHeader)  # the registry's class for From
        mailboxes = list(header.addresses)
        invalid = [d for d in header.defects if isinstance(d, InvalidHeaderDefect)]
    except Exception:
        mailboxes, invalid = [], [InvalidHeaderDefect("unreadable From header")]
    named = _named_addresses(decoded)
    if not invalid and len(mailboxes) == 1:
        box = mailboxes[0]
        addr = (box.addr_spec or "").strip().lower()
        if "@" in addr and " " not in addr and box.domain and named <= {addr}:
            # The name as every other header's is decoded (charset supersets), not as the registry did it.
            pairs = addresses(values)
            name = pairs[0][0] if len(pairs) == 1 and pairs[0][1] == addr else str(box.display_name or "")
            return name, addr, ""
    if len(named) > 1:
        return "", "", f"ambiguous From header: {values[0][:200]!r}"
    if len(named) == 1 and decoded.count("@") == len(_ADDRESS.findall(decoded)):
        (addr,) = named
        rest = _ADDRESS.sub(" ", decoded)
        return _clean_name(rest.replace("<", " ").replace(">", " ")), addr, ""
    return "", "", f"no valid address in the From header: {values[0][:200]!r}"


# A mailbox address as it is written in a messy From: dot-atom local part, dotted domain (IDNs too).
_ADDRESS = re.compile(r"(?<![^\s<>\"',;:()\[\]])"
                      r"([\w!#$%&'*+/=?^`{|}~-]+(?:\.[\w!#$%&'*+/=?^`{|}~-]+)*@[\w-]+(?:\.[\w-]+)*)"
                      r"(?![^\s<>\"',;:()\[\]])")
_NON_ADDRESS = re.compile(r"<\s*[^\s<>]+\s*>")   # something in angle brackets, but no @ (``<>`` is none)
_WORD_RE = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


def _decode_all_words(value: str) -> str:
    """The header with every RFC 2047 word decoded, also the ones inside quotes (which RFC 2047 forbids and
    mailers write anyway): what a reader sees, and so where a second address could hide."""
    text = _WS_RE.sub(" ", value)
    if "=?" not in text:
        return text.strip()
    return _WORD_RE.sub(lambda m: decode_words(m.group(0)), text).strip()


def _named_addresses(decoded: str) -> set[str]:
    return {m.lower() for m in _ADDRESS.findall(decoded)}


def _clean_name(text: str) -> str:
    """A display name from what is left of a messy From: no quotes, brackets of comments or stray commas."""
    text = text.replace('"', " ").replace("(", " ").replace(")", " ")
    return _WS_RE.sub(" ", text).strip(" ,;:")
