"""``ticketd report ratings [--since DATE] [--until DATE] [--department NAME] [--json]``: reply ratings and
feedback over a range, per staff member and department; the lowest-rated replies and the feedback comments
(seed: Ticket Feedback Scores, Ratings Reviewer). The web view's ``/reports/ratings`` shows the same."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from maild.app import App
from maild.cli import EX_NOINPUT, EX_USAGE
from maild.clock import Clock
from maild.commands.output import plural, print_json, print_table
from maild.config import Settings
from maild.desk.errors import NotFound
from maild.filters import FilterError, parse_period
from maild.store.reports import RatingFigures, RatingsReport, ratings_report


async def _report(settings: Settings, clock: Clock, since: str, until: str, names: Sequence[str]
                  ) -> RatingsReport:
    async with App(settings, clock=clock) as app:
        assert app.db is not None
        departments = sorted({app.desk.department_id(n)[0] for n in names}) if names else None
        return await ratings_report(app.db, since, until, departments)


def _figures(f: RatingFigures) -> list[object]:
    return [f.count, _avg(f.average), *(f.stars[n] for n in range(1, 6))]


def _avg(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _section(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    print(f"\n{title}")
    if rows:
        print_table(headers, rows)
    else:
        print("(none)")


def _print(report: RatingsReport, names: Sequence[str]) -> None:
    where = ", ".join(names) if names else "all departments"
    print(f"Ratings and feedback from {report.since[:19]} to {report.until[:19]} (UTC, the end excluded), {where}")
    r = report.ratings
    print(f"Reply ratings: {plural(r.count, 'rating')}, average {_avg(r.average)}; feedback:"
          f" {report.feedback_requested} requested, {report.feedback_answered} answered, average"
          f" {_avg(report.feedback_average)}")
    stars = ["1*", "2*", "3*", "4*", "5*"]
    _section("Reply ratings per staff member", ["STAFF", "NAME", "RATINGS", "AVERAGE", *stars],
             [[s.username or "-", s.name, *_figures(s.ratings)] for s in report.staff_ratings])
    _section("Reply ratings per department", ["DEPARTMENT", "RATINGS", "AVERAGE", *stars],
             [[d.department, *_figures(d.ratings)] for d in report.department_ratings])
    _section("Feedback per department", ["DEPARTMENT", "REQUESTED", "ANSWERED", "AVERAGE"],
             [[d.department, d.requested, d.answered, _avg(d.average)] for d in report.department_feedback])
    _section("Feedback per staff member (tickets they replied to)", ["STAFF", "NAME", "ANSWERED", "AVERAGE"],
             [[s.username, s.name, s.answered, _avg(s.average)] for s in report.staff_feedback])
    _section("Lowest-rated replies", ["TICKET", "MESSAGE", "STAFF", "RATING", "RATED", "REPLY"],
             [[x.tid, x.message_id, x.username or x.name, x.rating, x.rated_at[:19], " ".join(x.excerpt.split())]
              for x in report.lowest])
    _section("Feedback comments", ["TICKET", "ANSWERED", "DEPARTMENT", "SCORE", "STAFF", "COMMENT"],
             [[c.tid, c.answered_at[:19], c.department, c.score, ",".join(c.staff), " ".join(c.comment.split())]
              for c in report.comments])
    for cut, shown, what in ((report.lowest_truncated, len(report.lowest), "rated replies"),
                             (report.comments_truncated, len(report.comments), "comments")):
        if cut:
            print(f"(the first {shown} {what} shown; narrow the range for the rest)", file=sys.stderr)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.report_command == "ratings":
        names = args.department or []
        clock = Clock()   # the range is checked before the database is opened
        try:
            since, until = parse_period(args.since or "", args.until or "", clock.now())
        except FilterError as exc:
            print(f"ticketd report ratings: {exc}", file=sys.stderr)
            return EX_USAGE
        try:
            report = asyncio.run(_report(settings, clock, since, until, names))
        except NotFound as exc:   # no such department
            print(f"ticketd report ratings: {exc}", file=sys.stderr)
            return EX_NOINPUT
        if args.json:
            print_json(report.as_dict())
        else:
            _print(report, names)
        return 0
    raise AssertionError(args.report_command)
