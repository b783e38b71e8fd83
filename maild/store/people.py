"""Queries on people: client accounts and their owner/users/contacts, registered users, and a
ticket's CC recipients."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from maild.store.db import NO_LIMIT, Database, Row
from maild.store.tickets import Ticket

ROLES = ("owner", "user", "contact")
BADGES = {"owner": "Owner", "user": "Authorized User", "contact": "Sub-account"}   # the seed's reply badges
_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")


async def client_by_name(db: Database, name: str) -> Row | None:
    return await db.fetchone("SELECT * FROM clients WHERE lower(name) = lower(?)", (name,))


async def client_name(db: Database, client_id: int | None) -> str:
    """The account's name ("" for none)."""
    if client_id is None:
        return ""
    return str(await db.scalar("SELECT name FROM clients WHERE id = ?", (client_id,)) or "")


async def add_person(db: Database, account: str | None, email: str, name: str, role: str, stamp: str) -> str:
    """Add one person; ``role`` is owner/user/contact (with an account) or registered (without)."""
    email = email.strip().lower()
    if role == "registered":
        await db.execute("INSERT INTO registered_users (email, name, created_at) VALUES (?, ?, ?)"
                         " ON CONFLICT (email) DO UPDATE SET name = excluded.name", (email, name, stamp))
        return "registered user"
    assert account and role in ROLES
    client = await client_by_name(db, account)
    if client is None:
        client_id = await db.insert("INSERT INTO clients (name, created_at) VALUES (?, ?)", (account, stamp))
    else:
        client_id = client["id"]
    if role == "owner":  # one owner per account: a new owner makes the old one an authorised user
        await db.execute("UPDATE client_people SET role = 'user' WHERE client_id = ? AND role = 'owner'"
                         " AND email != ?", (client_id, email))
    await db.execute(
        "INSERT INTO client_people (client_id, email, name, role) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (client_id, email) DO UPDATE SET name = excluded.name, role = excluded.role",
        (client_id, email, name, role),
    )
    return f"{role} of {account}"


async def accounts_of(db: Database, email: str) -> list[Row]:
    """(client_id, role) for every account ``email`` belongs to."""
    return await db.fetchall("SELECT client_id, role FROM client_people WHERE email = ?", (email.lower(),))


def badge(roles: Mapping[int, str], registered: bool, account: int | None, opening: bool) -> tuple[str, int | None]:
    """The seed's badge of a client-side author, and the account a ticket they open belongs to: ``roles``
    (account id → owner/user/contact) are theirs, ``registered`` says they are known at all (an account or a
    registered user), ``account`` is the ticket's, ``opening``: the message opens a ticket. Tied to several
    accounts and none of them the ticket's, or unknown: Guest."""
    if account is not None and account in roles:
        return BADGES[roles[account]], account
    if opening and len(roles) == 1:
        ((only, role),) = roles.items()
        return BADGES[role], only
    if registered and len(roles) <= 1:
        return "Registered User", None
    return "Guest", None


async def badge_and_name(db: Database, email: str, client_id: int | None, opening: bool
                         ) -> tuple[str, str, int | None]:
    """For a client known only by address (a link's recipient): their :func:`badge` on a ticket of account
    ``client_id`` (or on the ticket they are opening), their name as the accounts or the registered users know
    it, and the account a ticket they open belongs to."""
    rows = await db.fetchall("SELECT client_id, role, name FROM client_people WHERE email = ?", (email.lower(),))
    registered = await db.fetchone("SELECT name FROM registered_users WHERE email = ?", (email.lower(),))
    name = next((r["name"] for r in rows if r["name"]), "") or (str(registered["name"] or "") if registered else "")
    label, account = badge({r["client_id"]: r["role"] for r in rows}, bool(rows) or registered is not None,
                           client_id, opening)
    return label, name, account


async def is_registered(db: Database, email: str) -> bool:
    return await db.fetchone("SELECT 1 FROM registered_users WHERE email = ?", (email.lower(),)) is not None


