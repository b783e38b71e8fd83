"""Escalation rules' queries: the tickets a rule is due on as of a cutoff (set-based), and which rule fired
on which ticket when. A rule is due on a ticket when its conditions hold and it has not fired since a
person last changed the ticket (``tickets.change_seq``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from maild.store.db import Database
from maild.store.tickets import CLOSED

CLAIM_CHUNK = 500   # rows per claiming statement (well under every engine's limit on parameters)
CLOCKS = ("last_reply_at", "last_client_reply_at", "last_staff_reply_at", "created_at")


@dataclass(frozen=True)
class Conditions:
    rule: str
    column: str                        # one of CLOCKS: what the minutes count from
    department_ids: tuple[int, ...]
    statuses: tuple[str, ...] = ()     # (): all but Closed
    priorities: tuple[str, ...] = ()
    flagged: bool | None = None
    assigned: bool | None = None
    breached: str = ""                 # first_response | resolution: the target ran out (breach_cutoffs)
    breach_cutoffs: tuple[tuple[str, str], ...] = ()   # (priority, opened at or before this: overdue)


def _where(c: Conditions, cutoff: str) -> tuple[str, list[Any]]:
    if c.column not in CLOCKS:
        raise ValueError(f"not a ticket clock: {c.column}")
    parts: list[str] = ["t.merged_into IS NULL"]
    params: list[Any] = []
    if c.statuses:
        parts.append(f"t.status IN ({', '.join('?' for _ in c.statuses)})")
        params += c.statuses
    else:
        parts.append("t.status != ?")
        params.append(CLOSED)
    parts.append(f"t.department_id IN ({', '.join('?' for _ in c.department_ids)})")
    params += c.department_ids
    if c.priorities:
        parts.append(f"t.priority IN ({', '.join('?' for _ in c.priorities)})")
        params += c.priorities
    if c.flagged is not None:
        parts.append("t.flagged_to IS NOT NULL" if c.flagged else "t.flagged_to IS NULL")
    if c.assigned is not None:
        parts.append("t.assigned_to IS NOT NULL" if c.assigned else "t.assigned_to IS NULL")
    if c.breached:
        # Only the priorities with a target can breach it; the caller skips a rule with none.
        parts.append("(" + " OR ".join("(t.priority = ? AND t.created_at <= ?)" for _ in c.breach_cutoffs) + ")")
        params += [v for pair in c.breach_cutoffs for v in pair]
        if c.breached == "first_response":
            parts.append("t.first_staff_reply_at = ''")
    # Never answered by staff: "since the last staff reply" counts from the opening.
    # (last_reply_at and created_at are never empty: compared as they are, the index tickets_status answers.)
    clock = (f"t.{c.column}" if c.column in ("last_reply_at", "created_at") else
             f"CASE WHEN t.{c.column} = '' THEN t.created_at ELSE t.{c.column} END")
    parts.append(f"{clock} <= ?")
    params.append(cutoff)
    parts.append("NOT EXISTS (SELECT 1 FROM escalations_fired f WHERE f.ticket_id = t.id AND f.rule = ?"
                 " AND f.seq >= t.change_seq)")
    params.append(c.rule)
    return " AND ".join(parts), params


async def due(db: Database, c: Conditions, cutoff: str, limit: int) -> list[int]:
    """The tickets ``c`` holds for as of ``cutoff`` (the instant the rule's minutes ago), oldest id first."""
    if not c.department_ids:
        return []
    where, params = _where(c, cutoff)
    rows = await db.fetchall(f"SELECT t.id FROM tickets t WHERE {where} ORDER BY t.id LIMIT ?", (*params, limit))
    return [r["id"] for r in rows]


async def still_due(db: Database, c: Conditions, cutoff: str, ids: Sequence[int]) -> list[int]:
    """Inside a transaction: those of ``ids`` still due, locked until it ends (another run, a reply or a
    staff member may have changed them since they were picked)."""
    if not ids or not c.department_ids:
        return []
    where, params = _where(c, cutoff)
    rows = await db.fetchall(f"SELECT t.id FROM tickets t WHERE t.id IN ({', '.join('?' for _ in ids)}) AND {where}"
                             f" ORDER BY t.id{db.lock_clause('t')}", (*ids, *params))
    return [r["id"] for r in rows]


async def claim(db: Database, rule: str, ticket_seqs: Sequence[tuple[int, int]], stamp: str) -> list[int]:
    """Inside a transaction: record that ``rule`` fires on each (ticket id, its change_seq), unless it has
    fired at that count already; the ids it is ours to fire on, in the order given. One statement per
    chunk, whose conflict clause sees a firing another transaction committed meanwhile (PostgreSQL re-reads
    the conflicting row, whatever its snapshot): of two overlapping runs, one fires."""
    if len(ticket_seqs) > CLAIM_CHUNK:
        return [t for i in range(0, len(ticket_seqs), CLAIM_CHUNK)
                for t in await claim(db, rule, ticket_seqs[i:i + CLAIM_CHUNK], stamp)]
    if not ticket_seqs:
        return []
    rows = await db.fetchall(
        "INSERT INTO escalations_fired (ticket_id, rule, fired_at, seq) VALUES "
        + ", ".join("(?, ?, ?, ?)" for _ in ticket_seqs)
        + " ON CONFLICT (ticket_id, rule) DO UPDATE SET fired_at = excluded.fired_at, seq = excluded.seq"
          " WHERE escalations_fired.seq < excluded.seq RETURNING ticket_id",
        [v for ticket_id, seq in ticket_seqs for v in (ticket_id, rule, stamp, seq)])
    claimed = {r["ticket_id"] for r in rows}
    return [ticket_id for ticket_id, _ in ticket_seqs if ticket_id in claimed]

