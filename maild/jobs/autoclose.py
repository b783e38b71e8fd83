"""Job ``auto_close`` (seed: Close Inactive Tickets): tickets in ``[autoclose] statuses`` (Answered and
Customer-Reply by default) on which the client has seen nothing new for ``[autoclose] hours`` are closed by
the system through the desk; each gets a ticket-log row and its client the ``auto_closed`` mail.

Idle counts from ``last_reply_at`` (a reply of either side; a note or an option change does not count). A
closed ticket leaves the set, so a ticket is closed and mailed once however late or often the job runs."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from maild.clock import iso
from maild.store import tickets

if TYPE_CHECKING:
    from maild.app import App

BATCH = 200     # tickets closed per transaction


async def run(app: App, now: datetime) -> dict[str, int]:
    settings = app.settings.autoclose
    if settings.hours == 0:
        return {"closed": 0}
    assert app.db is not None
    cutoff = iso(now - timedelta(hours=settings.hours))
    closed = 0
    while ids := await tickets.idle(app.db, settings.statuses, cutoff, BATCH):
        done = await app.desk.close_idle(ids, settings.statuses, cutoff, settings.hours)
        closed += len(done)
        if len(ids) < BATCH or not done:
            break
    return {"closed": closed}
