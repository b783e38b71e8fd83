"""Job ``feedback`` (seed: Feedback Requests): a ticket that has stayed closed for ``[feedback]
delay_minutes`` in a department with ``feedback`` on (the default) gets one feedback request: a token kept
in the database and a mail to its client with a signed link that carries it (the page comes with the web
view). Once per ticket, whatever happens to it afterwards; ``ticketd feedback list`` shows what came back."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from maild.clock import iso
from maild.store import feedback

if TYPE_CHECKING:
    from maild.app import App

BATCH = 200
MAX_AGE_DAYS = 7    # a ticket closed longer ago is not asked (a department that turns feedback on, a backlog)


async def run(app: App, now: datetime) -> dict[str, int]:
    assert app.db is not None
    settings = app.settings
    dept_ids = [app.departments[d.name] for d in settings.departments if d.feedback and d.name in app.departments]
    cutoff = iso(now - timedelta(minutes=settings.feedback.delay_minutes))
    since = iso(now - timedelta(minutes=settings.feedback.delay_minutes, days=MAX_AGE_DAYS))
    requested = 0
    seen: set[int] = set()
    while ids := await feedback.due(app.db, dept_ids, since, cutoff, BATCH):
        if seen.issuperset(ids):    # nothing new (what another run asked about): done
            break
        seen.update(ids)
        done = await app.desk.request_feedback(ids, dept_ids, since, cutoff)
        requested += len(done)
        if len(ids) < BATCH:
            break
    return {"requested": requested}
