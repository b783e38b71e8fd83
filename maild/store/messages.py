"""Queries on ticket messages (client replies, staff replies, private notes) and their attachments."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

from maild.store.db import Database, Row


@dataclass(frozen=True)
class Message:
    """A message on a ticket: a client's reply, a staff reply or a private note."""

    id: int
    ticket_id: int
    kind: str                   # reply (the client's), staff_reply, note
    author_email: str
    author_name: str
    badge: str                  # Owner, Authorized User, Sub-account, Registered User, Guest, Operator
    subject: str
    body: str                   # what the thread shows (a client's reply without its quoted history)
    body_full: str              # the whole text
    body_html: str | None       # sanitised HTML of the mail, when it had some
    message_id: str             # its mail's Message-ID ("" when it had none)
    inbound_id: int | None      # the spooled mail it came from
    staff_id: int | None        # its staff author
    created_at: str

    @classmethod
    def from_row(cls, row: Row) -> Message:
        values = {name: row[name] for name in _MESSAGE_FIELDS}
        values["message_id"] = values["message_id"] or ""
        return cls(**values)


@dataclass(frozen=True)
class Attachment:
    """A file kept from a message (its bytes in the blob store, by ``sha256``)."""

    id: int
    message_id: int
    filename: str
    content_type: str
    size: int
    sha256: str
    content_id: str | None      # an inline part's Content-ID (``cid:`` images)
    inline: bool

    @classmethod
    def from_row(cls, row: Row) -> Attachment:
        return cls(id=row["id"], message_id=row["message_id"], filename=row["filename"],
                   content_type=row["content_type"], size=row["size"], sha256=row["sha256"],
                   content_id=row["content_id"], inline=bool(row["inline"]))


_MESSAGE_FIELDS = tuple(f.name for f in fields(Message))


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


async def for_ticket(db: Database, ticket_id: int) -> list[Message]:
    rows = await db.fetchall("SELECT * FROM messages WHERE ticket_id = ? ORDER BY created_at, id", (ticket_id,))
    return [Message.from_row(r) for r in rows]


async def attachments_for_ticket(db: Database, ticket_id: int) -> list[Attachment]:
    rows = await db.fetchall(
        "SELECT a.* FROM attachments a JOIN messages m ON m.id = a.message_id WHERE m.ticket_id = ?"
        " ORDER BY a.id",
        (ticket_id,),
    )
    return [Attachment.from_row(r) for r in rows]


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
                           ) -> tuple[dict[int, Message], dict[int, list[Attachment]]]:
    """Messages ``ids`` and their attachments, two queries for them all."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}, {}
    marks = ",".join("?" * len(wanted))
    rows = await db.fetchall(f"SELECT * FROM messages WHERE id IN ({marks})", wanted)
    files: dict[int, list[Attachment]] = {}
    for f in await db.fetchall(f"SELECT * FROM attachments WHERE message_id IN ({marks}) ORDER BY id", wanted):
        files.setdefault(f["message_id"], []).append(Attachment.from_row(f))
    return {r["id"]: Message.from_row(r) for r in rows}, files


async def first_badges(db: Database, ticket_ids: Sequence[int]) -> dict[int, str]:
    """The badge of each ticket's first message (who opened it: Owner, Guest, Operator...)."""
    if not ticket_ids:
        return {}
    marks = ",".join("?" * len(ticket_ids))
    rows = await db.fetchall(
        f"SELECT ticket_id, badge FROM messages WHERE id IN (SELECT min(id) FROM messages WHERE ticket_id IN ({marks})"
        " GROUP BY ticket_id)", list(ticket_ids))
    return {r["ticket_id"]: r["badge"] for r in rows}


async def attachment(db: Database, attachment_id: int) -> tuple[Attachment, int] | None:
    """The attachment and the id of the ticket it belongs to."""
    row = await db.fetchone("SELECT a.*, m.ticket_id AS of_ticket FROM attachments a JOIN messages m"
                            " ON m.id = a.message_id WHERE a.id = ?", (attachment_id,))
    return (Attachment.from_row(row), int(row["of_ticket"])) if row is not None else None


async def get(db: Database, message_id: int) -> Message | None:
    row = await db.fetchone("SELECT * FROM messages WHERE id = ?", (message_id,))
    return Message.from_row(row) if row is not None else None


async def edit(db: Database, message_id: int, body: str, body_html: str | None) -> None:
    """A message's text, changed by staff (the search index follows: its trigger or expression)."""
    await db.execute("UPDATE messages SET body = ?, body_full = ?, body_html = ? WHERE id = ?",
                     (body, body, body_html, message_id))


async def delete(db: Database, message_id: int) -> None:
    """A message and (by the schema's cascade) its attachments' rows and signatures."""
    await db.execute("DELETE FROM messages WHERE id = ?", (message_id,))
