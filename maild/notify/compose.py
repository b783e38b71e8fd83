"""Assemble one outbound mail as bytes: addresses, threading headers, loop and auto-reply markers, a text
body with an optional HTML alternative, and attachments. Pure: the caller supplies every value.

Written by hand rather than with ``email.message.EmailMessage``: the header registry parses every value it
is given again, which cost about 2.8 ms a mail and made notifications the pipeline's largest stage. The
output is plain RFC 5322/2045: CRLF line ends, headers folded under 78 characters where they can be,
RFC 2047 words for non-ASCII names and subjects, RFC 2231 for non-ASCII file names, quoted-printable text,
base64 attachments. tests/test_compose.py parses the result back with the standard library.
"""

from __future__ import annotations

import base64
import quopri
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import encode_rfc2231, format_datetime, formataddr

CRLF = "\r\n"
WIDTH = 78


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass
class Outgoing:
    from_name: str
    from_addr: str
    to: Sequence[tuple[str, str]]                    # (name, address)
    subject: str
    text: str
    message_id: str
    date: datetime
    reply_to: str = ""
    cc: Sequence[tuple[str, str]] = ()
    html: str | None = None
    in_reply_to: str = ""
    references: Sequence[str] = ()
    thread_index: str | None = None                  # Outlook's conversation index, when the client sent one
    thread_topic: str = ""
    automatic: bool = True                           # Auto-Submitted + X-Auto-Response-Suppress
    auto_replied: bool = False                       # a direct answer to the client's mail (RFC 3834 3.1.7)
    loop_marker: str = ""
    attachments: Sequence[Attachment] = field(default_factory=tuple)


_MSGID = re.compile(r"^<[\x21-\x3b\x3d\x3f-\x7e]{1,250}>$")


def ascii_address(address: str) -> str | None:
    """``address`` as it can go in an ASCII envelope and header: the domain as IDNA (``exämple.net`` →
    ``xn--exmple-cua.net``); None when the local part is not ASCII (that needs SMTPUTF8, RFC 6531)."""
    local, sep, domain = address.strip().rpartition("@")
    if not sep or not local or not domain or not local.isascii() or any(c in local for c in " \r\n<>,;"):
        return None
    try:
        domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        return None
    return f"{local}@{domain.lower()}"


def message_ids(ids: Sequence[str]) -> list[str]:
    """The Message-IDs that can go in In-Reply-To/References: ``<...>`` of printable ASCII, nothing else
    (a client's broken or 8-bit id would make our header invalid)."""
    return [i for i in ids if _MSGID.match(i)]


def _oneline(text: str) -> str:
    """No line breaks in a header value: a template or a client's name must not add headers."""
    return " ".join(text.split())


def _fold_words(name: str, words: Sequence[str]) -> str:
    """``Name: w1 w2 ...`` folded at spaces so that lines stay under WIDTH where a word allows."""
    lines, line = [], f"{name}:"
    for word in words:
        if len(line) + 1 + len(word) > WIDTH and line != f"{name}:":
            lines.append(line)
            line = ""
        line += f" {word}"
    lines.append(line)
    return CRLF.join(lines)


def text_header(name: str, value: str) -> str:
    value = _oneline(value)
    if value.isascii() and all(len(w) <= 76 for w in value.split(" ")):
        return _fold_words(name, value.split(" ")) if value else f"{name}: "
    return _fold_words(name, _encoded_words(value))   # non-ASCII, or a word too long to fold


def _encoded_words(value: str, room: int = 45) -> list[str]:
    """RFC 2047 base64 words of at most ``room`` UTF-8 bytes each (75 characters a word), never splitting
    a character: ``email.header.Header`` does the same, several times slower."""
    words, chunk = [], b""
    for ch in value:
        data = ch.encode("utf-8")
        if len(chunk) + len(data) > room:
            words.append(chunk)
            chunk = b""
        chunk += data
    words.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(w).decode('ascii')}?=" for w in words if w]


def address_header(name: str, addresses: Sequence[tuple[str, str]]) -> str:
    """Addresses (ASCII, see :func:`ascii_address`), with display names quoted or as RFC 2047 words; none at
    all is the empty group ``undisclosed-recipients:;``."""
    if not addresses:
        return f"{name}: undisclosed-recipients:;"
    words: list[str] = []
    for i, (display, addr) in enumerate(addresses):
        display = _oneline(display)
        tail = "," if i < len(addresses) - 1 else ""
        if display.isascii() and len(display) <= 76:
            words.append(formataddr((display, addr)) + tail)
        else:
            words += _encoded_words(display) + [f"<{addr}>{tail}"]
    return _fold_words(name, words)


