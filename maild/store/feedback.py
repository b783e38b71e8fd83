"""Feedback requests: one row per ticket asked, with the token its link carries and what came back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from maild.store.db import NO_LIMIT, Database, Row
from maild.store.tickets import CLOSED

CHUNK = 500   # rows per statement (well under every engine's limit on parameters)


def _due_where(ids: Sequence[int], department_ids: Sequence[int]) -> str:
    return (f"t.status = ? AND t.closed_at > ? AND t.closed_at <= ? AND t.merged_into IS NULL"
            f" AND t.department_id IN ({', '.join('?' for _ in department_ids)})"
            + (f" AND t.id IN ({', '.join('?' for _ in ids)})" if ids else "")
            + " AND NOT EXISTS (SELECT 1 FROM feedback f WHERE f.ticket_id = t.id)")


async def due(db: Database, department_ids: Sequence[int], since: str, cutoff: str, limit: int) -> list[int]:
    """Tickets closed after ``since`` and at or before ``cutoff`` in ``department_ids`` that were never asked
    for feedback (``since``: a department that turns feedback on does not ask about years of tickets)."""
    if not department_ids:
        return []
    rows = await db.fetchall(f"SELECT t.id FROM tickets t WHERE {_due_where((), department_ids)}"
                             f" ORDER BY t.id LIMIT ?", (CLOSED, since, cutoff, *department_ids, limit))
    return [r["id"] for r in rows]


async def still_due(db: Database, ids: Sequence[int], department_ids: Sequence[int], since: str, cutoff: str
                    ) -> list[int]:
    """Inside a transaction: those of ``ids`` still due, locked (a reopening came first)."""
    if not ids or not department_ids:
        return []
    rows = await db.fetchall(f"SELECT t.id FROM tickets t WHERE {_due_where(ids, department_ids)}"
                             f" ORDER BY t.id{db.lock_clause('t')}", (CLOSED, since, cutoff, *department_ids, *ids))
    return [r["id"] for r in rows]


async def request(db: Database, tokens: Mapping[int, str], stamp: str) -> list[int]:
    """Inside a transaction: a request with its token for each ticket never asked; the tickets it is ours to
    ask (of two overlapping runs, the conflict clause lets one insert each: PostgreSQL sees the other's
    committed row whatever its snapshot)."""
    if len(tokens) > CHUNK:
        items = list(tokens.items())
        return [t for i in range(0, len(items), CHUNK) for t in await request(db, dict(items[i:i + CHUNK]), stamp)]
    if not tokens:
        return []
    rows = await db.fetchall("INSERT INTO feedback (ticket_id, token, requested_at) VALUES "
                             + ", ".join("(?, ?, ?)" for _ in tokens)
                             + " ON CONFLICT (ticket_id) DO NOTHING RETURNING ticket_id",
                             [v for ticket_id, token in tokens.items() for v in (ticket_id, token, stamp)])
    claimed = {r["ticket_id"] for r in rows}
    return [ticket_id for ticket_id in tokens if ticket_id in claimed]


async def listing(db: Database, answered_only: bool = False, limit: int | None = None) -> list[Row]:
    where = "WHERE f.requested_at != ''" + (" AND f.answered_at != ''" if answered_only else "")
    return await db.fetchall(
        "SELECT t.tid, t.subject, t.client_email, d.name AS department, f.requested_at, f.rating, f.comment,"
        f" f.answered_at FROM feedback f JOIN tickets t ON t.id = f.ticket_id JOIN departments d"
        f" ON d.id = t.department_id {where} ORDER BY f.requested_at DESC, f.ticket_id DESC LIMIT ?",
        (NO_LIMIT if limit is None else limit,))


async def for_ticket(db: Database, ticket_id: int) -> Row | None:
    """The ticket's feedback request and answer (None when it was never asked)."""
    return await db.fetchone("SELECT requested_at, rating, comment, answered_at FROM feedback"
                             " WHERE ticket_id = ? AND requested_at != ''", (ticket_id,))


async def answer(db: Database, ticket_id: int, rating: int, comment: str, stamp: str) -> bool:
    """Inside a transaction: the client's answer to the ticket's feedback request (once); False when there
    was no request, or it was answered already."""
    return await db.execute("UPDATE feedback SET rating = ?, comment = ?, answered_at = ? WHERE ticket_id = ?"
                            " AND requested_at != '' AND answered_at = ''", (rating, comment, stamp, ticket_id)) == 1
