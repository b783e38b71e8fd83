"""Queries on ticket messages (client replies, staff replies, private notes) and their attachments."""

from __future__ import annotations

import sqlite3

from maild.store.db import Database


async def add(
    db: Database,
    *,
    ticket_id: int,
    kind: str,
    author_email: str,
    author_name: str,
    badge: str,
    subject: str,
    body: str,
    body_full: str,
    body_html: str | None,
    message_id: str,
    inbound_id: int | None,
    stamp: str,
    staff_id: int | None = None,
) -> int:
    return await db.execute(
        "INSERT INTO messages (ticket_id, kind, author_email, author_name, badge, subject, body, body_full,"
        " body_html, message_id, inbound_id, staff_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (ticket_id, kind, author_email, author_name, badge, subject, body, body_full, body_html,
         message_id, inbound_id, staff_id, stamp),
    )


async def add_attachment(
    db: Database,
    *,
    message_id: int,
    filename: str,
    content_type: str,
    size: int,
    sha256: str,
    content_id: str | None,
    inline: bool,
) -> int:
    return await db.execute(
        "INSERT INTO attachments (message_id, filename, content_type, size, sha256, content_id, inline)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (message_id, filename, content_type, size, sha256, content_id, int(inline)),
    )


async def for_ticket(db: Database, ticket_id: int) -> list[sqlite3.Row]:
    return await db.fetchall("SELECT * FROM messages WHERE ticket_id = ? ORDER BY id", (ticket_id,))


async def attachments_for_ticket(db: Database, ticket_id: int) -> list[sqlite3.Row]:
    return await db.fetchall(
        "SELECT a.* FROM attachments a JOIN messages m ON m.id = a.message_id WHERE m.ticket_id = ?"
        " ORDER BY a.id",
        (ticket_id,),
    )


async def get(db: Database, message_id: int) -> sqlite3.Row | None:
    return await db.fetchone("SELECT * FROM messages WHERE id = ?", (message_id,))


async def attachments_of(db: Database, message_id: int) -> list[sqlite3.Row]:
    return await db.fetchall("SELECT * FROM attachments WHERE message_id = ? ORDER BY id", (message_id,))


async def thread_ids(db: Database, ticket_id: int) -> tuple[list[str], str]:
    """The Message-IDs of the conversation the client sees (their mail and staff replies), oldest first, and
    the newest of the client's own."""
    rows = await db.fetchall("SELECT message_id, kind FROM messages WHERE ticket_id = ? AND kind != 'note'"
                             " AND message_id != '' ORDER BY id", (ticket_id,))
    client = [r["message_id"] for r in rows if r["kind"] == "reply"]
    return [r["message_id"] for r in rows], client[-1] if client else ""
