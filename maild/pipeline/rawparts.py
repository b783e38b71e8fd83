"""The original bytes of the messages a mail carries (``message/rfc822`` and other ``message/*`` parts).

The ``email`` package keeps no offsets, and flattening a parsed message again changes line endings and
header folding, which breaks the DKIM and S/MIME signatures of a forwarded message. So the raw mail is
split at the MIME boundaries the way the parser splits it (RFC 2046: the line break before a delimiter
belongs to the delimiter), beside the parsed tree. Wherever the two disagree (malformed mail), nothing is
claimed for that subtree and the caller falls back to flattening.
"""

from __future__ import annotations

import re
from email.message import Message
from email.parser import BytesHeaderParser

_HEADER_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


def _split_entity(raw: bytes) -> tuple[bytes, bytes]:
    """Headers and body of one entity: the body starts after the first empty line (or is all of it when
    the entity starts with one)."""
    if raw.startswith((b"\r\n", b"\n")):
        return b"", raw[2 if raw.startswith(b"\r\n") else 1:]
    m = _HEADER_END.search(raw)
    if m is None:
        return raw, b""
    return raw[:m.start() + (m.end() - m.start()) // 2], raw[m.end():]


def _children(body: bytes, boundary: str) -> list[bytes]:
    """The raw entities between the delimiters of ``boundary`` in a multipart body."""
    try:
        mark = boundary.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return []
    delimiter = re.compile(rb"(?:^|(?<=[\r\n]))--" + re.escape(mark) + rb"(--)?[ \t]*(?:\r\n|\n|\r|\Z)")
    spans: list[bytes] = []
    start: int | None = None
    for m in delimiter.finditer(body):
        if start is not None:
            end = m.start()
            end -= 2 if body[:end].endswith(b"\r\n") else 1 if body[:end].endswith((b"\n", b"\r")) else 0
            spans.append(body[start:max(end, start)])
        if m[1]:  # the close delimiter: the epilogue follows
            return spans
        start = m.end()
    if start is not None:  # no close delimiter: the last part runs to the end
        spans.append(body[start:])
    return spans


def _same_headers(raw: bytes, part: Message, names: tuple[str, ...] | None = None) -> bool:
    """Whether the header block at the start of ``raw`` is ``part``'s (all of it, or the ``names``)."""
    try:
        parsed = BytesHeaderParser().parsebytes(raw)
        if names is None:
            return parsed.items() == part.items()
        return all(parsed.get(n) == part.get(n) for n in names)
    except Exception:
        return False


def _identity(part: Message) -> bool:
    return str(part.get("content-transfer-encoding", "7bit")).strip().lower() in ("7bit", "8bit", "binary", "")


def message_bodies(message: Message, raw: bytes, limit: int = 2000) -> dict[int, bytes]:
    """``id(part)`` → the raw body bytes (still transfer-encoded) of every ``message/*`` part of ``message``
    parsed from ``raw``, where the raw split agrees with the parsed tree."""
    found: dict[int, bytes] = {}
    todo: list[tuple[Message, bytes]] = [(message, raw)]
    while todo and len(todo) + len(found) < limit:
        part, entity = todo.pop()
        headers, body = _split_entity(entity)
        if part is not message and not _same_headers(headers, part, ("content-type", "content-transfer-encoding")):
            continue
        if part.get_content_maintype() == "message":
            inner = part.get_payload()
            first = inner[0] if isinstance(inner, list) and inner else None
            # Encoded (base64, quoted-printable) the parser could not read it: the decoded bytes are the
            # message. Otherwise the parser's reading of it must be these bytes'.
            if not _identity(part) or (isinstance(first, Message) and _same_headers(body, first)):
                found[id(part)] = body
            continue
        if not part.is_multipart():
            continue
        children = part.get_payload()
        boundary = part.get_boundary()
        if not isinstance(children, list) or boundary is None:
            continue
        spans = _children(body, boundary)
        if len(spans) != len(children):
            continue
        todo += [(c, s) for c, s in zip(children, spans, strict=True) if isinstance(c, Message)]
    return found
