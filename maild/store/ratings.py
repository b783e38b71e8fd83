"""Clients' ratings of staff replies (1-5, seed: Ticket Reply Ratings)."""

from __future__ import annotations

from maild.store.db import Database


async def rate(db: Database, message_id: int, staff_id: int | None, rating: int, by: str, stamp: str) -> int | None:
    """Inside a transaction: the client's rating of staff reply ``message_id`` (a later one replaces it);
    the rating it had before, if any."""
    before = await db.scalar("SELECT rating FROM reply_ratings WHERE message_id = ?", (message_id,))
    await db.execute("INSERT INTO reply_ratings (message_id, staff_id, rating, rated_by, rated_at)"
                     " VALUES (?, ?, ?, ?, ?)"
                     " ON CONFLICT (message_id) DO UPDATE SET rating = excluded.rating, rated_by = excluded.rated_by,"
                     " rated_at = excluded.rated_at", (message_id, staff_id, rating, by, stamp))
    return int(before) if before is not None else None


async def for_ticket(db: Database, ticket_id: int) -> dict[int, int]:
    """Message id → rating, for the ticket's rated replies."""
    rows = await db.fetchall("SELECT r.message_id, r.rating FROM reply_ratings r JOIN messages m ON m.id = r.message_id"
                             " WHERE m.ticket_id = ?", (ticket_id,))
    return {r["message_id"]: r["rating"] for r in rows}
