"""Parse raw bytes into a :class:`ParsedMail`: mail-parser over the standard ``email`` package.

Pure and CPU-bound: the worker runs it in a thread, outside any database transaction. It never raises:
when mail-parser gives up, the standard parser's result is used; when that fails too, the message is
kept as an unparsed blob and the note says why.
"""

from __future__ import annotations

import email
import hashlib
import logging
import re
from dataclasses import dataclass, field
from email.message import Message

from maild.pipeline import content as content_mod
from maild.pipeline.dsn import Report, read_report
from maild.pipeline.headers import addresses, decode_words, message_ids, one_message_id, single_author

# mail-parser logs a warning for every MIME type it has no special handling for: noise for us.
logging.getLogger("mailparser").setLevel(logging.ERROR)

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_SURROGATE = re.compile("[\udc80-\udcff]")


@dataclass
class ParsedMail:
    subject: str = ""
    from_addr: str = ""
    from_unclear: bool = False     # a From header that names no one for sure (see headers.single_author)
    from_name: str = ""
    reply_to: list[tuple[str, str]] = field(default_factory=list)
    to: list[tuple[str, str]] = field(default_factory=list)
    cc: list[tuple[str, str]] = field(default_factory=list)
    delivered_to: list[str] = field(default_factory=list)
    message_id: str = ""
    in_reply_to: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    priority: str | None = None
    headers: dict[str, list[str]] = field(default_factory=dict)
    content: content_mod.Content = field(default_factory=content_mod.Content)
    body_hash: str = ""
    dedupe_key: str = ""
    notes: list[str] = field(default_factory=list)
    report: Report | None = None   # a delivery status notification, when the mail is one

    def header(self, name: str) -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else ""


def body_hash(raw: bytes) -> str:
    """Hash of the body only, line endings normalised: the same mail through two paths hashes alike."""
    m = _HEADER_END.search(raw)
    body = raw[m.end():] if m else b""
    return hashlib.sha256(body.replace(b"\r\n", b"\n").rstrip()).hexdigest()


def _priority(headers: dict[str, list[str]]) -> str | None:
    xp = (headers.get("x-priority") or [""])[0].strip()[:1]
    if xp in ("1", "2"):
        return "High"
    if xp in ("4", "5"):
        return "Low"
    imp = ((headers.get("importance") or headers.get("priority") or [""])[0]).strip().lower()
    if imp in ("high", "urgent"):
        return "High"
    if imp in ("low", "non-urgent"):
        return "Low"
    return None


def _with_mailparser(raw: bytes) -> tuple[Message, list[str]]:
    import mailparser

    parsed = mailparser.MailParser.from_bytes(raw)
    defects = sorted(str(c) for c in (parsed.defects_categories or ()))
    return parsed.message, defects


def parse(raw: bytes) -> ParsedMail:
    mail = ParsedMail(body_hash=body_hash(raw))
    message: Message | None = None
    try:
        message, defects = _with_mailparser(raw)
        if defects:
            mail.notes.append("defects: " + ", ".join(defects))
    except Exception as exc:  # mail-parser trips over some malformed MIME; the stdlib is more lenient
        mail.notes.append(f"mail-parser failed ({type(exc).__name__}: {exc}); used the standard parser")
        try:
            message = email.message_from_bytes(raw)
        except Exception as exc2:
            mail.notes.append(f"unparseable: {type(exc2).__name__}: {exc2}")
    if message is None:
        mail.content.text = content_mod.decode_text(raw, None)
    else:
        _fill(mail, message, raw)
    mail.dedupe_key = dedupe_key(mail)
    return mail


def _header_text(value: object) -> str:
    """A raw header value as text: unfolded, and raw 8-bit bytes (RFC 6532 or plain wrong) decoded."""
    text = _FOLD.sub(" ", str(value))
    if _SURROGATE.search(text):
        text = content_mod.decode_text(text.encode("ascii", "surrogateescape"), None)
    return text


def _fill(mail: ParsedMail, message: Message, raw: bytes) -> None:
    headers: dict[str, list[str]] = {}
    for name, value in message.raw_items():
        headers.setdefault(str(name).lower(), []).append(_header_text(value))
    mail.headers = headers
    mail.subject = decode_words((headers.get("subject") or [""])[0])
    mail.from_name, mail.from_addr, problem = single_author(headers.get("from", []))
    if problem:
        mail.from_unclear = True
        mail.notes.append(f"{problem}; the sender is treated as unknown")
    mail.reply_to = addresses(headers.get("reply-to", []))
    mail.to = addresses(headers.get("to", []))
    mail.cc = addresses(headers.get("cc", []))
    mail.delivered_to = [a for _, a in addresses(headers.get("delivered-to", []) +
                                                 headers.get("x-original-to", []))]
    mail.message_id = one_message_id((headers.get("message-id") or [""])[0])
    mail.in_reply_to = message_ids(" ".join(headers.get("in-reply-to", [])))
    mail.references = message_ids(" ".join(headers.get("references", [])))
    mail.priority = _priority(headers)
    try:
        mail.report = read_report(message)
    except Exception as exc:  # a broken report is still a message; the bounce guard sees the content type
        mail.notes.append(f"unreadable delivery report: {type(exc).__name__}")
    try:
        mail.content = content_mod.extract(message, raw)  # raw: forwarded mail kept byte-exact
        mail.notes += mail.content.notes
    except RecursionError:
        mail.notes.append("MIME structure too deep; body kept as raw text")
        mail.content = content_mod.Content(text="")


def dedupe_key(mail: ParsedMail) -> str:
    """Same Message-ID and same body: the same message (an MTA retry, a second department, a re-import)."""
    if mail.message_id:
        basis = f"id\0{mail.message_id}\0{mail.body_hash}"
    else:
        basis = f"noid\0{mail.from_addr}\0{mail.header('date')}\0{mail.subject}\0{mail.body_hash}"
    return hashlib.sha256(basis.encode("utf-8", "surrogateescape")).hexdigest()
