"""Queries on senders: the ban list, permanently bouncing addresses, recent tickets per sender."""

from __future__ import annotations

from maild.store.db import NO_LIMIT, Database, Row


def ban_patterns(address: str) -> list[str]:
    """The patterns that would ban ``address``: itself and ``*@its-domain``."""
    addr = address.strip().lower()
    local, _, domain = addr.rpartition("@")
    plain = f"{local.split('+', 1)[0]}@{domain}"  # spammer+anything@ is still spammer@
    return list(dict.fromkeys([addr, plain, f"*@{domain}"])) if domain else [addr]


async def banned(db: Database, addresses: list[str]) -> tuple[str, Row] | None:
    """The first of ``addresses`` on the ban list, with its ban; one query for them all."""
    by_pattern: dict[str, str] = {}
    for address in addresses:
        for pattern in ban_patterns(address):
            by_pattern.setdefault(pattern, address)
    if not by_pattern:
        return None
    rows = await db.fetchall(
        f"SELECT * FROM banned_senders WHERE pattern IN ({','.join('?' * len(by_pattern))})", list(by_pattern))
    if not rows:
        return None
    order = list(by_pattern)
    row = min(rows, key=lambda r: order.index(r["pattern"]))
    return by_pattern[row["pattern"]], row


async def ban(db: Database, pattern: str, reason: str, by: str, stamp: str) -> bool:
    """Ban ``pattern``, inside the caller's transaction; False when it was banned already."""
    changed = await db.execute(
        "INSERT INTO banned_senders (pattern, reason, created_by, created_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (pattern) DO NOTHING",
        (pattern.lower(), reason, by, stamp),
    )
    return bool(changed)


async def unban(db: Database, pattern: str) -> bool:
    async with db.transaction():
        return bool(await db.execute("DELETE FROM banned_senders WHERE pattern = ?", (pattern.lower(),)))


async def bans(db: Database, limit: int | None = None) -> list[Row]:
    """The ban list by pattern; ``limit`` None: all."""
    return await db.fetchall("SELECT * FROM banned_senders ORDER BY pattern LIMIT ?",
                             (NO_LIMIT if limit is None else limit,))


async def record_bounce(db: Database, address: str, status: str, diagnostic: str, ticket_id: int | None,
                        stamp: str) -> None:
    await db.execute(
        "INSERT INTO bounced_addresses (address, status, diagnostic, ticket_id, first_at, last_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (address) DO UPDATE SET status = excluded.status,"
        " diagnostic = excluded.diagnostic, ticket_id = coalesce(excluded.ticket_id, bounced_addresses.ticket_id),"
        " bounces = bounced_addresses.bounces + 1, last_at = excluded.last_at",
        (address.strip().lower(), status, diagnostic, ticket_id, stamp, stamp),
    )


async def tickets_opened_since(db: Database, address: str, since: str) -> int:
    return int(await db.scalar(
        "SELECT count(*) FROM tickets WHERE client_email = ? AND created_at >= ?", (address, since)) or 0)


async def undeliverable(db: Database, addresses: list[str], bounced_since: str) -> dict[str, str]:
    """Which of ``addresses`` we must not mail, and why: a hard (5.x.x) bounce recorded since
    ``bounced_since`` (the mark expires), or a ban. One query for them all."""
    wanted = sorted({a.lower() for a in addresses if a})
    if not wanted:
        return {}
    by_pattern: dict[str, list[str]] = {}
    for address in wanted:
        for pattern in ban_patterns(address):
            by_pattern.setdefault(pattern, []).append(address)
    rows = await db.fetchall(
        f"SELECT 'bounce' AS kind, address AS key, 'bounced ' || status || ' at ' || last_at AS why"
        f" FROM bounced_addresses WHERE address IN ({','.join('?' * len(wanted))}) AND status LIKE '5%'"
        f" AND last_at >= ? UNION ALL SELECT 'ban', pattern, 'banned (' || pattern || ')' FROM banned_senders"
        f" WHERE pattern IN ({','.join('?' * len(by_pattern))})", (*wanted, bounced_since, *by_pattern))
    found: dict[str, str] = {}
    for row in rows:
        # A bounce marks its own address only; a ban pattern (*@domain, plus-tags) covers the addresses it matches.
        for address in [row["key"]] if row["kind"] == "bounce" else by_pattern.get(row["key"], []):
            found.setdefault(address, row["why"])
    return found
