"""Queries on ticket messages (client replies, staff replies, private notes) and their attachments."""

from __future__ import annotations

from collections.abc import Sequence

from maild.store.db import Database, Row


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
    return await db.insert(
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
    return await db.insert(
        "INSERT INTO attachments (message_id, filename, content_type, size, sha256, content_id, inline)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (message_id, filename, content_type, size, sha256, content_id, int(inline)),
    )


async def add_signature(db: Database, *, message_id: int, kind: str, content_type: str, filename: str,
                        size: int) -> int:
    """An S/MIME or PGP signature part of the message (migration 0006)."""
    return await db.insert(
        "INSERT INTO message_signatures (message_id, kind, content_type, filename, size) VALUES (?, ?, ?, ?, ?)",
        (message_id, kind, content_type, filename, size),
    )


async def signatures_for_ticket(db: Database, ticket_id: int) -> list[Row]:
    return await db.fetchall(
        "SELECT s.* FROM message_signatures s JOIN messages m ON m.id = s.message_id WHERE m.ticket_id = ?"
        " ORDER BY s.id",
        (ticket_id,),
    )


async def for_ticket(db: Database, ticket_id: int) -> list[Row]:
    return await db.fetchall("SELECT * FROM messages WHERE ticket_id = ? ORDER BY id", (ticket_id,))


async def attachments_for_ticket(db: Database, ticket_id: int) -> list[Row]:
    return await db.fetchall(
        "SELECT a.* FROM attachments a JOIN messages m ON m.id = a.message_id WHERE m.ticket_id = ?"
        " ORDER BY a.id",
        (ticket_id,),
    )


async def thread_ids(db: Database, ticket_ids: Sequence[int]) -> dict[int, tuple[list[str], str]]:
    """Per ticket, the Message-IDs of the conversation the client sees (their mail and staff replies), oldest
    first, and the newest of the client's own; one query for them all."""
    wanted = sorted(set(ticket_ids))
    found: dict[int, tuple[list[str], str]] = {t: ([], "") for t in wanted}
    if not wanted:
        return found
    rows = await db.fetchall(f"SELECT ticket_id, message_id, kind FROM messages WHERE ticket_id IN"
                             f" ({','.join('?' * len(wanted))}) AND kind != 'note' AND message_id != ''"
                             " ORDER BY ticket_id, id", wanted)
    for r in rows:
        chain, last = found[r["ticket_id"]]
        chain.append(r["message_id"])
        if r["kind"] == "reply":
            found[r["ticket_id"]] = (chain, r["message_id"])
    return found


async def with_attachments(db: Database, ids: Sequence[int]
                           ) -> tuple[dict[int, Row], dict[int, list[Row]]]:
    """Messages ``ids`` and their attachments, two queries for them all."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}, {}
    marks = ",".join("?" * len(wanted))
    rows = await db.fetchall(f"SELECT * FROM messages WHERE id IN ({marks})", wanted)
    files: dict[int, list[Row]] = {}
    for f in await db.fetchall(f"SELECT * FROM attachments WHERE message_id IN ({marks}) ORDER BY id", wanted):
        files.setdefault(f["message_id"], []).append(f)
    return {r["id"]: r for r in rows}, files
