"""What notifications read from the database, for many events at once: a worker's batch of messages or
one desk action, in a handful of queries whatever the number of events (each query is a trip to the
database thread, which costs more than the query itself)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from maild.desk.events import Event, EventKind
from maild.notify import rules as R
from maild.store import messages, people, staff, tickets
from maild.store.db import Database, Row
from maild.store.messages import Attachment, Message
from maild.store.tickets import Ticket

ABOUT_STAFF = (EventKind.FLAGGED, EventKind.ASSIGNED, EventKind.UNASSIGNED)


@dataclass
class Lookups:
    tickets: dict[int, Ticket] = field(default_factory=dict)
    staff: dict[int, list[Row]] = field(default_factory=dict)      # ticket id → candidates
    people: dict[int, list[Row]] = field(default_factory=dict)     # ticket id → client-side people
    messages: dict[int, Message] = field(default_factory=dict)
    files: dict[int, list[Attachment]] = field(default_factory=dict)   # message id → attachments
    threads: dict[int, tuple[list[str], str]] = field(default_factory=dict)


def named_staff(event: Event, ticket: Ticket, groups: Sequence[str]) -> set[int]:
    """The staff ids a rule row names directly for this event: flagged, assigned, mentioned."""
    about = event.staff_id if event.kind in ABOUT_STAFF else None
    flagged = about if event.kind is EventKind.FLAGGED else ticket.flagged_to
    assigned = about if event.kind in (EventKind.ASSIGNED, EventKind.UNASSIGNED) else ticket.assigned_to
    wanted: set[int] = set()
    if R.FLAGGED in groups and flagged:
        wanted.add(flagged)
    if R.ASSIGNED in groups and assigned:
        wanted.add(assigned)
    if R.MENTIONED in groups:
        wanted.update(event.mentioned)
    return wanted


async def load(db: Database, events: Sequence[Event], table: dict[EventKind, tuple[str, ...]]) -> Lookups:
    found = Lookups(tickets=await tickets.get_many(db, [e.ticket_id for e in events]))
    staff_tickets: set[int] = set()
    named: set[int] = set()
    people_tickets: dict[int, int | None] = {}
    for e in events:
        ticket, groups = found.tickets.get(e.ticket_id), table.get(e.kind, ())
        if ticket is None:
            continue
        if set(groups) & set(R.STAFF_GROUPS):
            staff_tickets.add(ticket.id)
            named |= named_staff(e, ticket, groups)
        if set(groups) & {R.OWNER, R.USERS, R.CONTACTS, R.CC}:
            people_tickets[ticket.id] = ticket.client_id
    for row in await staff.candidates(db, sorted(staff_tickets), sorted(named)):
        found.staff.setdefault(row["for_ticket"], []).append(row)
    for row in await people.ticket_people(db, sorted(people_tickets.items())):
        found.people.setdefault(row["for_ticket"], []).append(row)
    found.messages, found.files = await messages.with_attachments(
        db, [e.message_id for e in events if e.message_id is not None])
    found.threads = await messages.thread_ids(db, list(found.tickets))
    return found
