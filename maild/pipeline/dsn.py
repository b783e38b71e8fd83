"""Delivery status notifications (RFC 3464): who could not be reached, how badly, and which of our
messages it was about. Pure: runs in the parse step."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.message import Message

from maild.pipeline.headers import message_ids

_STATUS = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")


@dataclass
class Recipient:
    address: str
    action: str = ""
    status: str = ""           # e.g. 5.1.1
    diagnostic: str = ""

    @property
    def permanent(self) -> bool:
        return self.status.startswith("5") or self.action == "failed" and not self.status.startswith("4")


@dataclass
class Report:
    report_type: str
    recipients: list[Recipient] = field(default_factory=list)
    original_ids: list[str] = field(default_factory=list)   # Message-IDs of the mail that bounced


def _address(value: str) -> str:
    # "rfc822; user@example.com" → user@example.com
    return value.split(";", 1)[-1].strip().strip("<>").lower()


def _fields(block: Message) -> dict[str, str]:
    return {k.lower(): " ".join(str(v).split()) for k, v in block.items()}


def read_report(message: Message) -> Report | None:
    """The delivery report inside ``message``, if it is one (multipart/report; report-type=delivery-status)."""
    if message.get_content_type() != "multipart/report":
        return None
    report = Report(report_type=str(message.get_param("report-type") or "").lower())
    parts = message.get_payload()
    if not isinstance(parts, list):
        return report
    for part in parts[:20]:
        if not isinstance(part, Message):
            continue
        ctype = part.get_content_type()
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            blocks = part.get_payload()
            if isinstance(blocks, list):
                for block in blocks[1:51]:  # the first block is per-message, the rest per-recipient
                    if isinstance(block, Message):
                        f = _fields(block)
                        addr = f.get("final-recipient") or f.get("original-recipient") or ""
                        if addr:
                            status = _STATUS.search(f.get("status", ""))
                            report.recipients.append(Recipient(
                                address=_address(addr), action=f.get("action", "").lower(),
                                status=status.group(0) if status else "", diagnostic=f.get("diagnostic-code", "")[:500],
                            ))
        elif ctype in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                headers = inner[0]
                report.original_ids += message_ids(headers.get("Message-ID", ""))
                report.original_ids += message_ids(headers.get("References", ""))[-3:]
            else:
                text = part.get_payload(decode=True) or b""
                found = re.search(rb"(?im)^message-id:\s*(<[^>\s]+>)", text if isinstance(text, bytes) else b"")
                if found:
                    report.original_ids.append(found.group(1).decode("ascii", "replace"))
    return report
