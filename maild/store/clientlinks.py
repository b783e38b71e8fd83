"""The client's side of the web view: the links in client mail (per ticket and per recipient, a random key
of which only the hash is kept, an expiry, revocable by staff), the sessions a visited link starts, and
what a recipient may see (the tickets they are one of the people of)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from maild.store.db import Database, Row

# A ticket's family: it and every ticket merged into it (at any depth). The recipients of a merged-away
# ticket reach the ticket it went into, and nobody else's.
_FAMILY = ("family (id) AS (SELECT CAST(? AS BIGINT) UNION"
           " SELECT t.id FROM tickets t JOIN family f ON t.merged_into = f.id)")
# Account roles that see every ticket of the account (seed: the account's tickets, its contacts' among
# them); a contact sees the tickets it opened or is copied on.
ACCOUNT_ROLES = ("owner", "user")
CHUNK = 500   # recipients per statement (well under every engine's limit on parameters)


@dataclass(frozen=True)
class NewLink:
    ticket_id: int
    recipient: str
    key_hash: str
    expires_at: str


@dataclass(frozen=True)
class Link:
    id: int
    ticket_id: int
    recipient: str
    expires_at: str


@dataclass(frozen=True)
class ClientSession:
    """A client's session: the recipient the link was sent to, the ticket it was for, the CSRF token of the
    session's forms."""

    link_id: int
    recipient: str
    ticket_id: int
    csrf: str


async def issue(db: Database, links: Sequence[NewLink], stamp: str) -> None:
    """Inside the caller's transaction: the links of the mail being queued."""
    if links:
        await db.executemany("INSERT INTO client_links (ticket_id, recipient, key_hash, created_at, expires_at)"
                             " VALUES (?, ?, ?, ?, ?)",
                             [(k.ticket_id, k.recipient.lower(), k.key_hash, stamp, k.expires_at) for k in links])


async def live(db: Database, key_hash: str, now: str) -> Link | None:
    """The link of ``key_hash`` if it is neither revoked nor expired (its ticket may have been merged away:
    the caller follows it)."""
    row = await db.fetchone("SELECT id, ticket_id, recipient, expires_at FROM client_links WHERE key_hash = ?"
                            " AND revoked_at = '' AND expires_at > ?", (key_hash, now))
    return None if row is None else Link(row["id"], row["ticket_id"], row["recipient"], row["expires_at"])


async def start_session(db: Database, link: Link, token_hash: str, csrf: str, stamp: str, expires_at: str) -> None:
    """A session from a visited link (and the link marked as used)."""
    async with db.transaction():
        await db.execute("INSERT INTO client_sessions (token_hash, link_id, csrf, created_at, expires_at)"
                         " VALUES (?, ?, ?, ?, ?)",
                         (token_hash, link.id, csrf, stamp, min(expires_at, link.expires_at)))
        await db.execute("UPDATE client_links SET used_at = ? WHERE id = ?", (stamp, link.id))


async def session(db: Database, token_hash: str, now: str) -> ClientSession | None:
    """The live session of ``token_hash``: not expired, and its link neither revoked nor expired."""
    row = await db.fetchone(
        "SELECT s.link_id, s.csrf, l.recipient, l.ticket_id FROM client_sessions s JOIN client_links l"
        " ON l.id = s.link_id WHERE s.token_hash = ? AND s.expires_at > ? AND l.revoked_at = '' AND l.expires_at > ?",
        (token_hash, now, now))
    return None if row is None else ClientSession(row["link_id"], row["recipient"], row["ticket_id"], row["csrf"])


async def end_session(db: Database, token_hash: str) -> None:
    async with db.transaction():
        await db.execute("DELETE FROM client_sessions WHERE token_hash = ?", (token_hash,))


async def revoke(db: Database, ticket_id: int | None, recipient: str | None, stamp: str, by: str) -> list[str]:
    """Inside a transaction: revoke every live link of ``recipient`` (or, with ``recipient`` None, of each
    recipient who had a link for ticket ``ticket_id`` or a ticket merged into it), whatever ticket it came
    with, and end the sessions those links started. The recipients whose links were revoked."""
    if recipient:
        who = [recipient.lower()]
    else:
        assert ticket_id is not None
        who = [r["recipient"] for r in await db.fetchall(
            f"WITH RECURSIVE {_FAMILY} SELECT DISTINCT recipient FROM client_links"
            f" WHERE ticket_id IN (SELECT id FROM family) ORDER BY recipient", (ticket_id,))]
    revoked: set[str] = set()
    for i in range(0, len(who), CHUNK):
        part = who[i:i + CHUNK]
        live = f"recipient IN ({','.join('?' * len(part))}) AND revoked_at = '' AND expires_at > ?"
        await db.execute(f"DELETE FROM client_sessions WHERE link_id IN (SELECT id FROM client_links WHERE {live})",
                         (*part, stamp))
        rows = await db.fetchall(f"UPDATE client_links SET revoked_at = ?, revoked_by = ? WHERE {live}"
                                 " RETURNING recipient", (stamp, by, *part, stamp))
        revoked |= {r["recipient"] for r in rows}
    return sorted(revoked)


