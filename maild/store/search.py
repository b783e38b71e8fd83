"""Keyword search over tickets' messages, one call on every engine (the full-text index is the engine's:
:meth:`maild.store.db.Database.text_match`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from maild.store.db import Database


@dataclass(frozen=True)
class Hit:
    ticket_id: int
    tid: str
    subject: str
    status: str
    last_reply_at: str
    message_ids: tuple[int, ...]     # the ticket's messages that match, oldest first


async def search(db: Database, text: str, limit: int = 50, department_ids: Sequence[int] | None = None
                 ) -> list[Hit]:
    """Tickets (not merged away) with a message whose subject or text holds every word of ``text``, the most
    recently active first, at most ``limit``; only in ``department_ids`` when given (a staff member's)."""
    match = db.text_match(text)
    if match is None or (department_ids is not None and not department_ids):
        return []
    sub, params = match
    where = ""
    if department_ids is not None:
        where = f" AND t.department_id IN ({','.join('?' * len(department_ids))})"
        params = [*params, *department_ids]
    rows = await db.fetchall(
        f"SELECT m.ticket_id, m.id FROM messages m WHERE m.id IN ({sub}) AND m.ticket_id IN"
        f" (SELECT t.id FROM tickets t WHERE t.merged_into IS NULL{where})", params)
    found: dict[int, list[int]] = {}
    for r in rows:
        found.setdefault(r["ticket_id"], []).append(r["id"])
    if not found:
        return []
    ids = sorted(found)
    tickets = await db.fetchall(
        f"SELECT id, tid, subject, status, last_reply_at FROM tickets WHERE id IN ({','.join('?' * len(ids))})"
        " ORDER BY last_reply_at DESC, id DESC LIMIT ?", (*ids, limit))
    return [Hit(t["id"], t["tid"], t["subject"], t["status"], t["last_reply_at"], tuple(sorted(found[t["id"]])))
            for t in tickets]