async def listing(db: Database, limit: int | None = None) -> list[Row]:
    """Account people, then registered users, by account, role and address; ``limit`` None: all."""
    return await db.fetchall(
        "SELECT * FROM (SELECT c.name AS account, p.email, p.name, p.role FROM client_people p"
        " JOIN clients c ON c.id = p.client_id UNION ALL SELECT NULL, email, name, 'registered' FROM registered_users)"
        " u ORDER BY account IS NULL, account, role, email LIMIT ?",   # NULLs last on both engines
        (NO_LIMIT if limit is None else limit,))


def normalise_address(address: str) -> str:
    """``Name <a@B.example>`` or ``a@B.example`` → ``a@b.example``; "" when it is not an address."""
    addr = address.strip()
    if "<" in addr and addr.endswith(">"):
        addr = addr[addr.rindex("<") + 1:-1]
    addr = addr.strip().lower()
    return addr if _ADDRESS.match(addr) else ""


async def add_cc(db: Database, ticket_id: int, addresses: Iterable[str], state: str = "confirmed",
                 added_by: str = "") -> None:
    """Add CC recipients; adding a pending one as confirmed confirms it (staff did)."""
    for address in addresses:
        await db.execute(
            "INSERT INTO cc_recipients (ticket_id, address, state, added_by) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (ticket_id, address) DO UPDATE SET state = 'confirmed', added_by = excluded.added_by"
            " WHERE excluded.state = 'confirmed' AND cc_recipients.state != 'confirmed'",
            (ticket_id, address.lower(), state, added_by))


async def remove_cc(db: Database, ticket_id: int, addresses: Iterable[str]) -> None:
    for address in addresses:
        await db.execute("DELETE FROM cc_recipients WHERE ticket_id = ? AND address = ?", (ticket_id, address.lower()))


async def cc_list(db: Database, ticket_id: int) -> list[Row]:
    """The ticket's CC recipients with their state (confirmed | pending)."""
    return await db.fetchall("SELECT address, state, added_by FROM cc_recipients WHERE ticket_id = ? ORDER BY address",
                             (ticket_id,))


async def on_ticket(db: Database, ticket: Ticket, address: str) -> bool:
    """Is ``address`` one of the ticket's own people: the address that opened it, or a confirmed CC recipient
    (a pending one, from a From nobody verified, counts only once staff confirm it)?"""
    address = address.lower()
    return bool(address) and (address == (ticket.client_email or "").lower()
                              or await is_cc(db, ticket.id, address))


async def is_cc(db: Database, ticket_id: int, address: str) -> bool:
    return await db.fetchone("SELECT 1 FROM cc_recipients WHERE ticket_id = ? AND address = ? AND state = 'confirmed'",
                             (ticket_id, address.lower())) is not None


async def ticket_people(db: Database, tickets: Sequence[tuple[int, int | None]]) -> list[Row]:
    """In one query, the client-side people of each (ticket id, client account id), per ticket
    (``for_ticket``): the account's (``role`` owner/user/contact, with names) and the ticket's CC recipients
    (``role`` cc, ``state`` confirmed or pending)."""
    if not tickets:
        return []
    pairs = ", ".join("(CAST(? AS BIGINT), CAST(? AS BIGINT))" for _ in tickets)  # typed for PostgreSQL
    params = [v for pair in tickets for v in pair]
    return await db.fetchall(
        f"WITH wanted (tid, cid) AS (VALUES {pairs})"
        " SELECT w.tid AS for_ticket, p.email, p.name, p.role, 'confirmed' AS state FROM wanted w"
        " JOIN client_people p ON p.client_id = w.cid"
        " UNION ALL SELECT w.tid, c.address, '', 'cc', c.state FROM wanted w"
        " JOIN cc_recipients c ON c.ticket_id = w.tid"
        " ORDER BY 1, 4, 2", params)
