"""Feedback requests: one row per ticket asked, with the token its link carries and what came back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from maild.store.db import NO_LIMIT, Database, Row
from maild.store.tickets import CLOSED


def _due_where(ids: Sequence[int], department_ids: Sequence[int]) -> str:
    return (f"t.status = ? AND t.closed_at != '' AND t.closed_at <= ? AND t.merged_into IS NULL"
            f" AND t.department_id IN ({', '.join('?' for _ in department_ids)})"
            + (f" AND t.id IN ({', '.join('?' for _ in ids)})" if ids else "")
            + " AND NOT EXISTS (SELECT 1 FROM feedback f WHERE f.ticket_id = t.id)")


async def due(db: Database, department_ids: Sequence[int], cutoff: str, limit: int) -> list[int]:
    """Tickets closed at or before ``cutoff`` in ``department_ids`` that were never asked for feedback."""
    if not department_ids:
        return []
    rows = await db.fetchall(f"SELECT t.id FROM tickets t WHERE {_due_where((), department_ids)}"
                             f" ORDER BY t.id LIMIT ?", (CLOSED, cutoff, *department_ids, limit))
    return [r["id"] for r in rows]


async def still_due(db: Database, ids: Sequence[int], department_ids: Sequence[int], cutoff: str) -> list[int]:
    """Inside a transaction: those of ``ids`` still due, locked (a reopening or another run came first)."""
    if not ids or not department_ids:
        return []
    rows = await db.fetchall(f"SELECT t.id FROM tickets t WHERE {_due_where(ids, department_ids)}"
                             f" ORDER BY t.id{db.lock_clause('t')}", (CLOSED, cutoff, *department_ids, *ids))
    return [r["id"] for r in rows]


async def request(db: Database, tokens: Mapping[int, str], stamp: str) -> None:
    await db.executemany("INSERT INTO feedback (ticket_id, token, requested_at) VALUES (?, ?, ?)"
                         " ON CONFLICT (ticket_id) DO NOTHING", [(t, tok, stamp) for t, tok in tokens.items()])


async def listing(db: Database, answered_only: bool = False, limit: int | None = None) -> list[Row]:
    where = "WHERE f.answered_at != ''" if answered_only else ""
    return await db.fetchall(
        "SELECT t.tid, t.subject, t.client_email, d.name AS department, f.requested_at, f.rating, f.comment,"
        f" f.answered_at FROM feedback f JOIN tickets t ON t.id = f.ticket_id JOIN departments d"
        f" ON d.id = t.department_id {where} ORDER BY f.requested_at DESC, f.ticket_id DESC LIMIT ?",
        (NO_LIMIT if limit is None else limit,))
