"""Staff sessions of the web view (kept in the database, so that logging out or turning an account off
ends them at once, on every node) and failed logins (for rate limiting, per account and per address)."""

from __future__ import annotations

from dataclasses import dataclass

from maild.store.db import Database
from maild.store.staff import COLUMNS, StaffMember


@dataclass(frozen=True)
class Session:
    member: StaffMember
    csrf: str               # the token every form of this session carries
    expires_at: str


async def create(db: Database, token_hash: str, staff_id: int, csrf: str, stamp: str, expires_at: str) -> None:
    async with db.transaction():
        await db.execute("INSERT INTO web_sessions (token_hash, staff_id, csrf, created_at, expires_at)"
                         " VALUES (?, ?, ?, ?, ?)", (token_hash, staff_id, csrf, stamp, expires_at))


async def get(db: Database, token_hash: str, now: str) -> Session | None:
    """The live session of ``token_hash``: not expired, its account not turned off."""
    row = await db.fetchone(f"SELECT {COLUMNS}, w.csrf, w.expires_at FROM web_sessions w JOIN staff s"
                            f" ON s.id = w.staff_id WHERE w.token_hash = ? AND w.expires_at > ? AND s.disabled = 0",
                            (token_hash, now))
    if row is None:
        return None
    return Session(StaffMember.from_row(row), row["csrf"], row["expires_at"])


async def end(db: Database, token_hash: str) -> None:
    async with db.transaction():
        await db.execute("DELETE FROM web_sessions WHERE token_hash = ?", (token_hash,))


async def end_all(db: Database, staff_id: int) -> None:
    """Every session of the staff member (a new password, the account turned off)."""
    await db.execute("DELETE FROM web_sessions WHERE staff_id = ?", (staff_id,))


async def failures(db: Database, key: str, since: str) -> int:
    return int(await db.scalar("SELECT count(*) FROM login_failures WHERE key = ? AND at > ?", (key, since)) or 0)


async def failed(db: Database, keys: list[str], stamp: str) -> list[int]:
    """A sign-in attempt counted against each key (before its password is checked); the rows' ids."""
    async with db.transaction():
        return [await db.insert("INSERT INTO login_failures (key, at) VALUES (?, ?)", (k, stamp)) for k in keys]


async def forget(db: Database, ids: list[int]) -> None:
    """The attempt succeeded: it does not count."""
    if ids:
        async with db.transaction():
            await db.execute(f"DELETE FROM login_failures WHERE id IN ({','.join('?' * len(ids))})", ids)


async def succeeded(db: Database, key: str, expired_before: str) -> None:
    """A good login: the account's failures are forgotten, and so is what has expired (both tables)."""
    async with db.transaction():
        await db.execute("DELETE FROM login_failures WHERE key = ? OR at < ?", (key, expired_before))
        await db.execute("DELETE FROM web_sessions WHERE expires_at < ?", (expired_before,))


async def purge(db: Database, now: str, failures_before: str) -> int:
    """Expired sessions and failed sign-ins older than the rate limit's window (housekeeping): how many."""
    async with db.transaction():
        ended = await db.execute("DELETE FROM web_sessions WHERE expires_at <= ?", (now,))
        forgotten = await db.execute("DELETE FROM login_failures WHERE at < ?", (failures_before,))
    return ended + forgotten
