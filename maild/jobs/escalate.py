"""Job ``escalate`` (seed: Automated Escalations): each ``[[escalations]]`` rule is due on the tickets its
conditions hold for, as of the run's time, and fires once on each through the desk (its actions, a
ticket-log row, the ``escalated`` mail); it fires again on a ticket only after a person changed it.

"N minutes since X" is wall time, or business time in the departments that name a calendar: the rule's
cutoff (the instant N minutes ago, by that department's calendar) is computed once per calendar, and the
database answers "X at or before the cutoff" for every ticket at once."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from maild.clock import iso
from maild.jobs.calendar import WallClock
from maild.store import escalations

if TYPE_CHECKING:
    from maild.app import App

BATCH = 200     # tickets a rule fires on per transaction


async def run(app: App, now: datetime) -> dict[str, int]:
    assert app.db is not None
    settings = app.settings
    fired = 0
    for rule in settings.escalations:
        groups: dict[tuple[str, str], list[int]] = {}  # (calendar ("" = wall time), department if breach) -> ids
        for name in rule.departments or [d.name for d in settings.departments]:
            dept = settings.department(name)
            if dept is not None and name in app.departments:
                key = (dept.calendar, dept.name if rule.breached else "")
                groups.setdefault(key, []).append(app.departments[name])
        for (calendar_name, dept_name), dept_ids in sorted(groups.items()):
            clock = settings.calendars[calendar_name] if calendar_name else WallClock()
            since = clock.back(now, rule.minutes)
            if since.year < 1900:      # no opening hours within years: nothing is due
                continue
            cutoff = iso(since)
            breach: tuple[tuple[str, str], ...] = ()
            if rule.breached:
                dept = settings.department(dept_name)
                assert dept is not None
                breach = tuple((prio, iso(clock.back(now, minutes))) for prio, minutes in getattr(dept, rule.breached))
                if not breach:     # no target in this department: never breached
                    continue
            conditions = escalations.Conditions(rule.name, rule.column, tuple(dept_ids), rule.statuses,
                                                rule.priorities, rule.flagged, rule.assigned, rule.breached, breach)
            seen: set[int] = set()
            while ids := await escalations.due(app.db, conditions, cutoff, BATCH):
                if seen.issuperset(ids):    # nothing new (what an overlapping run fired on): done
                    break
                seen.update(ids)
                fired += len(await app.desk.escalate(rule, conditions, cutoff, ids))
                if len(ids) < BATCH:
                    break
    return {"fired": fired}
