"""Changing a ticket's options (seed: Options tab, assignment, flags, CC recipients, associated client):
what changed becomes typed events — department_changed, assigned/unassigned, flagged, closed, and one
options_changed for the rest — each with a ticket_log row naming the actor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from maild.desk.errors import Invalid, NotFound
from maild.desk.events import Actor, Event, EventKind
from maild.store import people, staff, tickets
from maild.store.tickets import Ticket

if TYPE_CHECKING:
    from maild.desk.desk import Desk


@dataclass
class Options:
    """What to change; None leaves a field as it is."""

    status: str | None = None
    priority: str | None = None
    department: str | None = None
    subject: str | None = None
    assign: str | None = None          # a username
    unassign: bool = False
    flag: str | None = None            # a username
    unflag: bool = False
    cc_add: Sequence[str] = field(default_factory=tuple)
    cc_remove: Sequence[str] = field(default_factory=tuple)
    client: str | None = None          # an account name; "" removes the association
    tags_add: Sequence[str] = field(default_factory=tuple)
    tags_remove: Sequence[str] = field(default_factory=tuple)
    service: str | None = None         # the related service (free text); "" removes it


def parse_status(value: str) -> str:
    for s in tickets.STATUSES:
        if s.lower() == value.strip().lower() or s.lower().replace("-", " ") == value.strip().lower():
            return s
    raise Invalid(f"status {value!r}: expected one of {', '.join(tickets.STATUSES)}")


async def _staff_id(desk: Desk, username: str, department_id: int) -> tuple[int, str]:
    """An admin, or staff of the department: nobody else may be given (or flagged) its tickets."""
    rows = await staff.with_access(desk.db, [username], department_id)
    if not rows:
        if await staff.by_username(desk.db, username) is None:
            raise NotFound(f"no staff member {username!r}")
        raise Invalid(f"{username} does not work in the ticket's department; an admin can add it"
                      f" (ticketd staff set {username} --departments ...)")
    return rows[0].id, rows[0].username


async def apply_options(desk: Desk, actor: Actor, ticket: Ticket, opts: Options, stamp: str) -> list[Event]:
    from maild.desk.desk import parse_priority

    db, tid = desk.db, ticket.id
    columns: dict[str, Any] = {}
    other: dict[str, tuple[Any, Any]] = {}       # → one options_changed event
    events: list[Event] = []

    if opts.subject is not None and opts.subject.strip() != ticket.subject:
        if not opts.subject.strip():
            raise Invalid("a ticket needs a subject")
        columns["subject"] = opts.subject.strip()
        other["subject"] = (ticket.subject, columns["subject"])
    if opts.priority is not None and (p := parse_priority(opts.priority)) != ticket.priority:
        columns["priority"] = p
        other["priority"] = (ticket.priority, p)
    closing = False
    if opts.status is not None and (s := parse_status(opts.status)) != ticket.status:
        columns["status"] = s
        if s == tickets.CLOSED:
            closing = True
        else:
            other["status"] = (ticket.status, s)
    if opts.department is not None:
        dept_id, dept_name = desk.department_id(opts.department)
        if dept_id != ticket.department_id:
            columns["department_id"] = dept_id
            events.append(Event(EventKind.DEPARTMENT_CHANGED, tid, actor,
                                changes={"department": (ticket.department, dept_name)}))
    department = columns.get("department_id", ticket.department_id)   # where the ticket ends up
    if opts.assign is not None or opts.unassign:
        new_id, new_name = await _staff_id(desk, opts.assign, department) if opts.assign else (None, "")
        old_id = ticket.assigned_to
        if new_id != old_id:
            columns["assigned_to"] = new_id
            if old_id is not None:
                events.append(Event(EventKind.UNASSIGNED, tid, actor, staff_id=old_id,
                                    changes={"assigned": (ticket.assigned_username, new_name or None)}))
            if new_id is not None:
                events.append(Event(EventKind.ASSIGNED, tid, actor, staff_id=new_id,
                                    changes={"assigned": (ticket.assigned_username, new_name)}))
    if opts.flag is not None or opts.unflag:
        new_id, new_name = await _staff_id(desk, opts.flag, department) if opts.flag else (None, "")
        if new_id != ticket.flagged_to:
            columns["flagged_to"] = new_id
            change = (ticket.flagged_username, new_name or None)
            if new_id is not None:  # flagging yourself sends nothing: the actor never gets their own mail
                events.append(Event(EventKind.FLAGGED, tid, actor, staff_id=new_id, changes={"flagged": change}))
            else:
                other["flagged"] = change
    if opts.service is not None and " ".join(opts.service.split())[:200] != ticket.related_service:
        columns["related_service"] = " ".join(opts.service.split())[:200]
        other["service"] = (ticket.related_service or None, columns["related_service"] or None)
    if opts.client is not None:
        account = await people.client_by_name(db, opts.client) if opts.client.strip() else None
        if opts.client.strip() and account is None:
            raise NotFound(f"no client account {opts.client!r} (ticketd clients list)")
        new_client = account["id"] if account is not None else None
        if new_client != ticket.client_id:
            columns["client_id"] = new_client
            other["client"] = (ticket.client_id, opts.client.strip() or None)
    added = [people.normalise_address(a) for a in opts.cc_add]
    if any(not a for a in added):
        raise Invalid(f"not an email address among --cc-add {', '.join(opts.cc_add)}")
    removed = [people.normalise_address(a) for a in opts.cc_remove]
    if columns:
        await tickets.update(db, tid, stamp, by_person=actor.kind != "system", **columns)
    if added or removed:
        cc_before = {r["address"]: r["state"] for r in await people.cc_list(db, tid)}
        await people.add_cc(db, tid, added, state="confirmed", added_by=actor.label)  # staff confirm pending ones
        await people.remove_cc(db, tid, removed)
        cc_after = {r["address"]: r["state"] for r in await people.cc_list(db, tid)}
        if cc_after != cc_before:
            other["cc"] = (_cc_text(cc_before), _cc_text(cc_after))
            if not columns and actor.kind != "system":
                await tickets.touch_change(db, tid, stamp)
    if opts.tags_add or opts.tags_remove:
        before = (await tickets.tags_of(db, [tid])).get(tid, [])
        add = [t for t in dict.fromkeys(tickets.clean_tag(t) for t in opts.tags_add) if t and t not in before]
        drop = [t for t in dict.fromkeys(tickets.clean_tag(t) for t in opts.tags_remove) if t in before]
        if add or drop:
            await tickets.add_tags(db, tid, add)
            await tickets.remove_tags(db, tid, drop)
            other["tags"] = (", ".join(before) or None, ", ".join(sorted((set(before) | set(add)) - set(drop))) or None)
            if not columns and actor.kind != "system" and "cc" not in other:
                await tickets.touch_change(db, tid, stamp)
    if other:
        events.append(Event(EventKind.OPTIONS_CHANGED, tid, actor, changes=other))
    if closing:
        events.append(Event(EventKind.CLOSED, tid, actor, changes={"status": (ticket.status, tickets.CLOSED)}))
    for event in events:
        await tickets.log_event(db, tid, event.kind.value, actor.label, stamp,
                                **{k: list(v) for k, v in event.changes.items()})
    return events


def _cc_text(cc: dict[str, str]) -> str:
    return ", ".join(a if s == "confirmed" else f"{a} (pending)" for a, s in sorted(cc.items()))
