"""Reports in the browser (``/reports/ratings``): reply ratings and feedback over a range, per staff member
and department, the lowest-rated replies and the feedback comments — the same report as ``ticketd report
ratings``. Staff see their departments' tickets only; admins every department."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from maild.filters import DEFAULT_DAYS, FilterError, parse_period
from maild.store.reports import ratings_report
from maild.web.auth import Section, Viewer


class ReportsPage(Section):
    async def ratings(self, request: Request, viewer: Viewer) -> Response:
        p = request.query_params
        given = {k: p.get(k, "").strip()[:100] for k in ("since", "until", "department")}
        mine = [(n, i) for n, i in self.app.departments.items() if viewer.sees(i)]
        problems: list[str] = []
        departments = viewer.scope
        if given["department"]:
            chosen = next((i for n, i in mine if n.lower() == given["department"].lower()), None)
            if chosen is None:
                problems.append(f"no department {given['department']!r} of yours")
            else:
                departments = (chosen,)
        try:
            since, until = parse_period(given["since"], given["until"], self.app.clock.now(), ("since", "until"))
        except FilterError as exc:
            problems.append(str(exc))
        report = None if problems else await ratings_report(self.db, since, until, departments)
        return self.auth.page("report_ratings.html", 400 if problems else 200, viewer=viewer, given=given,
                              problems=problems, report=report, departments=[n for n, _ in mine],
                              default_days=DEFAULT_DAYS)
