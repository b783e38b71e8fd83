"""Message content: walk the MIME tree into body text, HTML and attachment parts.

Decoding never raises: an unknown or wrong charset falls back to a best guess, and a part that cannot be
decoded at all becomes an attachment rather than being lost.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from email.message import Message

from maild.pipeline import rawparts, transfer
from maild.pipeline.charsets import decode_text

MAX_DEPTH = 50
MAX_PARTS = 2000

# Charsets (the declared one's supersets, line-by-line fallback, Japanese repairs) live in charsets.py.


@dataclass
class Part:
    """A non-body MIME part, decoded from its transfer encoding, not yet judged or named safely."""

    filename: str | None
    content_type: str
    data: bytes
    content_id: str | None = None
    inline: bool = False
    size: int = 0
    sha256: str | None = None      # set once the bytes are in the file store (and ``data`` emptied)
    dropped: str | None = None     # why the attachment policy refused it (then it is not stored)
    by_type: bool = False          # refused for its type alone (kept, with its bytes, for a staff member)


# Detached signature parts: recorded on the message as signatures, never judged as attachments.
SIGNATURE_TYPES = {"application/pkcs7-signature": "smime", "application/x-pkcs7-signature": "smime",
                   "application/pgp-signature": "pgp"}


@dataclass(frozen=True)
class Signature:
    """An S/MIME or PGP signature part: what it is, not its bytes (the raw mail keeps them, and with them
    the exact signed bytes a check needs)."""

    kind: str                      # smime | pgp
    content_type: str
    filename: str | None
    size: int


@dataclass
class Content:
    text: str = ""
    html: str | None = None
    safe_html: str | None = None   # the HTML as the desk may show it (nh3: no scripts, handlers, styles)
    parts: list[Part] = field(default_factory=list)
    signatures: list[Signature] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


_BLOCK_TAG = re.compile(r"<\s*/?\s*(?:p|div|br|tr|li|h[1-6]|blockquote|pre|hr|table|ul|ol)\b[^<>]*>", re.I)
_LI_TAG = re.compile(r"<\s*li\b[^<>]*>", re.I)
_ANY_TAG = re.compile(r"<[^<>]*>")      # [^<>]: a stray '<' ends the attempt, so this stays linear
_HIDDEN = ("script", "style", "head", "title")


def _cut_between(text: str, start: str, end: str) -> str:
    """Remove every ``start``…``end`` span (case-insensitive), in one linear pass; an unterminated one
    removes the rest. (Regexes and html.parser are quadratic on unterminated comments.)"""
    low = text.lower()
    out, pos = [], 0
    while True:
        i = low.find(start, pos)
        if i < 0:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos:i])
        j = low.find(end, i + len(start))
        if j < 0:
            return "".join(out)
        pos = j + len(end)


def html_to_text(markup: str) -> str:
    """A readable text rendering of HTML for the thread, in linear time on any input."""
    text = _cut_between(markup, "<!--", "-->")
    for tag in _HIDDEN:
        text = _cut_between(text, f"<{tag}", f"</{tag}>")
    text = _LI_TAG.sub("\n- ", text)
    text = _BLOCK_TAG.sub("\n", text)
    text = _ANY_TAG.sub(" ", text)
    text = html.unescape(text)
    lines = (re.sub(r"[ \t\r\f\v\xa0]+", " ", line).strip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


URL_SCHEMES = {"http", "https", "mailto", "cid"}   # cid: inline images stay linked to their attachment


def sanitise_html(markup: str) -> str | None:
    """HTML safe to display: nh3 (ammonia) keeps formatting and drops scripts, event handlers, forms and
    dangerous URLs."""
    try:
        import nh3

        return nh3.clean(markup, url_schemes=URL_SCHEMES, link_rel="noopener noreferrer nofollow")
    except Exception:  # no rendering beats an unsafe one
        return None


def _payload(part: Message, notes: list[str] | None = None) -> bytes:
    """The part's bytes. Base64 and quoted-printable are decoded as far as they go, the way mail clients do
    (:mod:`maild.pipeline.transfer`), and each repair is added to ``notes``; other encodings (identity,
    uuencode) are the standard library's."""
    # The parser's own string, where raw 8-bit bytes are surrogates: get_payload() would read them in the
    # part's charset (lossily, and a TypeError for an RFC 2231 charset*= parameter), doubling each such byte
    # once encoded back. A message built from str (not parsed from bytes) has real text there.
    raw = getattr(part, "_payload", None)
    if not isinstance(raw, str):
        return b""
    try:
        body = raw.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        body = raw.encode("utf-8", "surrogateescape")
    cte = part.get("content-transfer-encoding")
    decoded = transfer.decode(body, str(cte)) if cte is not None else None
    if decoded is not None:
        data, repairs = decoded
        if repairs and notes is not None:
            name = _filename(part)
            notes.append(f"{str(cte).strip().lower()} of part {name or part.get_content_type()!r} repaired:"
                         f" {'; '.join(repairs)}")
        return data
    try:
        std = part.get_payload(decode=True)
    except Exception:
        std = None
    return std if isinstance(std, bytes) else body


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if name is None:
        return None
    from maild.pipeline.headers import decode_words

    return decode_words(str(name))


