"""Signed plus-address tags: reply tokens (``support+t123456-ab…@x``) and VERP bounce tags (``b42-ab…``).

Contract:

* A tag contains only ``[a-z0-9-]`` and is compared lower-cased, because MTAs and mail clients are free
  to lower-case the local part of an address. The MAC alphabet is base32 (``a-z2-7``), so lower-casing
  loses nothing.
* MAC = HMAC-SHA256(secret, purpose + fields), base32, lower case, no padding, first 16 characters
  (80 bits). The purpose string ("reply" / "bounce") keeps a MAC made for one use from verifying as the
  other; fields are length-prefixed so no two field lists encode to the same bytes.
* Reply tags: ``t{tid}-{mac}`` for the client, ``t{tid}-s{staff_id}-{mac}`` for a staff member. The MAC
  binds the ticket and the staff id (or its absence), so a tag cannot be moved to another ticket or
  another staff member. :meth:`Signer.read_reply_tag` returns ``None`` for anything malformed or forged
  and never raises.
* Bounce tags: ``b{outbox_id}-{mac}``; the MAC binds the id and the lower-cased recipient the message was
  sent to. :meth:`Signer.read_bounce_tag` only parses (the caller looks the recipient up by id), then
  :meth:`Signer.verify_bounce_tag` checks the MAC against that recipient.
* Only canonical forms are accepted (no leading zeros, no surrounding junk), so each token has exactly
  one spelling.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

MAC_CHARS = 16  # 16 base32 characters = 80 bits
# Local parts are at most 64 octets (RFC 5321); anything longer than this is not ours, and refusing it
# early keeps hostile input from costing more than a length check.
MAX_TAG = 64

_TID = r"[0-9a-z]{1,32}"
_NUM = r"(?:0|[1-9][0-9]{0,17})"  # canonical non-negative integer that fits in 64 bits
_MAC = r"[a-z2-7]{16}"  # MAC_CHARS base32 characters
_REPLY_RE = re.compile(rf"t({_TID})(?:-s({_NUM}))?-({_MAC})")
_BOUNCE_RE = re.compile(rf"b({_NUM})-({_MAC})")
_TID_RE = re.compile(_TID)
_TAG_RE = re.compile(r"[a-z0-9-]+")


@dataclass(frozen=True)
class ReplyToken:
    """A verified reply tag: the ticket, and the staff member it was issued to (None: the client side)."""

    tid: str
    staff_id: int | None = None


class Signer:
    """Makes and checks the tags with one installation secret (see :mod:`maild.keys`)."""

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes | bytearray) or len(secret) < 16:
            raise ValueError("the signing secret must be at least 16 bytes")
        self._secret = bytes(secret)

    def _mac(self, purpose: str, *fields: str) -> str:
        msg = bytearray()
        for part in (purpose, *fields):
            raw = part.encode("utf-8")
            msg += b"%d:" % len(raw) + raw
        digest = hmac.new(self._secret, bytes(msg), hashlib.sha256).digest()
        return base64.b32encode(digest).decode("ascii").rstrip("=").lower()[:MAC_CHARS]

    # -- reply tokens -----------------------------------------------------------------------------------

    def reply_tag(self, tid: str, staff_id: int | None = None) -> str:
        """``t{tid}-{mac}`` (client) or ``t{tid}-s{staff_id}-{mac}`` (staff). ``tid`` must be ``[0-9a-z]+``."""
        # An upper-case tid would come back lower-cased by some MTA and name another ticket: refuse it.
        if not isinstance(tid, str) or not _TID_RE.fullmatch(tid):
            raise ValueError(f"ticket id not usable in a tag: {tid!r}")
        if staff_id is None:
            return f"t{tid}-{self._mac('reply', tid, '')}"
        if isinstance(staff_id, bool) or not isinstance(staff_id, int) or not 0 <= staff_id < 10**18:
            raise ValueError(f"staff id not usable in a tag: {staff_id!r}")
        return f"t{tid}-s{staff_id}-{self._mac('reply', tid, str(staff_id))}"

    def read_reply_tag(self, tag: str) -> ReplyToken | None:
        """The ticket (and staff member) a reply tag was made for, or None if malformed or not ours."""
        norm = _normalise(tag)
        if norm is None:
            return None
        m = _REPLY_RE.fullmatch(norm)
        if m is None:
            return None
        tid, staff, mac = m.groups()
        expected = self._mac("reply", tid, staff or "")
        if not hmac.compare_digest(mac, expected):
            return None
        return ReplyToken(tid, int(staff) if staff is not None else None)

    # -- bounce tags ------------------------------------------------------------------------------------

    def bounce_tag(self, outbox_id: int, recipient: str) -> str:
        """``b{outbox_id}-{mac}``, the MAC binding the id to this one (lower-cased) recipient."""
        if isinstance(outbox_id, bool) or not isinstance(outbox_id, int) or not 0 <= outbox_id < 10**18:
            raise ValueError(f"outbox id not usable in a tag: {outbox_id!r}")
        return f"b{outbox_id}-{self._mac('bounce', str(outbox_id), _recipient(recipient))}"

    def read_bounce_tag(self, tag: str) -> int | None:
        """The outbox id in a well-formed bounce tag, NOT verified: follow with :meth:`verify_bounce_tag`."""
        norm = _normalise(tag)
        m = _BOUNCE_RE.fullmatch(norm) if norm is not None else None
        return int(m.group(1)) if m else None

    def verify_bounce_tag(self, tag: str, recipient: str) -> int | None:
        """The outbox id if ``tag`` was made for that id and ``recipient``, else None."""
        norm = _normalise(tag)
        m = _BOUNCE_RE.fullmatch(norm) if norm is not None else None
        if m is None or not isinstance(recipient, str):
            return None
        expected = self._mac("bounce", m.group(1), _recipient(recipient))
        return int(m.group(1)) if hmac.compare_digest(m.group(2), expected) else None


def _normalise(tag: object) -> str | None:
    # isascii() first: str.lower() maps some non-ASCII letters to ASCII ones (KELVIN SIGN → "k"), and a
    # tag must have exactly one spelling.
    if not isinstance(tag, str) or not tag or len(tag) > MAX_TAG or not tag.isascii():
        return None
    return tag.lower()


def _recipient(address: str) -> str:
    return address.strip().strip("<>").lower()


# -- address helpers -------------------------------------------------------------------------------------


def with_tag(address: str, tag: str) -> str:
    """``local@domain`` → ``local+tag@domain``; an existing ``+tag`` is replaced."""
    if not _TAG_RE.fullmatch(tag):
        raise ValueError(f"not a valid tag: {tag!r}")
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"not an address: {address!r}")
    return f"{local.split('+', 1)[0]}+{tag}@{domain}"


def tag_of(address: str) -> str | None:
    """The part after the first ``+`` of the local part, lower-cased; None if there is none."""
    local, at, _ = address.strip().strip("<>").rpartition("@")
    if not at:
        return None
    _, plus, tag = local.partition("+")
    return tag.lower() if plus and tag else None


def tags_in(addresses: Iterable[str]) -> list[str]:
    """Every tag in ``addresses``, first-seen order, without duplicates."""
    seen: dict[str, None] = {}
    for address in addresses:
        tag = tag_of(address)
        if tag is not None:
            seen.setdefault(tag, None)
    return list(seen)
