"""What happened to a ticket: the typed events every desk action and the mail pipeline's apply step
return. Notifications follow these (never table diffs). Light on imports: the configuration checks rule
overrides against :class:`EventKind`."""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from typing import Any


class EventKind(enum.StrEnum):
    TICKET_OPENED = "ticket_opened"
    CLIENT_REPLY = "client_reply"
    ADMIN_REPLY = "admin_reply"
    NOTE_ADDED = "note_added"
    OPTIONS_CHANGED = "options_changed"
    DEPARTMENT_CHANGED = "department_changed"
    ASSIGNED = "assigned"
    UNASSIGNED = "unassigned"
    FLAGGED = "flagged"
    CLOSED = "closed"
    AUTO_CLOSED = "auto_closed"
    ESCALATED = "escalated"
    FEEDBACK_REQUEST = "feedback_request"


EVENT_NAMES = tuple(k.value for k in EventKind)


@dataclass(frozen=True)
class Actor:
    """Who did it: a staff member (``staff_id``), a client (by address) or the system (a job)."""

    kind: str                      # staff | client | system
    email: str = ""
    name: str = ""
    staff_id: int | None = None
    username: str = ""
    is_admin: bool = False

    @property
    def label(self) -> str:
        """What the ticket log names: the username for staff, the address for a client."""
        return self.username or self.email or self.kind

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        return cls(kind="system", name=name, username=name)


@dataclass(frozen=True)
class Event:
    """One thing that happened to ticket ``ticket_id``. ``message_id`` is the ticket message it concerns
    (a reply, a note), ``staff_id`` the admin it is about (assigned, unassigned, flagged), ``mentioned``
    the admins a note names, ``changes`` field → (before, after) for option changes."""

    kind: EventKind
    ticket_id: int
    actor: Actor
    message_id: int | None = None
    staff_id: int | None = None
    mentioned: tuple[int, ...] = ()
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    notify: bool = True            # False: record only (e.g. a ticket opened with notifications off)
    client_notice: bool = True     # False: staff hear of it, the client was told otherwise (a closing reply)

    def to_json(self) -> str:
        """The event as the notification queue stores it (store/outbox.py: queue_events)."""
        data = asdict(self)
        data["kind"] = self.kind.value
        data["changes"] = {k: list(v) for k, v in self.changes.items()}
        return json.dumps(data, default=str, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Event:
        data = json.loads(text)
        return cls(kind=EventKind(data["kind"]), ticket_id=data["ticket_id"], actor=Actor(**data["actor"]),
                   message_id=data["message_id"], staff_id=data["staff_id"], mentioned=tuple(data["mentioned"]),
                   changes={k: (v[0], v[1]) for k, v in data["changes"].items()}, notify=data["notify"],
                   client_notice=data["client_notice"])
