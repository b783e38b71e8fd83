"""Predefined replies in the browser (``/predefined``): find by title, add, change, delete — the same
store as ``ticketd predefined``. Staff insert them into a reply from the ticket page."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from maild.store import predefined
from maild.web.auth import Section, Viewer
from maild.web.render import notice
from maild.web.ticket import ROW_ID

if TYPE_CHECKING:
    pass


class PredefinedPage(Section):
    async def page(self, request: Request, viewer: Viewer, status: int = 200, error: str = "",
                   title: str = "", body: str = "") -> Response:
        q = request.query_params.get("q", "")
        edit = request.query_params.get("edit", "")
        editing = await predefined.get(self.db, int(edit)) if ROW_ID.fullmatch(edit) else None
        return self.auth.page("predefined.html", status, viewer=viewer, replies=await predefined.listing(self.db, q),
                              q=q, error=error, title=title, body=body, editing=editing,
                              done=notice(request.query_params.get("done", "")))

    def _fields(self, request: Request) -> tuple[str, str, str]:
        form = request.state.form
        title = " ".join(str(form.get("title") or "").split())[:200]
        body = str(form.get("body") or "")
        problem = "" if title and body.strip() else "A predefined reply needs a title and a text."
        return title, body, problem

    async def add(self, request: Request, viewer: Viewer) -> Response:
        title, body, problem = self._fields(request)
        if not problem:
            try:
                await predefined.add(self.db, title, body, f"web:{viewer.member.username}", self.app.clock.stamp())
                return RedirectResponse("/predefined?done=added", status_code=303)
            except predefined.TitleTaken:
                problem = f"A predefined reply titled “{title}” exists already."
        return await self.page(request, viewer, 422, problem, title, body)

    async def update(self, request: Request, viewer: Viewer) -> Response:
        reply_id = int(request.path_params["reply_id"])
        if request.state.form.get("action") == "delete":
            if not await predefined.delete(self.db, reply_id):
                return self.auth.not_found(viewer, "This predefined reply")
            return RedirectResponse("/predefined?done=deleted", status_code=303)
        title, body, problem = self._fields(request)
        if not problem:
            try:
                if not await predefined.update(self.db, reply_id, title, body):
                    return self.auth.not_found(viewer, "This predefined reply")
                return RedirectResponse("/predefined?done=saved", status_code=303)
            except predefined.TitleTaken:
                problem = f"A predefined reply titled “{title}” exists already."
        return await self.page(request, viewer, 422, problem, title, body)
