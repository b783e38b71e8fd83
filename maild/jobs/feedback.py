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


async def run(app: App, now: datetime) -> dict[str, int]:
    assert app.db is not None
    settings = app.settings
    dept_ids = [app.departments[d.name] for d in settings.departments if d.feedback and d.name in app.departments]
    cutoff = iso(now - timedelta(minutes=settings.feedback.delay_minutes))
    requested = 0
    while ids := await feedback.due(app.db, dept_ids, cutoff, BATCH):
        done = await app.desk.request_feedback(ids, dept_ids, cutoff)
        requested += len(done)
        if len(ids) < BATCH or not done:
            break
    return {"requested": requested}
