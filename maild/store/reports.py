"""Reports beside the ratings (seed: Ticket Feedback Scores, Ratings Reviewer): what clients said of staff
replies (1-5) and of closed tickets (feedback, 1-10) over a time range, per staff member and department.

Every range is ``[since, until)`` over stored stamps. A reply rating belongs to the department its ticket is
in now (messages live on the surviving ticket after a merge, so nothing is followed); a feedback answer to
its ticket's department, and to every staff member who wrote a staff reply on that ticket (or, once it was
merged away, on the ticket it lives on in). ``departments``: only tickets in those departments (None: all).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from maild.store.db import Database, Row

LIST_LIMIT = 200      # rows of the comments and the lowest-rated replies (the JSON says when there were more)
EXCERPT = 200         # characters of a rated reply shown
STAFF_REPLY = "staff_reply"
FORMER_STAFF = "(former staff member)"   # a rating whose staff member was deleted since

# Per-star counts of the rating column ``r.rating``, in one pass.
_STARS = ", ".join(f"sum(CASE WHEN r.rating = {n} THEN 1 ELSE 0 END) AS s{n}" for n in range(1, 6))


@dataclass(frozen=True)
class RatingFigures:
    """Reply ratings (1-5) of one staff member or one department: how many, their average (2 decimals),
    and how many of each star."""

    count: int
    average: float | None
    stars: dict[int, int]

    @classmethod
    def from_row(cls, row: Row) -> RatingFigures:
        count = int(row["n"] or 0)
        return cls(count, _average(row["total"], count), {n: int(row[f"s{n}"] or 0) for n in range(1, 6)})

    @classmethod
    def total(cls, parts: Sequence[RatingFigures]) -> RatingFigures:
        """The figures of ``parts`` together (every rating is in exactly one department)."""
        stars = {n: sum(p.stars[n] for p in parts) for n in range(1, 6)}
        count = sum(stars.values())
        return cls(count, _average(sum(n * k for n, k in stars.items()), count), stars)


@dataclass(frozen=True)
class StaffRatings:
    staff_id: int | None          # None: the staff member was deleted since
    username: str
    name: str
    ratings: RatingFigures


@dataclass(frozen=True)
class DepartmentRatings:
    department_id: int
    department: str
    ratings: RatingFigures


@dataclass(frozen=True)
class DepartmentFeedback:
    """Feedback of one department: requests sent in the range, answers given in it and their average score."""

    department_id: int
    department: str
    requested: int
    answered: int
    average: float | None


@dataclass(frozen=True)
class StaffFeedback:
    """Feedback answers given in the range on tickets this staff member replied to, and their average."""

    staff_id: int
    username: str
    name: str
    answered: int
    average: float | None


@dataclass(frozen=True)
class FeedbackComment:
    tid: str
    subject: str
    department: str
    score: int
    comment: str
    answered_at: str
    staff: list[str]              # usernames of the staff who replied on the ticket


@dataclass(frozen=True)
class RatedReply:
    """One rated staff reply, for the ratings reviewer (lowest first)."""

    tid: str
    department: str
    message_id: int
    staff_id: int | None
    username: str
    name: str
    rating: int
    rated_at: str
    excerpt: str                  # the reply's first characters


@dataclass(frozen=True)
class RatingsReport:
    since: str
    until: str
    departments: list[int] | None           # the departments it is limited to (None: all)
    ratings: RatingFigures                  # every reply rating in the range
    staff_ratings: list[StaffRatings]
    department_ratings: list[DepartmentRatings]
    feedback_requested: int
    feedback_answered: int
    feedback_average: float | None
    department_feedback: list[DepartmentFeedback]
    staff_feedback: list[StaffFeedback]
    comments: list[FeedbackComment]         # answers with a comment, newest first
    comments_truncated: bool
    lowest: list[RatedReply]                # the lowest-rated replies, lowest then newest first
    lowest_truncated: bool

    def as_dict(self) -> dict[str, Any]:
        """For JSON (the stars' keys become "1".."5")."""
        return asdict(self)


def _name(row: Row) -> str:
    """A staff member's display name; the rating's staff member may have been deleted since."""
    return FORMER_STAFF if row["username"] is None else row["name"] or ""


def _average(total: Any, count: int) -> float | None:
    return round(int(total) / count, 2) if count else None


def _scope(column: str, departments: Sequence[int] | None) -> tuple[str, list[Any]]:
    """The condition limiting ``column`` (a department id) to ``departments``, and its parameters."""
    if departments is None:
        return "", []
    if not departments:
        return " AND 1 = 0", []
    return f" AND {column} IN ({', '.join('?' for _ in departments)})", list(departments)


async def ratings_report(db: Database, since: str, until: str, departments: Sequence[int] | None,
                         limit: int = LIST_LIMIT) -> RatingsReport:
    """Reply ratings given and feedback answered in ``[since, until)`` (stored stamps), on tickets in
    ``departments`` (None: every department); ``limit`` rows of comments and of lowest-rated replies."""
    where, scope = _scope("t.department_id", departments)

    def rated(joins: str = "") -> str:
        return ("FROM reply_ratings r JOIN messages m ON m.id = r.message_id JOIN tickets t ON t.id = m.ticket_id"
                f"{joins} WHERE r.rated_at >= ? AND r.rated_at < ?{where}")

    params = [since, until, *scope]
    with_staff = " LEFT JOIN staff s ON s.id = r.staff_id"
    with_department = " JOIN departments d ON d.id = t.department_id"
    by_staff = await db.fetchall(
        f"SELECT r.staff_id, s.username, s.name, count(*) AS n, sum(r.rating) AS total, {_STARS} {rated(with_staff)}"
        " GROUP BY r.staff_id, s.username, s.name ORDER BY s.username, r.staff_id", params)
    by_department = await db.fetchall(
        f"SELECT t.department_id, d.name AS department, count(*) AS n, sum(r.rating) AS total, {_STARS}"
        f" {rated(with_department)} GROUP BY t.department_id, d.name ORDER BY d.name", params)
    lowest = await db.fetchall(
        "SELECT t.tid, d.name AS department, r.message_id, r.staff_id, s.username, s.name, r.rating, r.rated_at,"
        f" substr(m.body, 1, {EXCERPT}) AS excerpt {rated(with_department + with_staff)}"
        " ORDER BY r.rating, r.rated_at DESC, r.message_id DESC LIMIT ?", [*params, limit + 1])
    department_feedback, requested, answered, feedback_total = await _department_feedback(db, since, until,
                                                                                           departments)
    comments = await _comments(db, since, until, departments, limit)
    return RatingsReport(
        since=since, until=until, departments=None if departments is None else list(departments),
        ratings=RatingFigures.total([RatingFigures.from_row(r) for r in by_department]),
        staff_ratings=[StaffRatings(r["staff_id"], r["username"] or "", _name(r), RatingFigures.from_row(r))
                       for r in by_staff],
        department_ratings=[DepartmentRatings(r["department_id"], r["department"], RatingFigures.from_row(r))
                            for r in by_department],
        feedback_requested=requested, feedback_answered=answered,
        feedback_average=_average(feedback_total, answered),
        department_feedback=department_feedback,
        staff_feedback=await _staff_feedback(db, since, until, departments),
        comments=comments[:limit], comments_truncated=len(comments) > limit,
        lowest=[RatedReply(r["tid"], r["department"], r["message_id"], r["staff_id"], r["username"] or "", _name(r),
                           r["rating"], r["rated_at"], r["excerpt"] or "") for r in lowest[:limit]],
        lowest_truncated=len(lowest) > limit)


async def _department_feedback(db: Database, since: str, until: str, departments: Sequence[int] | None
                               ) -> tuple[list[DepartmentFeedback], int, int, int]:
    """Per department: requests sent and answers given in the range (a request answered in the range may
    have been sent before it), the answers' average; and the totals of all three."""
    where, scope = _scope("t.department_id", departments)
    rows = await db.fetchall(
        "SELECT t.department_id, d.name AS department,"
        " sum(CASE WHEN f.requested_at >= ? AND f.requested_at < ? THEN 1 ELSE 0 END) AS requested,"
        " sum(CASE WHEN f.answered_at >= ? AND f.answered_at < ? AND f.rating IS NOT NULL THEN 1 ELSE 0 END)"
        " AS answered,"
        " sum(CASE WHEN f.answered_at >= ? AND f.answered_at < ? THEN f.rating ELSE 0 END) AS total"
        " FROM feedback f JOIN tickets t ON t.id = f.ticket_id JOIN departments d ON d.id = t.department_id"
        " WHERE ((f.requested_at >= ? AND f.requested_at < ?) OR (f.answered_at >= ? AND f.answered_at < ?))"
        f"{where} GROUP BY t.department_id, d.name ORDER BY d.name", [since, until] * 5 + scope)
    out = [DepartmentFeedback(r["department_id"], r["department"], int(r["requested"] or 0), int(r["answered"] or 0),
                              _average(r["total"] or 0, int(r["answered"] or 0))) for r in rows]
    return (out, sum(f.requested for f in out), sum(f.answered for f in out),
            sum(int(r["total"] or 0) for r in rows))


def _answered(departments: Sequence[int] | None) -> tuple[str, list[Any]]:
    """``WITH RECURSIVE`` CTEs: ``answered`` (feedback answered in the range, on tickets in ``departments``:
    ticket_id, rating) and ``wrote`` (feedback_id, staff_id: who wrote a staff reply on each, on the ticket
    itself or on the one it was merged into, followed to the end), and their parameters after the range's."""
    where, scope = _scope("t.department_id", departments)
    return ("WITH RECURSIVE answered (ticket_id, rating) AS ("
            " SELECT f.ticket_id, f.rating FROM feedback f JOIN tickets t ON t.id = f.ticket_id"
            f" WHERE f.answered_at >= ? AND f.answered_at < ? AND f.rating IS NOT NULL{where}),"
            " chain (feedback_id, ticket_id) AS ("
            " SELECT ticket_id, ticket_id FROM answered"
            " UNION SELECT c.feedback_id, t.merged_into FROM chain c JOIN tickets t ON t.id = c.ticket_id"
            " WHERE t.merged_into IS NOT NULL),"
            " wrote (feedback_id, staff_id) AS ("
            " SELECT DISTINCT c.feedback_id, m.staff_id FROM chain c JOIN messages m ON m.ticket_id = c.ticket_id"
            " WHERE m.kind = ? AND m.staff_id IS NOT NULL)"), [*scope, STAFF_REPLY]


async def _staff_feedback(db: Database, since: str, until: str, departments: Sequence[int] | None
                          ) -> list[StaffFeedback]:
    ctes, params = _answered(departments)
    rows = await db.fetchall(
        f"{ctes} SELECT w.staff_id, s.username, s.name, count(*) AS n, sum(a.rating) AS total FROM wrote w"
        " JOIN answered a ON a.ticket_id = w.feedback_id JOIN staff s ON s.id = w.staff_id"
        " GROUP BY w.staff_id, s.username, s.name ORDER BY s.username", [since, until, *params])
    return [StaffFeedback(r["staff_id"], r["username"], r["name"], int(r["n"]), _average(r["total"], int(r["n"])))
            for r in rows]


async def _comments(db: Database, since: str, until: str, departments: Sequence[int] | None, limit: int
                    ) -> list[FeedbackComment]:
    """Answers with a comment, newest first (``limit`` + 1, to learn whether there were more), each with the
    staff who replied on its ticket."""
    where, scope = _scope("t.department_id", departments)
    rows = await db.fetchall(
        "SELECT f.ticket_id, t.tid, t.subject, d.name AS department, f.rating, f.comment, f.answered_at"
        " FROM feedback f JOIN tickets t ON t.id = f.ticket_id JOIN departments d ON d.id = t.department_id"
        " WHERE f.answered_at >= ? AND f.answered_at < ? AND f.rating IS NOT NULL AND f.comment != ''"
        f"{where} ORDER BY f.answered_at DESC, f.ticket_id DESC LIMIT ?", [since, until, *scope, limit + 1])
    repliers: dict[int, list[str]] = {}
    if rows:
        ctes, params = _answered(departments)
        ids = [r["ticket_id"] for r in rows]
        for r in await db.fetchall(
                f"{ctes} SELECT w.feedback_id, s.username FROM wrote w JOIN staff s ON s.id = w.staff_id"
                f" WHERE w.feedback_id IN ({', '.join('?' for _ in ids)}) ORDER BY s.username",
                [since, until, *params, *ids]):
            repliers.setdefault(r["feedback_id"], []).append(r["username"])
    return [FeedbackComment(r["tid"], r["subject"], r["department"], r["rating"], r["comment"], r["answered_at"],
                            repliers.get(r["ticket_id"], [])) for r in rows]
