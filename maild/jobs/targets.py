"""Response targets (beyond WHMCS, as Zammad's and osTicket's SLAs): per department and priority, a first
response due so many minutes after a ticket opened, and a resolution (closing) due so many minutes after,
both in the department's business time (its calendar; wall time without one). Due times are computed from
the ticket's own times, so a change of department or priority moves them at once."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from maild.clock import iso, parse
from maild.jobs.calendar import Calendar, WallClock

if TYPE_CHECKING:
    from maild.config import Settings
    from maild.store.tickets import Ticket

KINDS = ("first_response", "resolution")


def clock_for(settings: Settings, department: str) -> Calendar | WallClock:
    dept = settings.department(department)
    return settings.calendars[dept.calendar] if dept is not None and dept.calendar else WallClock()


def of(ticket: Ticket, settings: Settings, now: datetime) -> dict[str, Any]:
    """Each target of ``ticket``: None without one, else its minutes, due time, when it was met (the first
    staff reply; the closing) and whether it is breached (met late, or not met and overdue)."""
    dept = settings.department(ticket.department)
    clock = clock_for(settings, ticket.department)
    out: dict[str, Any] = {}
    for kind, met in zip(KINDS, (ticket.first_staff_reply_at, ticket.closed_at), strict=True):
        minutes = dept.target(kind, ticket.priority) if dept is not None else None
        if minutes is None:
            out[kind] = None
            continue
        due = clock.forward(parse(ticket.created_at), minutes)
        out[kind] = {"minutes": minutes, "due_at": iso(due), "met_at": met or None,
                     "breached": parse(met) > due if met else now > due}
    return out
