"""How a message ends: every spooled message gets exactly one of these in the mail import log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

# Reasons a message is blocked (DESIGN.md). Each guard names one of these.
UNKNOWN_RECIPIENT = "unknown_recipient"
TOO_LARGE = "too_large"
UNAUTHORISED_SENDER = "unauthorised_sender"
AUTO_REPLY = "auto_reply"
BOUNCE = "bounce"
LOOP = "loop"
BANNED = "banned"
RATE_LIMITED = "rate_limited"
CLOSED_TICKET = "closed_ticket"
UNREGISTERED = "unregistered"
BLOCKED_REASONS = (UNKNOWN_RECIPIENT, TOO_LARGE, UNAUTHORISED_SENDER, AUTO_REPLY, BOUNCE, LOOP, BANNED, RATE_LIMITED,
                   CLOSED_TICKET, UNREGISTERED)


@dataclass(frozen=True)
class Outcome:
    name: ClassVar[str] = ""
    ticket_id: int | None = None
    reason: str = ""
    detail: str = ""
    tid: str | None = None          # the ticket's public number, for logs and summaries

    @property
    def label(self) -> str:
        return label(self.name, self.reason)


@dataclass(frozen=True)
class NewTicket(Outcome):
    name: ClassVar[str] = "new_ticket"


@dataclass(frozen=True)
class Reply(Outcome):
    name: ClassVar[str] = "reply"


@dataclass(frozen=True)
class Note(Outcome):
    name: ClassVar[str] = "note"


@dataclass(frozen=True)
class Command(Outcome):
    """A staff member's mail of commands alone (``#close``, ``#priority high``): the ticket changed, no reply
    was posted. ``reason`` is ``rejected`` when a command was bad and nothing changed."""

    name: ClassVar[str] = "command"


@dataclass(frozen=True)
class Duplicate(Outcome):
    name: ClassVar[str] = "duplicate"


@dataclass(frozen=True)
class Blocked(Outcome):
    name: ClassVar[str] = "blocked"


@dataclass(frozen=True)
class Failed(Outcome):
    name: ClassVar[str] = "failed"


OUTCOME_NAMES = ("new_ticket", "reply", "note", "command", "duplicate", "blocked", "failed")


def label(name: str, reason: str) -> str:
    """How an outcome is counted and filtered: ``blocked:<reason>``, or the bare name."""
    return f"{name}:{reason}" if name == "blocked" else name
