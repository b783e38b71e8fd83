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

from maild.pipeline import charsets
from maild.pipeline import content as content_mod
from maild.pipeline.dsn import Report, read_report
from maild.pipeline.headers import addresses, decode_words, message_ids, one_message_id, single_author

# mail-parser logs a warning for every MIME type it has no special handling for: noise for us.
logging.getLogger("mailparser").setLevel(logging.ERROR)

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_RAW_HEADER = re.compile("[\udc80-\udcff]|\x1b(?:\\$[@B]|\\(I)")   # raw 8-bit bytes, or raw ISO-2022-JP


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
    envelope_sender: str = ""      # the mail's own record of it: an mbox ``From `` line, else Return-Path

    def header(self, name: str) -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else ""

    def author(self, envelope_from: str | None) -> tuple[str, str]:
        """(address, where it came from) of whom the mail is from and whom to answer: the From address
        (``from``); when there is no usable From (none, or one naming no address), the Reply-To
        (``reply-to``), then the envelope sender (``envelope``): ``envelope_from`` as received (SMTP, pipe),
        else the mail's own record of it (mbox ``From `` line, Return-Path). An unclear From (two
        addresses, a broken one) is no one, never replaced by another header's word."""
        if self.from_addr:
            return self.from_addr, "from"
        if self.from_unclear:
            return "", ""
        if len(self.reply_to) == 1:
            return self.reply_to[0][1], "reply-to"
        envelope = (envelope_from if envelope_from is not None else self.envelope_sender).strip().lower()
        return (envelope, "envelope") if envelope else ("", "")


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
    raw, repairs = repair_header_block(raw)   # the raw mail is kept as received; only its reading changes
    mail.notes += repairs
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
        mail.content.text = charsets.decode_text(raw, None)
    else:
        _fill(mail, message, raw)
    mail.dedupe_key = dedupe_key(mail)
    return mail


# A header line: a field name (printable ASCII but the colon), perhaps blanks (obsolete syntax), a colon.
_HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:")
MAX_STRAY_RUN = 20        # stray lines in a row that may still belong to the header block
MAX_HEADER_LINES = 5000
_BLANK_LINE = re.compile(rb"\n\r?\n")


def repair_header_block(raw: bytes) -> tuple[bytes, list[str]]:
    """The mail as a robust parser reads it, and notes of what was repaired. A line in the header block
    that is neither ``Name: value`` nor indented would end the block for the standard parser, and every
    header after it (From, Subject, Content-Type) would become body text. When what follows such a line
    (within a few lines) is still ``Name: value``, the line belongs to the block: an unindented
    continuation of the header before it, or, before the first header, a banner a gateway prepended (left
    out of the reading). Otherwise the body starts there, as before. An mbox ``From `` line stays first."""
    notes: list[str] = []
    bom = raw.startswith(b"\xef\xbb\xbf")
    if bom:  # a byte order mark some tools write before the first header
        raw = raw[3:]
        notes.append("header block repaired: a byte order mark before the first header left out")
    end = _BLANK_LINE.search(raw)   # the block ends at the first empty line in any case: read up to it
    head, body = (raw[:end.start()], raw[end.start():]) if end else (raw, b"")
    lines = head.split(b"\n", MAX_HEADER_LINES)
    out: list[bytes] = []
    i, n = 0, len(lines)
    if n and lines[0].startswith(b"From "):
        out.append(lines[0])
        i = 1
    previous = ""
    changed = False

    def blank(line: bytes) -> bool:
        return line in (b"", b"\r")

    while i < n and not blank(lines[i]):
        line = lines[i]
        if _HEADER_LINE.match(line):
            previous = line.split(b":", 1)[0].strip().decode("ascii", "replace")
            out.append(line)
            i += 1
            continue
        if line[:1] in (b" ", b"\t"):  # a continuation; before any header, one the parser skips itself
            out.append(line)
            i += 1
            continue
        if line.startswith(b"--"):
            break  # a MIME boundary (the sender left out the empty line before it): the body starts here
        j = i
        while j < n and j - i < MAX_STRAY_RUN and not blank(lines[j]) and not _HEADER_LINE.match(lines[j]) \
                and not lines[j].startswith(b"--"):
            j += 1
        if j >= n or not _HEADER_LINE.match(lines[j]):
            break  # no header follows: this is where the body starts (no empty line before it)
        stray = [charsets.decode_8bit(x.rstrip(b"\r")).strip()[:80] for x in lines[i:j]]
        if previous:
            out += [b" " + x for x in lines[i:j]]
            notes.append(f"header block repaired: {j - i} unindented line(s) after {previous} read as its"
                         f" continuation ({stray[0]!r})")
        else:
            notes.append(f"header block repaired: {j - i} line(s) before the first header left out"
                         f" ({stray[0]!r})")
        changed = True
        i = j
    if not changed:
        return raw, notes  # unchanged, but for a byte order mark
    return b"\n".join(out + lines[i:]) + body, notes


def _raw_bytes(value: object) -> bytes | None:
    """The bytes of a header value as the parser left it (8-bit bytes as surrogates) when they need
    decoding; None when there is nothing to decode (or it was decoded already)."""
    text = str(value)
    if not _RAW_HEADER.search(text):
        return None
    try:
        return text.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return None


