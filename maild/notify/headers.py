"""Threading headers for outbound mail: Message-ID, References, Thread-Index and the subject. Pure functions.

Contract:

* :func:`new_message_id` makes ``<t{ticket_id}.{16 hex}@{domain}>``; :func:`ticket_of_message_id` reads
  that form back (for our domain only) and returns None for every other id. The ticket number in a
  Message-ID is a routing hint, never authentication: anyone can copy it into In-Reply-To.
* :func:`references` builds a References list that always starts with the thread root, always ends with
  the newest id, keeps order, and never makes ``"References: " + " ".join(result)`` longer than
  ``max_bytes`` (when ids must go, they go from the middle).
* :func:`new_thread_index` / :func:`extend_thread_index` produce Outlook's ``Thread-Index`` (base64 of
  PidTagConversationIndex, [MS-OXOMSG] 2.2.1.3): a 22-byte header block and one 5-byte child block per
  reply. The exact bit layout is documented on those functions.
* :func:`clean_subject` reduces whatever a mail client made of our subject to the bare ticket subject
  (no reply/forward prefixes, no ticket tokens, encoded words decoded, whitespace collapsed);
  :func:`thread_subject` puts exactly one token in front of it. Feeding our own output back through any
  number of client round trips gives the same result every time.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.header import decode_header

# -- Message-ID ------------------------------------------------------------------------------------------

_DOMAIN_RE = re.compile(r"[^\s<>@\"()\[\],;:\\]+")
_OUR_MID_RE = re.compile(r"<t(0|[1-9][0-9]{0,17})\.[0-9a-f]{16}@([^\s<>@]+)>", re.IGNORECASE)


def new_message_id(ticket_id: int, domain: str) -> str:
    """``<t{ticket_id}.{16 random hex}@{domain}>`` — 64 random bits make collisions irrelevant."""
    if isinstance(ticket_id, bool) or not isinstance(ticket_id, int) or not 0 <= ticket_id < 10**18:
        raise ValueError(f"not a ticket id: {ticket_id!r}")
    if not _DOMAIN_RE.fullmatch(domain):
        raise ValueError(f"not a Message-ID domain: {domain!r}")
    return f"<t{ticket_id}.{secrets.token_hex(8)}@{domain}>"


def ticket_of_message_id(mid: str, domain: str) -> int | None:
    """The ticket id in one of our own Message-IDs (same form, same domain); None for anyone else's."""
    if not isinstance(mid, str) or len(mid) > 998:
        return None
    m = _OUR_MID_RE.fullmatch(mid.strip())
    # Domains are case-insensitive; a mail client echoing our id in In-Reply-To may not keep the case.
    if m is None or m.group(2).lower() != domain.strip().lower():
        return None
    return int(m.group(1))


# -- References ------------------------------------------------------------------------------------------

_REFERENCES_PREFIX = len(b"References: ")


def references(chain: Sequence[str], root: str, max_bytes: int = 3000) -> list[str]:
    """The References for a new mail on a ticket whose Message-IDs so far are ``chain`` (oldest first).

    Empty ids and duplicates are dropped (first occurrence kept) and ``root`` is moved to the front. If
    everything does not fit in ``max_bytes``, the list keeps, in this priority: the root, the newest id,
    the oldest id after the root, then as many of the next-newest ids as fit (a contiguous run ending at
    the newest); the ids in between are dropped. This follows RFC 5322 3.6.4's advice (keep the first
    and the most recent) and keeps replies threaded in clients that use only the first or last id.
    The byte limit is hard: an id that alone is too long to fit is left out, even the root.
    """
    root = root.strip()
    seen = {root}
    rest: list[str] = []
    for mid in chain:
        mid = mid.strip()
        if mid and mid not in seen:
            seen.add(mid)
            rest.append(mid)
    budget = max_bytes - _REFERENCES_PREFIX
    head = [root] if root else []
    everything = head + rest
    if _size(everything) <= budget:
        return everything

    used = 0
    count = 0

    def take(mid: str) -> bool:
        # The joined length is the ids plus one space between each pair, whatever their order.
        nonlocal used, count
        extra = len(mid.encode()) + (1 if count else 0)
        if used + extra > budget:
            return False
        used += extra
        count += 1
        return True

    kept_head = [mid for mid in head if take(mid)]
    newest = [rest[-1]] if rest and take(rest[-1]) else []
    oldest = [rest[0]] if len(rest) > 1 and take(rest[0]) else []
    middle: list[str] = []
    for mid in reversed(rest[1:-1]):
        if not take(mid):
            break  # stop at the first misfit: the newest ids stay one unbroken run
        middle.append(mid)
    middle.reverse()
    return kept_head + oldest + middle + newest


def _size(ids: Sequence[str]) -> int:
    return sum(len(mid.encode()) for mid in ids) + max(len(ids) - 1, 0)


# -- Thread-Index ----------------------------------------------------------------------------------------

_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)
_HEADER = 22
_CHILD = 5


