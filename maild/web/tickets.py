"""The ticket list (``/tickets``): "awaiting reply" by default, the tickets flagged to the viewer on top,
filters as query parameters (status, department, priority, assignee, tag, keywords), sorting, pages, an
auto-refresh interval the staff member chooses, and closing several tickets at once (through the desk)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from maild.config import PRIORITIES
from maild.desk.errors import Denied, DeskError, NotFound
from maild.store import messages, staff, ticketlist, tickets
from maild.store.ticketlist import Query
from maild.web.auth import Section, Viewer
from maild.web.render import notice

if TYPE_CHECKING:
    pass

log = logging.getLogger("ticketd.web")
PAGE_SIZE = 50
AWAITING = (tickets.OPEN, tickets.CUSTOMER_REPLY)
STATUS_VIEWS = {"awaiting": AWAITING, "active": tuple(s for s in tickets.STATUSES if s != tickets.CLOSED),
                "all": (), **{s.lower(): (s,) for s in tickets.STATUSES}}
REFRESH_CHOICES = (0, 30, 60, 120, 300, 600)
REFRESH_COOKIE = "ticketd_refresh"
BULK_LIMIT = 500


class TicketList(Section):
    def _filters(self, request: Request, viewer: Viewer) -> tuple[dict[str, str], Query, list[str]]:
        """The page's parameters as given (for links), the query they make, and what was not understood."""
        p = request.query_params
        problems: list[str] = []
        given = {k: p.get(k, "").strip() for k in ("status", "department", "priority", "assigned", "tag", "q",
                                                   "sort", "dir")}
        status = given["status"].lower() or "awaiting"
        if status not in STATUS_VIEWS:
            problems.append(f"status {given['status']!r} is not one of {', '.join(STATUS_VIEWS)}")
            status = "awaiting"
        department_id = None
        if given["department"]:
            department_id = next((i for n, i in self.app.departments.items()
                                  if n.lower() == given["department"].lower()), None)
            if department_id is None or not viewer.sees(department_id):
                problems.append(f"no department {given['department']!r} of yours")
                department_id = -1
        priority = next((x for x in PRIORITIES if x.lower() == given["priority"].lower()), "")
        if given["priority"] and not priority:
            problems.append(f"priority {given['priority']!r} is not one of {', '.join(PRIORITIES)}")
        sort = given["sort"] if given["sort"] in ticketlist.SORTS else "last_reply"
        number = page_number(p.get("page", "1"))
        query = Query(scope=viewer.scope, statuses=STATUS_VIEWS[status], department_id=department_id,
                      priority=priority, unassigned=given["assigned"] == "none", tag=tickets.clean_tag(given["tag"]),
                      text=given["q"][:200], sort=sort, descending=given["dir"] != "asc",
                      offset=(number - 1) * PAGE_SIZE, limit=PAGE_SIZE)
        return {**given, "status": status, "page": str(number)}, query, problems

    async def _assignee(self, viewer: Viewer, name: str, query: Query, problems: list[str]) -> Query:
        if not name or name == "none":
            return query
        assert self.app.db is not None
        member = viewer.member if name == "me" else await staff.by_username(self.app.db, name)
        if member is None:
            problems.append(f"no staff member {name!r}")
            return replace(query, scope=())
        return replace(query, assigned_to=member.id)

    async def page(self, request: Request, viewer: Viewer) -> Response:
        assert self.app.db is not None
        db = self.app.db
        given, query, problems = self._filters(request, viewer)
        query = await self._assignee(viewer, given["assigned"], query, problems)
        found = await ticketlist.page(db, query)
        rows, total = found.tickets, found.total
        flagged: list[tickets.Ticket] = []
        if query.offset == 0:
            flagged = (await ticketlist.page(db, Query(scope=viewer.scope, flagged_to=viewer.member.id,
                                                       statuses=STATUS_VIEWS["active"], limit=100))).tickets
        shown = [*rows, *flagged]
        ids = [t.id for t in shown]
        badges = await messages.first_badges(db, ids)
        tags = await tickets.tags_of(db, ids)
        counts = await ticketlist.status_counts(db, viewer.scope, STATUS_VIEWS["active"])
        refresh = self._refresh(request)
        departments = [n for n, i in self.app.departments.items() if viewer.sees(i)]
        response = self.auth.page(
            "tickets.html", viewer=viewer, rows=rows, flagged=flagged, total=total, given=given, badges=badges,
            tags=tags, counts=counts, problems=problems, departments=departments, priorities=PRIORITIES,
            statuses=tickets.STATUSES, staff=await staff.working_in(db, viewer.scope),
            all_tags=await tickets.all_tags(db, 100, viewer.scope),
            page_number=query.offset // PAGE_SIZE + 1, pages=max(1, -(-total // PAGE_SIZE)), refresh=refresh,
            capped=found.capped, search_capped=found.search_capped, search_cap=ticketlist.SEARCH_CAP,
            refresh_choices=REFRESH_CHOICES, sorts=list(ticketlist.SORTS),
            done=notice(request.query_params.get("done", "")),
            awaiting=sum(counts.get(s, 0) for s in AWAITING))
        if "refresh" in request.query_params:
            response.set_cookie(REFRESH_COOKIE, str(refresh), max_age=365 * 86400, httponly=True, samesite="lax",
                                secure=self.auth.secure, path="/")
        return response

    @staticmethod
    def _refresh(request: Request) -> int:
        """Seconds between reloads of the list, as the staff member chose (kept in a cookie); 0: never."""
        value = request.query_params.get("refresh", request.cookies.get(REFRESH_COOKIE, "0"))
        try:
            seconds = int(value)
        except ValueError:
            return 0
        return seconds if seconds in REFRESH_CHOICES else 0

    async def close_many(self, request: Request, viewer: Viewer) -> Response:
        """Bulk close: each ticket through the desk (its rights, its log line, the client's closure mail)."""
        form = request.state.form
        tids = [str(t) for t in form.getlist("tid")][:BULK_LIMIT]
        closed, refused = 0, []
        for tid in tids:
            try:
                await self.app.desk.close(viewer.actor, tid)
                closed += 1
            except (Denied, NotFound):   # another department's ticket is answered as one that does not exist
                refused.append(f"#{tid}: no such ticket")
            except DeskError as exc:
                refused.append(f"#{tid}: {exc}")
        log.info("bulk close", extra={"kv": {"by": viewer.member.username, "closed": closed,
                                             "refused": len(refused)}})
        back = str(form.get("back") or "/tickets")
        if not back.startswith("/tickets"):
            back = "/tickets"
        if refused:
            return self.auth.page("error.html", 409, viewer=viewer, title="Some tickets were not closed",
                                  message=f"{closed} closed; not closed: " + "; ".join(refused))
        joiner = "&" if "?" in back else "?"
        return RedirectResponse(f"{back}{joiner}done=closed-{closed}", status_code=303)

    async def delete_many(self, request: Request, viewer: Viewer) -> Response:
        """Bulk delete, or "block sender & delete" (``ban=1``), after a confirmation; through the desk."""
        form = request.state.form
        tids = [str(t) for t in form.getlist("tid")][:BULK_LIMIT]
        ban = form.get("ban") == "1"
        if not tids:
            return RedirectResponse("/tickets", status_code=303)
        if form.get("confirm") != "1":
            return self.auth.page(
                "confirm.html", viewer=viewer, title=f"Delete {len(tids)} ticket{'s' if len(tids) > 1 else ''}?",
                message=("Their clients' addresses go on the ban list, then " if ban else "")
                + "the tickets are deleted with all their messages and attachments: "
                + ", ".join(f"#{t}" for t in tids) + ".",
                action="/tickets/delete", fields=[("tid", t) for t in tids] + ([("ban", "1")] if ban else []),
                button="Block senders and delete" if ban else "Delete", back="/tickets")
        try:
            deleted = await self.app.desk.delete_tickets(viewer.actor, tids, ban_sender=ban)
        except (Denied, NotFound):
            return self.auth.not_found(viewer, "One of these tickets")
        except DeskError as exc:
            return self.auth.page("error.html", 409, viewer=viewer, title="Not deleted", message=str(exc))
        return RedirectResponse(f"/tickets?done=deleted-{len(deleted)}", status_code=303)

    async def merge_many(self, request: Request, viewer: Viewer) -> Response:
        """Bulk merge: the selected tickets, the newer into the oldest, through the desk."""
        tids = [str(t) for t in request.state.form.getlist("tid")][:BULK_LIMIT]
        try:
            result = await self.app.desk.merge(viewer.actor, tids)
        except (Denied, NotFound):
            return self.auth.not_found(viewer, "One of these tickets")
        except DeskError as exc:
            return self.auth.page("error.html", 409, viewer=viewer, title="Not merged", message=str(exc))
        log.info("merge", extra={"kv": {"by": viewer.member.username, "into": result.tid, "tickets": len(tids)}})
        return RedirectResponse(f"/tickets/{result.tid}?done=merged#thread", status_code=303)


MAX_PAGE = 100_000


def page_number(value: str) -> int:
    """A ``page`` parameter as a page number: 1 when it is not one, at most :data:`MAX_PAGE`."""
    try:
        return min(MAX_PAGE, max(1, int(value)))
    except ValueError:
        return 1