def _header_text(value: object, hints: list[str]) -> str:
    """A raw header value as text: unfolded, and raw 8-bit bytes (RFC 6532 or plain wrong) decoded."""
    text = _FOLD.sub(" ", str(value))
    data = _raw_bytes(text)
    return text if data is None else charsets.decode_8bit(data, hints, detector=False)


def _parts(message: Message, limit: int = 200) -> list[Message]:
    """The message and its parts, not those of a forwarded message inside it (kept whole, read apart)."""
    found: list[Message] = []
    queue = [message]
    while queue and len(found) < limit:
        part = queue.pop(0)
        found.append(part)
        try:
            if part.is_multipart() and not part.get_content_type().startswith("message/"):
                queue += [p for p in part.get_payload() if isinstance(p, Message)]
        except Exception:
            continue
    return found


_WORD_CHARSET = re.compile(r"=\?([^?*\s]+)(?:\*[^?]*)?\?[bBqQ]\?")


def _charset_hints(parts: list[Message]) -> list[str]:
    """The charsets the message declares: its text parts', then its RFC 2047 words'."""
    found: list[str] = []
    for part in parts:
        try:
            charset = part.get_content_charset() if part.get_content_maintype() == "text" else None
        except Exception:
            charset = None
        if charset:
            found.append(charset)
    for part in parts[:1]:
        for _, value in part.raw_items():
            found += _WORD_CHARSET.findall(str(value))
    return [c for c in dict.fromkeys(c.lower() for c in found) if c not in ("us-ascii", "ascii", "utf-8")]


def _read_8bit_headers(parts: list[Message], hints: list[str], notes: list[str]) -> list[str]:
    """Raw 8-bit header text (a subject, a sender's name, a file name sent without RFC 2047) decoded in
    place, in the charset guessed for all of the message's such bytes at once: the body's declared charset
    first, then a detector (:mod:`maild.pipeline.charsets`). Returns the hints for the other headers."""
    raw = [data for part in parts for _, v in part.raw_items() if (data := _raw_bytes(v)) is not None]
    if not raw:
        return hints
    guessed = charsets.guess(b"\n".join(raw)[:64 * 1024], hints)
    if guessed is not None and guessed != "utf-8":
        notes.append(f"raw 8-bit header text read as {guessed}")
    order = [guessed, *hints] if guessed else hints
    for part in parts:
        items = list(part.raw_items())
        found = [_raw_bytes(v) for _, v in items]
        if not any(data is not None for data in found):
            continue
        fixed = [(k, v if data is None else charsets.decode_8bit(data, order, detector=False))
                 for (k, v), data in zip(items, found, strict=True)]
        try:
            for name in dict.fromkeys(k.lower() for k, _ in items):
                del part[name]
            for k, v in fixed:
                part[k] = v
        except Exception as exc:  # a header the library will not take back: keep reading the others
            notes.append(f"could not decode raw 8-bit headers of a part ({type(exc).__name__})")
    return order


def _envelope_sender(message: Message, headers: dict[str, list[str]]) -> str:
    """The envelope sender the mail itself records: an mbox/pipe ``From `` line, else Return-Path."""
    unixfrom = message.get_unixfrom() or ""
    candidates = [unixfrom[5:].split(" ", 1)[0] if unixfrom.startswith("From ") else ""]
    candidates += headers.get("return-path", [])[:1]
    for value in candidates:
        found = addresses([value])
        if len(found) == 1:
            return found[0][1]
    return ""


def _fill(mail: ParsedMail, message: Message, raw: bytes) -> None:
    parts = _parts(message)
    hints = _read_8bit_headers(parts, _charset_hints(parts), mail.notes)
    headers: dict[str, list[str]] = {}
    for name, value in message.raw_items():
        headers.setdefault(str(name).lower(), []).append(_header_text(value, hints))
    mail.headers = headers
    mail.subject = decode_words((headers.get("subject") or [""])[0])
    mail.from_name, mail.from_addr, problem = single_author(headers.get("from", []))
    if problem:
        mail.from_unclear = True
        mail.notes.append(f"{problem}; the sender is treated as unknown")
    elif not mail.from_addr and headers.get("from"):
        mail.notes.append(f"the From header names no address: {headers['from'][0][:200]!r}")
    mail.reply_to = addresses(headers.get("reply-to", []))
    mail.envelope_sender = _envelope_sender(message, headers)
    if not mail.from_addr and not mail.from_unclear and len(mail.reply_to) == 1 and mail.reply_to[0][0]:
        mail.from_name = mail.reply_to[0][0]  # the Reply-To is whom we answer (ParsedMail.author)
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
    except Exception as exc:  # a walker bug on strange MIME must not cost the headers: the body as text
        mail.notes.append(f"MIME content unreadable ({type(exc).__name__}: {exc}); body kept as raw text")
        end = _HEADER_END.search(raw)
        mail.content = content_mod.Content(text=charsets.decode_text(raw[end.end():] if end else b"", None))


def dedupe_key(mail: ParsedMail) -> str:
    """Same Message-ID and same body: the same message (an MTA retry, a second department, a re-import)."""
    if mail.message_id:
        basis = f"id\0{mail.message_id}\0{mail.body_hash}"
    else:
        basis = f"noid\0{mail.from_addr}\0{mail.header('date')}\0{mail.subject}\0{mail.body_hash}"
    return hashlib.sha256(basis.encode("utf-8", "surrogateescape")).hexdigest()