def _content_id(part: Message) -> str | None:
    cid = part.get("Content-ID")
    return str(cid).strip().strip("<>") or None if cid else None


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception:
        return None


# Anything but whitespace and format characters (category Cf: soft hyphen, zero-width space and joiners,
# bidi marks, BOM, ...), as one class so that a blank test of a huge part runs at regex speed.
_VISIBLE = re.compile("[^\\s\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f"
                      "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
                      "\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
                      "\U000e0020-\U000e007f]")


def _blank(text: str) -> bool:
    """Nothing a reader would see: whitespace and format characters (zero-width space, BOM) only."""
    return _VISIBLE.search(text) is None


def _signature_kind(part: Message, ctype: str) -> str | None:
    kind = SIGNATURE_TYPES.get(ctype)
    if kind is None and ctype == "application/octet-stream" and (_filename(part) or "").lower().endswith(".p7s"):
        kind = "smime"  # a detached S/MIME signature some clients send untyped
    return kind


class _Walker:
    def __init__(self, root: Message, raw: bytes | None) -> None:
        self.content = Content()
        self.texts: list[str] = []
        self.htmls: list[str] = []
        self.count = 0
        self.truncated = False
        self.root, self.raw = root, raw
        self.bodies: dict[int, bytes] | None = None   # raw bytes of message/* parts, found when first needed

    def attach(self, part: Message, data: bytes | None = None, ctype: str | None = None) -> None:
        payload = _payload(part, self.content.notes) if data is None else data
        self.content.parts.append(
            Part(
                filename=_filename(part),
                content_type=ctype or part.get_content_type(),
                data=payload,
                content_id=_content_id(part),
                inline=_disposition(part) == "inline",
                size=len(payload),
            )
        )

    def walk(self, part: Message, depth: int = 0) -> None:
        self.count += 1
        if depth > MAX_DEPTH or self.count > MAX_PARTS:
            if not self.truncated:
                self.truncated = True
                self.content.notes.append(f"MIME structure truncated: parts deeper than {MAX_DEPTH} levels or past"
                                          f" the first {MAX_PARTS} were not read (the raw mail keeps them)")
            return
        ctype = part.get_content_type()
        disposition = _disposition(part)
        if ctype == "message/rfc822" or (ctype.startswith("message/") and part.is_multipart()):
            # A forwarded message is kept whole, as an .eml attachment.
            self.attach(part, data=self._message_bytes(part), ctype="message/rfc822")
            return
        if part.is_multipart():
            children = part.get_payload()
            if not isinstance(children, list):
                return
            if ctype == "multipart/alternative":
                self._alternative(children, depth)
            else:
                for child in children:
                    if isinstance(child, Message):
                        self.walk(child, depth + 1)
            return
        kind = _signature_kind(part, ctype)
        if kind is not None:
            size = len(_payload(part, self.content.notes))
            self.content.signatures.append(Signature(kind, ctype, _filename(part), size))
            return
        is_body = disposition != "attachment" and not _filename(part)
        if is_body and ctype == "text/plain":
            self.texts.append(self.text_of(part))
        elif is_body and ctype == "text/html":
            self.htmls.append(self.text_of(part))
        else:
            self.attach(part)

    def text_of(self, part: Message) -> str:
        return decode_text(_payload(part, self.content.notes), part.get_content_charset())

    def _message_bytes(self, part: Message) -> bytes:
        """A forwarded message's own bytes, line endings and header folding untouched, so its DKIM and
        S/MIME signatures still verify; flattened again only where the raw mail and the parsed tree
        disagree (malformed MIME), and then the note says so."""
        if self.raw is not None:
            if self.bodies is None:
                try:
                    self.bodies = rawparts.message_bodies(self.root, self.raw)
                except Exception:  # malformed mail must not stop the message: flatten as before
                    self.bodies = {}
            body = self.bodies.get(id(part))
            if body is not None:
                cte = part.get("content-transfer-encoding")
                decoded = transfer.decode(body, str(cte)) if cte is not None else None
                if decoded is None:
                    return body
                if decoded[1]:
                    self.content.notes.append(f"{str(cte).strip().lower()} of a forwarded message repaired:"
                                              f" {'; '.join(decoded[1])}")
                return decoded[0]
            self.content.notes.append("a forwarded message was flattened again (its bytes could not be told"
                                      " apart in the malformed MIME): its signatures may not verify")
        inner = part.get_payload()
        try:
            first = inner[0] if isinstance(inner, list) and inner else None
            return first.as_bytes() if isinstance(first, Message) else _payload(part, self.content.notes)
        except Exception:  # a malformed nested message cannot be flattened again: keep what we can
            return _payload(part, self.content.notes)

    def _alternative(self, children: list, depth: int) -> None:
        # Prefer the plain text of the alternatives, unless it is blank (some clients send an empty one
        # beside the real HTML): then the HTML's, rendered. Keep the HTML one for display.
        messages = [c for c in children[:MAX_PARTS] if isinstance(c, Message)]
        plain = [c for c in messages if c.get_content_type() == "text/plain"]
        htmls = [c for c in messages if c.get_content_type() == "text/html"]
        rest = [c for c in messages if c.get_content_type() not in ("text/plain", "text/html")]
        text_at, html_at = len(self.texts), len(self.htmls)
        text = self.text_of(plain[-1]) if plain else None
        if text is not None and not _blank(text):
            self.texts.append(text)
        if htmls:
            self.htmls.append(self.text_of(htmls[-1]))
        for child in rest:  # e.g. multipart/related holding the HTML and its images
            self.walk(child, depth + 1)
        if text is not None and _blank(text) and len(self.htmls) > html_at:
            rendered = html_to_text("\n".join(self.htmls[html_at:]))
            if not _blank(rendered):
                self.texts.insert(text_at, rendered)


def extract(message: Message, raw: bytes | None = None) -> Content:
    """The body text (plain preferred, else rendered from HTML), the HTML, every other part and the
    signature parts. With ``raw``, the bytes ``message`` was parsed from, forwarded messages keep theirs."""
    walker = _Walker(message, raw)
    walker.walk(message)
    content = walker.content
    if walker.htmls:
        content.html = "\n".join(walker.htmls)
        content.safe_html = sanitise_html(content.html)
    texts = [t for t in walker.texts if not _blank(t)]
    if texts:
        content.text = "\n\n".join(_lines(t).strip("\n") for t in texts)
    elif content.html is not None:
        content.text = html_to_text(content.html)  # its lines end in LF already
    content.text = content.text.replace("\x00", "")
    return content


def _lines(text: str) -> str:
    """CRLF (SMTP) and lone CR (old Mac mail) line ends to LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")
