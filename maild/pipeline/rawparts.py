"""The original bytes of the messages a mail carries (``message/rfc822`` and other ``message/*`` parts).

The ``email`` package keeps no offsets, and flattening a parsed message again changes line endings and
header folding, which breaks the DKIM and S/MIME signatures of a forwarded message. So the raw mail is
split at the MIME boundaries the way the parser splits it (RFC 2046: the line break before a delimiter
belongs to the delimiter), beside the parsed tree. Wherever the two disagree (malformed mail), nothing is
claimed for that subtree and the caller falls back to flattening.
"""

from __future__ import annotations

import bisect
import re
from email.message import Message
from email.parser import BytesHeaderParser

_HEADER_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
MAX_DEPTH = 60
MAX_PARTS = 2000


def _header_end(raw: bytes, start: int, end: int) -> tuple[int, int]:
    """Where the headers of the entity ``raw[start:end]`` end and its body starts: after the first empty
    line (the body is all of it when the entity starts with one, nothing when there is none)."""
    for eol in (b"\r\n", b"\n"):
        if raw.startswith(eol, start):
            return start, start + len(eol)
    m = _HEADER_END.search(raw, start, end)
    if m is None:
        return end, end
    return m.start() + (m.end() - m.start()) // 2, m.end()


Delimiters = tuple[list[int], list[re.Match[bytes]]]   # their starts (for bisect) and the matches


def _delimiters(raw: bytes, boundaries: set[str]) -> dict[bytes, Delimiters]:
    """Every delimiter line of any of ``boundaries`` in ``raw``, by boundary, in order: one pass over the
    mail however deep its multiparts nest."""
    marks = set()
    for boundary in boundaries:
        try:
            marks.add(boundary.encode("ascii", "surrogateescape"))
        except UnicodeEncodeError:
            continue
    if not marks:
        return {}
    alternatives = b"|".join(re.escape(m) for m in sorted(marks, key=len, reverse=True))
    line = re.compile(rb"(?:^|(?<=[\r\n]))--(" + alternatives + rb")(--)?[ \t]*(?:\r\n|\n|\r|\Z)")
    found: dict[bytes, Delimiters] = {}
    for m in line.finditer(raw):
        starts, matches = found.setdefault(m[1], ([], []))
        starts.append(m.start())
        matches.append(m)
    return found


def _children(delimiters: Delimiters, raw: bytes, start: int, end: int) -> list[tuple[int, int]]:
    """The spans of the entities between the delimiters that lie in ``raw[start:end]``, a multipart body
    (RFC 2046: the line break before a delimiter belongs to it)."""
    starts, matches = delimiters
    spans: list[tuple[int, int]] = []
    begin: int | None = None
    for i in range(bisect.bisect_left(starts, start), len(matches)):
        m = matches[i]
        if m.start() >= end:
            break
        if begin is not None:
            stop = m.start()
            stop -= 2 if raw.startswith(b"\r\n", stop - 2) else 1 if raw[stop - 1:stop] in (b"\n", b"\r") else 0
            spans.append((begin, max(begin, stop)))
        if m[2]:  # the close delimiter: the epilogue follows
            return spans
        begin = min(m.end(), end)
    if begin is not None:  # no close delimiter: the last part runs to the end
        spans.append((begin, end))
    return spans


def _same_headers(raw: bytes, part: Message, names: tuple[str, ...] | None = None) -> bool:
    """Whether the header block ``raw`` is ``part``'s (all of it, or the ``names``)."""
    try:
        parsed = BytesHeaderParser().parsebytes(raw)
        if names is None:
            return parsed.items() == part.items()
        return all(parsed.get(n) == part.get(n) for n in names)
    except Exception:
        return False


def _identity(part: Message) -> bool:
    return str(part.get("content-transfer-encoding", "7bit")).strip().lower() in ("7bit", "8bit", "binary", "")


def _with_messages(message: Message) -> tuple[set[int], set[str]]:
    """``id`` of every part that is, or holds, a ``message/*`` part (not looking inside those), and the
    boundaries of the multiparts among them."""
    wanted: set[int] = set()
    boundaries: set[str] = set()
    todo: list[tuple[Message, tuple[Message, ...]]] = [(message, ())]
    seen = 0
    while todo and seen < MAX_PARTS:
        part, ancestors = todo.pop()
        seen += 1
        if part.get_content_maintype() == "message":
            for holder in ancestors:
                if id(holder) not in wanted:
                    wanted.add(id(holder))
                    boundaries.add(holder.get_boundary() or "")
            wanted.add(id(part))
            continue
        children = part.get_payload() if part.is_multipart() else None
        if isinstance(children, list) and len(ancestors) < MAX_DEPTH:
            todo += [(c, (*ancestors, part)) for c in children if isinstance(c, Message)]
    boundaries.discard("")
    return wanted, boundaries


def message_bodies(message: Message, raw: bytes) -> dict[int, bytes]:
    """``id(part)`` → the raw body bytes (still transfer-encoded) of every ``message/*`` part of ``message``
    parsed from ``raw``, where the raw split agrees with the parsed tree."""
    wanted, boundaries = _with_messages(message)
    if not wanted:
        return {}
    delimiters = _delimiters(raw, boundaries)
    found: dict[int, bytes] = {}
    todo: list[tuple[Message, int, int]] = [(message, 0, len(raw))]
    while todo:
        part, start, end = todo.pop()
        head_end, body_start = _header_end(raw, start, end)
        if part is not message and not _same_headers(raw[start:head_end], part,
                                                     ("content-type", "content-transfer-encoding")):
            continue
        if part.get_content_maintype() == "message":
            inner = part.get_payload()
            first = inner[0] if isinstance(inner, list) and inner else None
            # Encoded (base64, quoted-printable) the parser could not read it: the decoded bytes are the
            # message. Otherwise the parser's reading of it must be these bytes'.
            if not _identity(part) or (isinstance(first, Message) and _same_headers(
                    raw[body_start:_header_end(raw, body_start, end)[0]], first)):
                found[id(part)] = raw[body_start:end]
            continue
        children = part.get_payload() if part.is_multipart() else None
        boundary = part.get_boundary()
        if not isinstance(children, list) or boundary is None:
            continue
        mark = boundary.encode("ascii", "surrogateescape") if _ascii_or_escaped(boundary) else None
        spans = _children(delimiters.get(mark, ([], [])), raw, body_start, end) if mark is not None else []
        if len(spans) != len(children):
            continue
        todo += [(c, s, e) for c, (s, e) in zip(children, spans, strict=True)
                 if isinstance(c, Message) and id(c) in wanted]
    return found


def _ascii_or_escaped(text: str) -> bool:
    try:
        text.encode("ascii", "surrogateescape")
        return True
    except UnicodeEncodeError:
        return False