async def for_ticket(db: Database, ticket_id: int, now: str) -> list[Row]:
    """Per recipient, the ticket's links (those of the tickets merged into it too): how many are live, when
    the last was sent and was used, until when the latest runs, and the last revocation."""
    return await db.fetchall(
        f"WITH RECURSIVE {_FAMILY} SELECT l.recipient,"
        " sum(CASE WHEN l.revoked_at = '' AND l.expires_at > ? THEN 1 ELSE 0 END) AS live,"
        " max(l.created_at) AS sent_at, max(l.used_at) AS used_at,"
        " max(CASE WHEN l.revoked_at = '' THEN l.expires_at ELSE '' END) AS expires_at,"
        " max(l.revoked_at) AS revoked_at,"
        " (SELECT x.revoked_by FROM client_links x WHERE x.recipient = l.recipient AND x.revoked_at != ''"
        "  ORDER BY x.revoked_at DESC, x.id DESC LIMIT 1) AS revoked_by"
        " FROM client_links l WHERE l.ticket_id IN (SELECT id FROM family) GROUP BY l.recipient ORDER BY l.recipient",
        (ticket_id, now))


async def purge(db: Database, now: str) -> int:
    """Expired sessions and links (housekeeping): how many rows."""
    async with db.transaction():
        ended = await db.execute("DELETE FROM client_sessions WHERE expires_at <= ?", (now,))
        ended += await db.execute("DELETE FROM client_sessions WHERE link_id IN"
                                  " (SELECT id FROM client_links WHERE expires_at <= ?)", (now,))
        ended += await db.execute("DELETE FROM client_links WHERE expires_at <= ?", (now,))
    return ended


def spellings(recipient: str) -> tuple[str, str]:
    """The recipient as the link has it (its domain in IDNA: the mail went out in ASCII) and as tickets and
    accounts may have it (the domain in Unicode)."""
    email = recipient.lower()
    local, _, domain = email.rpartition("@")
    try:
        return email, f"{local}@{domain.encode('ascii').decode('idna')}" if "xn--" in domain else email
    except UnicodeError:
        return email, email


# -- what a recipient may see --------------------------------------------------------------------------------

async def may_see(db: Database, recipient: str, ticket_id: int) -> bool:
    """Is ``recipient`` one of the people of ticket ``ticket_id`` (a live ticket): the address that opened it
    or one merged into it, a confirmed CC recipient, or the owner or an authorised user of their account."""
    emails = spellings(recipient)
    roles = ",".join("?" * len(ACCOUNT_ROLES))
    row = await db.fetchone(
        f"WITH RECURSIVE {_FAMILY} SELECT 1 AS ok FROM tickets t WHERE t.id IN (SELECT id FROM family) AND"
        f" (t.client_email IN (?, ?) OR EXISTS (SELECT 1 FROM client_people p WHERE p.client_id = t.client_id"
        f" AND p.email IN (?, ?) AND p.role IN ({roles})))"
        f" UNION ALL SELECT 1 FROM cc_recipients c WHERE c.ticket_id = ? AND c.address IN (?, ?)"
        f" AND c.state = 'confirmed'",
        (ticket_id, *emails, *emails, *ACCOUNT_ROLES, ticket_id, *emails))
    return row is not None


async def tickets_of(db: Database, recipient: str, limit: int = 200) -> list[Row]:
    """The live tickets ``recipient`` may see (see :func:`may_see`), the latest reply first: number,
    subject, department, status, last reply."""
    emails = spellings(recipient)
    roles = ",".join("?" * len(ACCOUNT_ROLES))
    return await db.fetchall(
        "WITH RECURSIVE mine (id) AS ("
        " SELECT t.id FROM tickets t WHERE t.client_email IN (?, ?)"
        f" UNION SELECT t.id FROM tickets t JOIN client_people p ON p.client_id = t.client_id"
        f" WHERE p.email IN (?, ?) AND p.role IN ({roles})"
        " UNION SELECT c.ticket_id FROM cc_recipients c WHERE c.address IN (?, ?) AND c.state = 'confirmed'),"
        " up (id) AS (SELECT id FROM mine UNION SELECT t.merged_into FROM tickets t JOIN up ON t.id = up.id"
        " WHERE t.merged_into IS NOT NULL)"
        " SELECT t.tid, t.subject, d.name AS department, t.status, t.last_reply_at FROM tickets t"
        " JOIN departments d ON d.id = t.department_id WHERE t.id IN (SELECT id FROM up) AND t.merged_into IS NULL"
        " ORDER BY t.last_reply_at DESC, t.id DESC LIMIT ?",
        (*emails, *emails, *ACCOUNT_ROLES, *emails, limit))
