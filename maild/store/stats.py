"""Figures for monitoring (``/metrics``): counts and ages read from the tables, engine-neutral."""

from __future__ import annotations

from maild.store.db import Database
from maild.store.outbox import QUEUED, SENT


async def messages_by_source_outcome(db: Database) -> dict[tuple[str, str], int]:
    """Messages processed so far, per (source, outcome)."""
    rows = await db.fetchall("SELECT i.source, l.outcome, count(*) AS n FROM import_log l"
                             " JOIN inbound i ON i.id = l.inbound_id GROUP BY i.source, l.outcome")
    return {(r["source"], r["outcome"]): int(r["n"]) for r in rows}


async def spool(db: Database) -> tuple[int, str | None]:
    """Messages waiting in the spool, and when the oldest of them arrived."""
    row = await db.fetchone("SELECT count(*) AS n, min(received_at) AS oldest FROM inbound WHERE state = 'new'")
    return (int(row["n"]), row["oldest"]) if row is not None else (0, None)


async def outbox_attempts(db: Database) -> int:
    """Delivery attempts made so far (each row's attempts, summed)."""
    return int(await db.scalar("SELECT coalesce(sum(attempts), 0) FROM outbox") or 0)


async def recent_deliveries(db: Database, limit: int = 1000) -> list[tuple[str, str]]:
    """(queued at, sent at) of the latest ``limit`` mails sent."""
    rows = await db.fetchall("SELECT created_at, sent_at FROM outbox WHERE state = ? AND sent_at IS NOT NULL"
                             " ORDER BY id DESC LIMIT ?", (SENT, limit))
    return [(r["created_at"], r["sent_at"]) for r in rows]


async def outbox_oldest_queued(db: Database) -> str | None:
    value = await db.scalar("SELECT min(created_at) FROM outbox WHERE state = ?", (QUEUED,))
    return str(value) if value else None
