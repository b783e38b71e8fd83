"""For admins: the outbox (``/outbox``: queued, sent and failed mail; retry a failed one) and the IMAP
accounts' state, the same facts as ``ticketd outbox list`` and ``ticketd imap status``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from maild.store import imap, outbox, stats
from maild.web.auth import Section, Viewer
from maild.web.render import notice
from maild.web.tickets import page_number

if TYPE_CHECKING:
    pass

log = logging.getLogger("ticketd.web")
PAGE_SIZE = 100


class OutboxPage(Section):
    async def page(self, request: Request, viewer: Viewer) -> Response:
        state = request.query_params.get("state", "")
        state = state if state in outbox.STATES else ""
        number = page_number(request.query_params.get("page", "1"))
        rows = await outbox.listing(self.db, state or None, PAGE_SIZE + 1, offset=(number - 1) * PAGE_SIZE)
        tids: dict[int, str] = {}
        ticket_ids = sorted({r.ticket_id for r in rows if r.ticket_id is not None})
        if ticket_ids:
            from maild.store import tickets

            tids = {i: t.tid for i, t in (await tickets.get_many(self.db, ticket_ids)).items()}
        counts, imap_counts = await outbox.counts(self.db), await imap.counts(self.db)
        return self.auth.page(
            "outbox.html", viewer=viewer, rows=rows[:PAGE_SIZE], more=len(rows) > PAGE_SIZE, page_number=number,
            state=state, states=outbox.STATES, counts=counts, tids=tids,
            oldest=await stats.outbox_oldest_queued(self.db),
            accounts=await imap.status_rows(self.db), folders=await imap.folder_rows(self.db),
            imap_counts=imap_counts, done=notice(request.query_params.get("done", "")))

    async def retry(self, request: Request, viewer: Viewer) -> Response:
        outbox_id = int(request.path_params["outbox_id"])
        async with self.db.transaction():
            before = await outbox.retry(self.db, outbox_id, self.app.clock.stamp())
        if before is None:
            return self.auth.not_found(viewer, "This mail")
        if before == outbox.SENT:
            return self.auth.page("error.html", 409, viewer=viewer, title="Already sent",
                                  message=f"Mail {outbox_id} was sent already; it is not sent twice.")
        log.info("outbox retry", extra={"kv": {"by": viewer.member.username, "outbox": outbox_id}})
        return RedirectResponse(f"/outbox?done=retry-{outbox_id}", status_code=303)
