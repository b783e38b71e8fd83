"""Named leases: one holder at a time, for work that only one node may do (an IMAP mailbox's importer, the
scheduler). A holder renews its lease well before ``until``; a holder that died loses it once ``until`` has
passed, and another node takes it over. Times are stamps from the injected clock (sortable text)."""

from __future__ import annotations

from maild.store.db import Database, Row


async def acquire(db: Database, name: str, holder: str, now: str, until: str) -> bool:
    """Take ``name`` (free, or its lease ran out) or renew it (``holder`` has it): True when ``holder`` now
    holds it until ``until``. One statement: of two nodes asking at once, one wins."""
    async with db.transaction():
        taken = await db.execute(
            "INSERT INTO leases (name, holder, until, taken_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until,"
            " taken_at = CASE WHEN leases.holder = excluded.holder THEN leases.taken_at ELSE excluded.taken_at END"
            " WHERE leases.holder = excluded.holder OR leases.until < ?",
            (name, holder, until, now, now))
    return taken == 1


async def release(db: Database, name: str, holder: str) -> bool:
    """Give ``name`` up (on a clean stop), if ``holder`` still has it."""
    async with db.transaction():
        return await db.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder)) == 1


async def listing(db: Database) -> list[Row]:
    return await db.fetchall("SELECT name, holder, until, taken_at FROM leases ORDER BY name")
