"""Assemble one outbound mail as bytes: addresses, threading headers, loop and auto-reply markers, a
text body with an optional HTML alternative, and attachments. Pure: the caller supplies every value."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

# CRLF line ends, lines folded at 78, non-ASCII headers as RFC 2047 words: what relays expect.
POLICY = policy.SMTP.clone(max_line_length=78)


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


def _address(name: str, addr: str) -> Address:
    local, _, domain = addr.rpartition("@")
    # Names with line breaks would let a template or a client's name inject headers.
    return Address(display_name=" ".join(name.split()), username=local, domain=domain)


def compose(mail: Outgoing) -> bytes:
    msg = EmailMessage(policy=POLICY)
    msg["From"] = _address(mail.from_name, mail.from_addr)
    msg["To"] = [_address(n, a) for n, a in mail.to]
    if mail.cc:
        msg["Cc"] = [_address(n, a) for n, a in mail.cc]
    if mail.reply_to:
        msg["Reply-To"] = _address(mail.from_name, mail.reply_to)
    msg["Subject"] = " ".join(mail.subject.split())
    msg["Date"] = format_datetime(mail.date)
    msg["Message-ID"] = mail.message_id
    if mail.in_reply_to:
        msg["In-Reply-To"] = mail.in_reply_to
    if mail.references:
        msg["References"] = " ".join(mail.references)
    if mail.thread_index:
        msg["Thread-Index"] = mail.thread_index
        msg["Thread-Topic"] = " ".join(mail.thread_topic.split())
    if mail.automatic:
        msg["Auto-Submitted"] = "auto-replied" if mail.auto_replied else "auto-generated"
        msg["X-Auto-Response-Suppress"] = "All"
    if mail.loop_marker:
        msg["X-Loop"] = mail.loop_marker
    plain = mail.text.isascii() and all(len(line) < 900 for line in mail.text.splitlines())
    msg.set_content(mail.text, cte="7bit" if plain else "quoted-printable")
    if mail.html:
        msg.add_alternative(mail.html, subtype="html", cte="quoted-printable")
    for a in mail.attachments:
        maintype, _, subtype = a.content_type.partition("/")
        msg.add_attachment(a.data, maintype=maintype or "application", subtype=subtype or "octet-stream",
                           filename=a.filename)
    return msg.as_bytes()
