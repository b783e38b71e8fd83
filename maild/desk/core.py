"""The writers every ticket change goes through, inside a transaction the caller holds: the mail
pipeline's apply step and the desk's actions both call these, so "open a ticket" and "add a reply" each
exist once. Each returns the typed events that notifications follow.

Status rules (seeds): a new ticket is Open; a client reply sets Customer-Reply; a staff reply sets
Answered (unless the staff member chose another status); a reply to a Closed ticket reopens it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from maild.desk.events import Actor, Event, EventKind
from maild.store import messages, tickets
from maild.store.db import Database
from maild.store.tickets import Ticket

MAX_TID_TRIES = 50


class TicketNumbersExhausted(RuntimeError):
    """No free public ticket number after many draws: ``mail.ticket_id_digits`` is too small."""


@dataclass(frozen=True)
class StoredFile:
    """An attachment whose bytes are in the content store already (prepare step or desk upload)."""

    filename: str
    content_type: str
    size: int
    sha256: str
    content_id: str | None = None
    inline: bool = False


class Signature(Protocol):
    """A signature part of a mail (the parser's :class:`maild.pipeline.content.Signature`)."""

    @property
    def kind(self) -> str: ...          # smime | pgp
    @property
    def content_type(self) -> str: ...
    @property
    def filename(self) -> str | None: ...
    @property
    def size(self) -> int: ...


@dataclass
class NewMessage:
    """A message to put on a ticket: a client's mail, a staff reply or a private note."""

    kind: str                       # reply (client) | staff_reply | note
    author_email: str
    author_name: str
    badge: str
    body: str                       # what the thread shows
    body_full: str = ""             # the whole text before quote stripping (defaults to body)
    body_html: str | None = None
    subject: str = ""
    message_id: str = ""            # the mail's Message-ID: received, or the one our mail to the client carries
    direction: str = "in"           # in: a Message-ID we received; out: one we send
    inbound_id: int | None = None
    staff_id: int | None = None
    files: Sequence[StoredFile] = field(default_factory=tuple)
    signatures: Sequence[Signature] = field(default_factory=tuple)   # the mail's S/MIME or PGP signature parts


async def create_ticket(db: Database, *, digits: int, subject: str, priority: str, department_id: int,
                        client_email: str, client_name: str, client_id: int | None, stamp: str,
                        status: str = tickets.OPEN, root_message_id: str = "", by_staff: bool = False
                        ) -> tuple[int, str]:
    """Insert the ticket under a random public number of ``digits`` digits, never sequential; a number
    already taken is caught by the unique index and another one drawn."""
    low = 10 ** (digits - 1)
    for _ in range(MAX_TID_TRIES):
        tid = str(low + secrets.randbelow(9 * low))
        try:
            ticket_id = await tickets.create(
                db, tid=tid, subject=subject.strip() or "(no subject)", status=status, priority=priority,
                department_id=department_id, client_email=client_email, client_name=client_name,
                client_id=client_id, stamp=stamp, root_message_id=root_message_id, by_staff=by_staff)
        except tickets.TidTaken:
            continue
        return ticket_id, tid
    raise TicketNumbersExhausted(f"no free {digits}-digit ticket number after {MAX_TID_TRIES} tries;"
                                 " raise mail.ticket_id_digits")


async def add_message(db: Database, ticket_id: int, msg: NewMessage, stamp: str, has_root: bool = False) -> int:
    """The message, its attachments and signatures, and its Message-ID (for threading) on the ticket; the
    first message's Message-ID becomes the ticket's thread root (``has_root``: the ticket has one already,
    so no statement is spent on it)."""
    message_id = await messages.add(
        db, ticket_id=ticket_id, kind=msg.kind, author_email=msg.author_email, author_name=msg.author_name,
        badge=msg.badge, subject=msg.subject, body=msg.body, body_full=msg.body_full or msg.body,
        body_html=msg.body_html, message_id=msg.message_id, inbound_id=msg.inbound_id, staff_id=msg.staff_id,
        stamp=stamp)
    for f in msg.files:
        await messages.add_attachment(db, message_id=message_id, filename=f.filename, content_type=f.content_type,
                                      size=f.size, sha256=f.sha256, content_id=f.content_id, inline=f.inline)
    await add_signatures(db, message_id, msg.signatures)
    await tickets.add_mail_id(db, ticket_id, msg.message_id, msg.direction)
    if not has_root:
        await tickets.set_root(db, ticket_id, msg.message_id)
    return message_id


async def add_signatures(db: Database, message_id: int, signatures: Sequence[Signature]) -> None:
    """The mail's S/MIME or PGP signature parts, recorded on the message (not checked)."""
    for s in signatures:
        await messages.add_signature(db, message_id=message_id, kind=s.kind, content_type=s.content_type,
                                     filename=s.filename or "", size=s.size)


async def open_ticket(db: Database, *, actor: Actor, digits: int, department_id: int, department: str,
                      client_email: str, client_name: str, client_id: int | None, priority: str, first: NewMessage,
                      stamp: str, notify: bool = True, message_id_for: Callable[[int], str] | None = None,
                      **detail: Any) -> tuple[int, str, list[Event]]:
    """A new ticket with its first message; the ``ticket_opened`` event. ``message_id_for`` makes the first
    message's Message-ID from the new ticket's id (a staff member's first message is our mail)."""
    # The thread's root is the first message's Message-ID: known now for a client's mail, made from the new
    # ticket's id for a staff member's (set_root then, in add_message).
    ticket_id, tid = await create_ticket(db, digits=digits, subject=first.subject, priority=priority,
                                         department_id=department_id, client_email=client_email,
                                         client_name=client_name, client_id=client_id, stamp=stamp,
                                         root_message_id="" if message_id_for else first.message_id,
                                         by_staff=first.kind == "staff_reply")
    if message_id_for is not None:
        first = replace(first, message_id=message_id_for(ticket_id))
    message_id = await add_message(db, ticket_id, first, stamp,
                                   has_root=message_id_for is None and bool(first.message_id))
    await tickets.log_event(db, ticket_id, "opened", actor.label, stamp, department=department, **detail)
    return ticket_id, tid, [Event(EventKind.TICKET_OPENED, ticket_id, actor, message_id=message_id, notify=notify)]


async def add_reply(db: Database, ticket: Ticket, msg: NewMessage, actor: Actor, stamp: str,
                    status: str | None = None, **detail: Any) -> tuple[int, list[Event]]:
    """``msg`` as a reply on ``ticket``: a staff reply sets Answered (or ``status``), a client reply
    Customer-Reply; a Closed ticket reopens either way. Logs it; returns the message id and the event."""
    staff = msg.kind == "staff_reply"
    event = EventKind.ADMIN_REPLY if staff else EventKind.CLIENT_REPLY
    message_id = await add_message(db, ticket.id, msg, stamp, has_root=bool(ticket.root_message_id))
    if ticket.status == tickets.CLOSED and status != tickets.CLOSED:
        await tickets.log_event(db, ticket.id, "reopened", actor.label, stamp, by=event.value)
    new_status = status or (tickets.ANSWERED if staff else tickets.CUSTOMER_REPLY)
    await tickets.touch_reply(db, ticket.id, new_status, stamp, staff=staff, by_person=actor.kind != "system")
    await tickets.log_event(db, ticket.id, "staff_reply" if staff else "client_reply", actor.label, stamp,
                            previous_status=ticket.status, status=new_status, **detail)
    events = [Event(event, ticket.id, actor, message_id=message_id)]
    if new_status == tickets.CLOSED and ticket.status != tickets.CLOSED:
        # Closed with the reply: watchers hear of it; the client's copy of the reply says so (follow.py).
        events.append(Event(EventKind.CLOSED, ticket.id, actor, changes={"status": (ticket.status, new_status)},
                            client_notice=False))
    return message_id, events


async def add_note(db: Database, ticket: Ticket, msg: NewMessage, actor: Actor, mentioned: Sequence[int],
                   stamp: str, **detail: Any) -> tuple[int, list[Event]]:
    """A private note: never shown to or mailed to a client; the admins it mentions hear of it."""
    message_id = await add_message(db, ticket.id, msg, stamp, has_root=bool(ticket.root_message_id))
    await tickets.log_event(db, ticket.id, "note", actor.label, stamp, mentioned=list(mentioned), **detail)
    return message_id, [Event(EventKind.NOTE_ADDED, ticket.id, actor, message_id=message_id,
                              mentioned=tuple(mentioned))]