def _text_part(subtype: str, text: str) -> tuple[list[str], bytes]:
    body = text.replace("\r\n", "\n").replace("\r", "\n")
    if not body.endswith("\n"):
        body += "\n"
    if body.isascii() and all(len(line) < 900 for line in body.split("\n")):
        return [f'Content-Type: text/{subtype}; charset="us-ascii"', "Content-Transfer-Encoding: 7bit"], \
            body.replace("\n", CRLF).encode("ascii")
    encoded = quopri.encodestring(body.encode("utf-8")).replace(b"\n", b"\r\n")
    return [f'Content-Type: text/{subtype}; charset="utf-8"', "Content-Transfer-Encoding: quoted-printable"], encoded


def _attachment_part(a: Attachment) -> tuple[list[str], bytes]:
    name = _oneline(a.filename) or "attachment"
    if name.isascii() and len(name) <= 200:
        param = 'filename="{}"'.format(name.replace("\\", "\\\\").replace('"', '\\"'))
    else:
        # RFC 2231 with continuations (filename*0*=, filename*1*=, ...), so no line grows past 78 characters.
        value = encode_rfc2231(name, "utf-8")
        chunks, i = [], 0
        while i < len(value):
            end = min(i + 60, len(value))
            while end < len(value) and "%" in value[end - 2:end]:   # never split a %XX escape
                end -= 1
            chunks.append(value[i:end])
            i = end
        param = f";{CRLF} ".join(f"filename*{n}*={c}" for n, c in enumerate(chunks))
    ctype = a.content_type if "/" in a.content_type and a.content_type.isascii() else "application/octet-stream"
    data = base64.encodebytes(a.data).replace(b"\n", b"\r\n")
    return [f"Content-Type: {ctype}", "Content-Transfer-Encoding: base64",
            f"Content-Disposition: attachment;{CRLF} {param}"], data


def _multipart(subtype: str, parts: Sequence[tuple[list[str], bytes]]) -> tuple[list[str], bytes]:
    boundary = "=_" + secrets.token_hex(16)    # "=_" never occurs in quoted-printable or base64
    out = bytearray()
    for headers, body in parts:
        out += f"--{boundary}{CRLF}{CRLF.join(headers)}{CRLF}{CRLF}".encode()
        out += body + b"\r\n"   # this CRLF belongs to the delimiter (RFC 2046 5.1.1): the body keeps its own
    out += f"--{boundary}--{CRLF}".encode()
    return [f'Content-Type: multipart/{subtype};{CRLF} boundary="{boundary}"'], bytes(out)


Part = tuple[list[str], bytes]


def body(mail: Outgoing) -> Part:
    """The MIME body (its content headers and bytes): the same for every copy of a rendering."""
    part = _text_part("plain", mail.text)
    if mail.html:
        part = _multipart("alternative", [part, _text_part("html", mail.html)])
    if mail.attachments:
        part = _multipart("mixed", [part, *(_attachment_part(a) for a in mail.attachments)])
    return part


def compose(mail: Outgoing, prepared: Part | None = None) -> bytes:
    """The whole message; ``prepared`` is :func:`body` of an earlier copy with the same content."""
    head = [address_header("From", [(mail.from_name, mail.from_addr)]), address_header("To", mail.to)]
    if mail.cc:
        head.append(address_header("Cc", mail.cc))
    if mail.reply_to:
        head.append(address_header("Reply-To", [(mail.from_name, mail.reply_to)]))
    head += [text_header("Subject", mail.subject), f"Date: {format_datetime(mail.date)}",
             f"Message-ID: {mail.message_id}"]
    if message_ids([mail.in_reply_to]):
        head.append(f"In-Reply-To: {mail.in_reply_to}")
    if references := message_ids(mail.references):
        head.append(_fold_words("References", references))
    if mail.thread_index and len(mail.thread_index) <= 900:
        head += [f"Thread-Index: {mail.thread_index}", text_header("Thread-Topic", mail.thread_topic)]
    if mail.automatic:
        head += [f"Auto-Submitted: {'auto-replied' if mail.auto_replied else 'auto-generated'}",
                 "X-Auto-Response-Suppress: All"]
    if mail.loop_marker:
        head.append(f"X-Loop: {mail.loop_marker}")
    head.append("MIME-Version: 1.0")
    headers, data = prepared or body(mail)
    return (CRLF.join(head + headers) + CRLF + CRLF).encode("ascii") + data