def _filetime(now: datetime) -> int:
    """100-ns ticks since 1601-01-01 UTC; a naive datetime is taken as UTC."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    td = now - _FILETIME_EPOCH
    # Integer arithmetic: a float of ~1.3e17 ticks would lose the low bits.
    return (td.days * 86_400 + td.seconds) * 10_000_000 + td.microseconds * 10


def new_thread_index(now: datetime) -> str:
    """A fresh Thread-Index: 22-byte header block, base64.

    Bytes 0-5 are the high 48 bits of ``now`` as a FILETIME (the low 16 bits are dropped), bytes 6-21
    a random GUID. [MS-OXOMSG] describes byte 0 as "reserved, 0x01" and bytes 1-5 as FILETIME bits; for
    dates between 1829 and 2057 a FILETIME's top byte *is* 0x01, which is how Outlook's own values read
    (``AdX…``), so both descriptions give the same bytes.
    """
    header = (_filetime(now) >> 16).to_bytes(6, "big") + secrets.token_bytes(16)
    return base64.b64encode(header).decode("ascii")


def extend_thread_index(parent_b64: str, now: datetime) -> str | None:
    """The parent's Thread-Index plus one child block for a message sent at ``now``; None if invalid.

    The parent must be valid base64 of 22 + 5·n bytes. The child block is computed from
    ``delta = now - T`` in 100-ns ticks, T being the parent header's FILETIME (bytes 0-5 as the high 48
    bits, low 16 bits zero), clamped at 0 for a clock that went backwards. Its 40 bits, big-endian:

    * bit 0 (delta code) = 0 and the next 31 bits = ``delta >> 18`` if ``delta < 2**49``;
      otherwise bit 0 = 1 and the 31 bits = ``(delta >> 23) & 0x7FFFFFFF``. [MS-OXOMSG] states the test as
      "high part of delta AND 0x00FE0000 is 0" (bits 49-55 clear, "1.7 years"): ``delta >> 18`` then
      fits the 31 bits exactly, so the threshold is 2**49 ticks, not 2**48.
    * 4 bits random, then 4 bits sequence: the parent's number of child blocks mod 16 (the legacy MAPI
      description; [MS-OXOMSG] just calls the byte "Random").
    """
    if not isinstance(parent_b64, str):
        return None
    try:
        raw = base64.b64decode("".join(parent_b64.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) < _HEADER or (len(raw) - _HEADER) % _CHILD:
        return None
    delta = max(0, _filetime(now) - (int.from_bytes(raw[:6], "big") << 16))
    children = (len(raw) - _HEADER) // _CHILD
    block = _child_block(delta, secrets.randbits(4), children)
    return base64.b64encode(raw + block).decode("ascii")


def _child_block(delta: int, random4: int, sequence: int) -> bytes:
    if delta < 1 << 49:
        word = (delta >> 18) & 0x7FFFFFFF
    else:
        word = 0x80000000 | ((delta >> 23) & 0x7FFFFFFF)
    return word.to_bytes(4, "big") + bytes([(random4 & 0xF) << 4 | (sequence & 0xF)])


# -- Subject ---------------------------------------------------------------------------------------------

# Reply/forward prefixes of the common mail clients, by language. Longest first so "Antwort" wins over
# "Antw"; matching is case-insensitive (Unicode-aware, so "RÉF" and "VÁ" are covered).
_PREFIX_WORDS = sorted(
    [
        "re", "aw", "fwd", "fw", "wg", "sv", "vs", "antw", "antwort", "réf", "rif", "odp", "ynt", "vá", "ref",
        "回复", "答复", "转发", "回覆", "轉寄", "ha", "r",
    ],
    key=len,
    reverse=True,
)
# Any run of "Prefix[n]:" / "Prefix(n):" at the start; Chinese clients use the full-width colon.
_PREFIXES_RE = re.compile(
    r"^(?:\s*(?:" + "|".join(map(re.escape, _PREFIX_WORDS)) + r")\s*(?:\[\d{1,4}\]|\(\d{1,4}\))?\s*[:：])+",
    re.IGNORECASE,
)
_ENCODED_WORD = r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?="
# Adjacent encoded words separated only by whitespace are decoded together: RFC 2047 6.2 says that
# whitespace is not part of the text.
_ENCODED_RUN_RE = re.compile(rf"{_ENCODED_WORD}(?:\s+{_ENCODED_WORD})*")
NO_SUBJECT = "(no subject)"


def clean_subject(subject: str, token_re: re.Pattern[str]) -> str:
    """``subject`` without reply/forward prefixes and ticket tokens, encoded words decoded, spaces collapsed.

    Returns ``"(no subject)"`` when nothing is left.
    """
    text = subject
    # A client may wrap an already-encoded subject again; a few passes undo any realistic nesting.
    for _ in range(3):
        decoded = _ENCODED_RUN_RE.sub(lambda m: _decode_run(m.group(0)), text)
        if decoded == text:
            break
        text = decoded
    text = token_re.sub(" ", text)
    text = " ".join(text.split())
    text = _PREFIXES_RE.sub("", text)
    text = " ".join(text.split())
    return text or NO_SUBJECT


def thread_subject(subject: str, token: str, token_re: re.Pattern[str], reply: bool = False) -> str:
    """``"{token} {clean subject}"``, with ``"Re: "`` in front when ``reply`` is true."""
    return f"{'Re: ' if reply else ''}{token} {clean_subject(subject, token_re)}"


def _decode_run(run: str) -> str:
    try:
        parts = decode_header(run)
    except HeaderParseError:
        return run  # e.g. broken base64: leave the text as the client sent it
    out: list[str] = []
    for data, charset in parts:
        if isinstance(data, str):
            out.append(data)
            continue
        # "utf-8*en": RFC 2231 allows a language suffix on the charset.
        name = (charset or "ascii").split("*", 1)[0]
        try:
            out.append(data.decode(name, errors="replace"))
        except LookupError:
            # Unknown charset label: UTF-8 is by far the likeliest truth, and "replace" keeps it total.
            out.append(data.decode("utf-8", errors="replace"))
    return "".join(out)
