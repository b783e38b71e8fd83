"""Queries on tickets, their Message-IDs and their event log."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from maild.store.db import NO_LIMIT, Database, Row

OPEN = "Open"
ANSWERED = "Answered"
CUSTOMER_REPLY = "Customer-Reply"
ON_HOLD = "On Hold"
IN_PROGRESS = "In Progress"
CLOSED = "Closed"
STATUSES = (OPEN, ANSWERED, CUSTOMER_REPLY, ON_HOLD, IN_PROGRESS, CLOSED)

SELECT = (
    "SELECT t.*, d.name AS department, a.username AS assigned_username, a.name AS assigned_name,"
    " f.username AS flagged_username, f.name AS flagged_name"
    " FROM tickets t JOIN departments d ON d.id = t.department_id"
    " LEFT JOIN staff a ON a.id = t.assigned_to LEFT JOIN staff f ON f.id = t.flagged_to"
)


@dataclass(frozen=True)
class Ticket:
    """A ticket as the store reads it: its row, with the names of its department and staff joined in."""

    id: int
    tid: str                      # the public number
    subject: str
    status: str
    priority: str
    department_id: int
    department: str
    client_email: str
    client_name: str
    client_id: int | None         # the account, when the client is known
    created_at: str
    updated_at: str
    last_reply_at: str
    merged_into: int | None       # merged into that ticket (which lives on)
    assigned_to: int | None
    assigned_username: str | None
    assigned_name: str | None
    flagged_to: int | None
    flagged_username: str | None
    flagged_name: str | None
    root_message_id: str          # the first Message-ID of the ticket's thread (our References root)
    thread_index: str             # the client's latest Thread-Index (Outlook)
    last_client_reply_at: str     # "" when the client has not written (a ticket staff opened)
    last_staff_reply_at: str      # "" when staff have not answered yet
    change_seq: int               # a person's replies and option changes (the system's do not count): what lets
                                  # an escalation rule fire again
    first_staff_reply_at: str     # the first response ("" before it; a ticket staff opened has it from then)
    closed_at: str                # when it was last closed ("" while it is not)
    related_service: str          # free text: a hostname or an order number ("" for none)

    @classmethod
    def from_row(cls, row: Row) -> Ticket:
        return cls(**{name: row[name] for name in _FIELDS})

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}


_FIELDS = tuple(f.name for f in fields(Ticket))


def _ticket(row: Row | None) -> Ticket | None:
    return Ticket.from_row(row) if row is not None else None


class TidTaken(Exception):
    """The public ticket number is in use already (draw another)."""


async def create(
    db: Database,
    *,
    tid: str,
    subject: str,
    status: str,
    priority: str,
    department_id: int,
    client_email: str,
    client_name: str,
    client_id: int | None,
    stamp: str,
    root_message_id: str = "",
    by_staff: bool = False,
) -> int:
    """A new ticket; its first message is the client's, or (``by_staff``) a staff member's."""
    # ON CONFLICT, not a caught error: on PostgreSQL a failed statement would abort the whole transaction.
    ticket_id = await db.insert(
        "INSERT INTO tickets (tid, subject, status, priority, department_id, client_email, client_name, client_id,"
        " created_at, updated_at, last_reply_at, root_message_id, last_client_reply_at, last_staff_reply_at,"
        " first_staff_reply_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (tid) DO NOTHING",
        (tid, subject, status, priority, department_id, client_email, client_name, client_id, stamp, stamp, stamp,
         root_message_id, "" if by_staff else stamp, stamp if by_staff else "", stamp if by_staff else ""),
    )
    if not ticket_id:
        raise TidTaken(tid)
    return ticket_id


async def get(db: Database, ticket_id: int) -> Ticket | None:
    return _ticket(await db.fetchone(f"{SELECT} WHERE t.id = ?", (ticket_id,)))


async def get_many(db: Database, ids: Sequence[int]) -> dict[int, Ticket]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = await db.fetchall(f"{SELECT} WHERE t.id IN ({','.join('?' * len(wanted))})", wanted)
    return {r["id"]: Ticket.from_row(r) for r in rows}


async def get_locked(db: Database, ticket_id: int) -> Ticket | None:
    """The ticket as it is now, locked until the caller's write transaction ends (another node's desk or
    pipeline waits for it): what a change is decided on, collision detection included."""
    return _ticket(await db.fetchone(f"{SELECT} WHERE t.id = ?{db.lock_clause('t')}", (ticket_id,)))


async def by_tid(db: Database, tid: str) -> Ticket | None:
    return _ticket(await db.fetchone(f"{SELECT} WHERE t.tid = ?", (tid,)))


async def resolve_merged(db: Database, ticket: Ticket) -> Ticket:
    """Follow ``merged_into`` to the ticket that lives on (a merge keeps old links working)."""
    seen = {ticket.id}
    while ticket.merged_into is not None and ticket.merged_into not in seen:
        nxt = await get(db, ticket.merged_into)
        if nxt is None:
            break
        seen.add(nxt.id)
        ticket = nxt
    return ticket


async def by_mail_ids(db: Database, message_ids: Sequence[str], direction: str | None = None
                      ) -> Ticket | None:
    """The ticket of the latest of ``message_ids`` that we know (References list the oldest first);
    with ``direction="out"``, only among the Message-IDs of mail we sent."""
    wanted = list(dict.fromkeys(message_ids))[-100:]  # a hostile References header can be huge
    if not wanted:
        return None
    marks = ",".join("?" * len(wanted))
    only = " AND m.direction = ?" if direction else ""
    rows = await db.fetchall(
        f"{SELECT.replace('SELECT t.*', 'SELECT m.message_id AS matched, t.*')}"
        f" JOIN mail_ids m ON m.ticket_id = t.id WHERE m.message_id IN ({marks}){only} ORDER BY t.id",
        [*wanted, direction] if direction else wanted,
    )
    if not rows:
        return None
    position = {mid: i for i, mid in enumerate(wanted)}
    return Ticket.from_row(max(rows, key=lambda r: position[r["matched"]]))


async def add_mail_ids(db: Database, by_ticket: Mapping[int, Sequence[str]], direction: str) -> None:
    """Record Message-IDs against their tickets (ticket id → ids), in one statement."""
    await db.executemany(
        "INSERT INTO mail_ids (message_id, ticket_id, direction) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        [(m, ticket_id, direction) for ticket_id, ids in by_ticket.items() for m in ids if m])


async def add_mail_id(db: Database, ticket_id: int, message_id: str, direction: str) -> None:
    if message_id:
        await db.execute(
            "INSERT INTO mail_ids (message_id, ticket_id, direction) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (message_id, ticket_id, direction),
        )


async def set_root(db: Database, ticket_id: int, message_id: str) -> None:
    """The ticket's thread root (first in every References we send): its first message's Message-ID."""
    if message_id:
        await db.execute("UPDATE tickets SET root_message_id = ? WHERE id = ? AND root_message_id = ''",
                         (message_id, ticket_id))


async def set_thread_index(db: Database, ticket_id: int, thread_index: str) -> None:
    """The client's latest Outlook Thread-Index: our next mail extends it."""
    await db.execute("UPDATE tickets SET thread_index = ? WHERE id = ?", (thread_index, ticket_id))


async def update(db: Database, ticket_id: int, stamp: str, *, by_person: bool = True, **fields: Any) -> None:
    """Set ticket columns (department_id, subject, status, priority, client_id, assigned_to, flagged_to,
    related_service); ``by_person``: a person's change (not the system's), after which escalation rules may
    fire again."""
    allowed = {"department_id", "subject", "status", "priority", "client_id", "assigned_to", "flagged_to",
               "related_service"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"not a ticket option: {', '.join(sorted(unknown))}")
    if fields:
        sets, values = [f"{k} = ?" for k in fields], list(fields.values())
        if "status" in fields:
            sets.append("closed_at = ?")
            values.append(stamp if fields["status"] == CLOSED else "")
        if by_person:
            sets.append("change_seq = change_seq + 1")
        await db.execute(f"UPDATE tickets SET {', '.join(sets)}, updated_at = ? WHERE id = ?",
                         (*values, stamp, ticket_id))


async def touch_reply(db: Database, ticket_id: int, status: str, stamp: str, *, staff: bool = False,
                      by_person: bool = True) -> None:
    """A reply on the ticket: the client's, or (``staff``) ours; ``by_person`` as in :func:`update`."""
    # The first response is a person's: an escalation rule's automatic reply does not meet the target.
    first = (", first_staff_reply_at = CASE WHEN first_staff_reply_at = '' THEN ? ELSE first_staff_reply_at END"
             if staff and by_person else "")
    side = ("last_staff_reply_at = ?" if staff else "last_client_reply_at = ?") + first
    changed = ", change_seq = change_seq + 1" if by_person else ""
    await db.execute(
        f"UPDATE tickets SET status = ?, updated_at = ?, last_reply_at = ?, closed_at = ?, {side}{changed}"
        f" WHERE id = ?",
        (status, stamp, stamp, stamp if status == CLOSED else "", stamp, *((stamp,) if first else ()),
         ticket_id),
    )


async def touch_change(db: Database, ticket_id: int, stamp: str) -> None:
    """A person changed the ticket in a way no column shows (its CC recipients): rules may fire again."""
    await db.execute("UPDATE tickets SET updated_at = ?, change_seq = change_seq + 1 WHERE id = ?", (stamp, ticket_id))


async def set_status(db: Database, ticket_id: int, status: str, stamp: str) -> None:
    await db.execute("UPDATE tickets SET status = ?, updated_at = ? WHERE id = ?", (status, stamp, ticket_id))


async def idle(db: Database, statuses: Sequence[str], cutoff: str, limit: int) -> list[int]:
    """Tickets in ``statuses`` whose last message the client could see (``last_reply_at``: a reply of
    either side, never a note or an option change) is at or before ``cutoff``: oldest first, at most
    ``limit`` (index tickets_status)."""
    if not statuses:
        return []
    marks = ", ".join("?" for _ in statuses)
    rows = await db.fetchall(f"SELECT id FROM tickets WHERE status IN ({marks}) AND last_reply_at <= ?"
                             f" AND merged_into IS NULL ORDER BY last_reply_at, id LIMIT ?", (*statuses, cutoff, limit))
    return [r["id"] for r in rows]


async def close_idle(db: Database, ids: Sequence[int], statuses: Sequence[str], cutoff: str, stamp: str
                     ) -> list[tuple[int, str]]:
    """Inside a transaction: close those of ``ids`` that are still idle as :func:`idle` says (another
    run, a reply or a staff member may have changed them since they were picked); (id, status before)
    of each one closed."""
    if not ids or not statuses:
        return []
    marks, smarks = ", ".join("?" for _ in ids), ", ".join("?" for _ in statuses)
    rows = await db.fetchall(f"SELECT t.id, t.status FROM tickets t WHERE t.id IN ({marks})"
                             f" AND t.status IN ({smarks}) AND t.last_reply_at <= ? AND t.merged_into IS NULL"
                             f" ORDER BY t.id{db.lock_clause('t')}", (*ids, *statuses, cutoff))
    if rows:
        await db.execute(f"UPDATE tickets SET status = ?, updated_at = ?, closed_at = ?"
                         f" WHERE id IN ({', '.join('?' for _ in rows)})",
                         (CLOSED, stamp, stamp, *(r["id"] for r in rows)))
    return [(r["id"], r["status"]) for r in rows]


async def log_events(db: Database, entries: Sequence[tuple[int, str, str, dict[str, Any]]], stamp: str) -> None:
    """Several ticket_log rows in one statement: (ticket id, event, actor, detail) each."""
    await db.executemany("INSERT INTO ticket_log (ticket_id, at, actor, event, detail) VALUES (?, ?, ?, ?, ?)",
                         [(t, stamp, actor, event, json.dumps(detail, sort_keys=True))
                          for t, event, actor, detail in entries])


async def log_event(
    db: Database, ticket_id: int, event: str, actor: str, stamp: str, **detail: Any
) -> None:
    await db.execute(
        "INSERT INTO ticket_log (ticket_id, at, actor, event, detail) VALUES (?, ?, ?, ?, ?)",
        (ticket_id, stamp, actor, event, json.dumps(detail, sort_keys=True)),
    )


async def events(db: Database, ticket_id: int) -> list[Row]:
    return await db.fetchall("SELECT * FROM ticket_log WHERE ticket_id = ? ORDER BY id", (ticket_id,))


async def listing(db: Database, status: str | None = None, limit: int | None = None) -> list[Ticket]:
    """Tickets (not merged away), the most recent activity first; ``limit`` None: all."""
    where, params = "WHERE t.merged_into IS NULL", []
    if status:
        where += " AND lower(t.status) = lower(?)"
        params.append(status)
    rows = await db.fetchall(f"{SELECT} {where} ORDER BY t.last_reply_at DESC LIMIT ?",
                             (*params, NO_LIMIT if limit is None else limit))
    return [Ticket.from_row(r) for r in rows]


def clean_tag(tag: str) -> str:
    """A tag as stored: lower case, single spaces, no commas (they separate tags in forms), at most 64
    characters ("" when nothing is left)."""
    return " ".join(tag.replace(",", " ").split()).lower()[:64]


async def tags_of(db: Database, ticket_ids: Sequence[int]) -> dict[int, list[str]]:
    """Each ticket's tags, sorted."""
    found: dict[int, list[str]] = {}
    for i in range(0, len(ticket_ids), 500):
        chunk = list(ticket_ids[i:i + 500])
        marks = ",".join("?" * len(chunk))
        rows = await db.fetchall(f"SELECT ticket_id, tag FROM ticket_tags WHERE ticket_id IN ({marks}) ORDER BY tag",
                                 chunk)
        for r in rows:
            found.setdefault(r["ticket_id"], []).append(r["tag"])
    return found


async def add_tags(db: Database, ticket_id: int, tags: Sequence[str]) -> None:
    for tag in tags:
        await db.execute("INSERT INTO ticket_tags (ticket_id, tag) VALUES (?, ?) ON CONFLICT DO NOTHING",
                         (ticket_id, tag))


async def remove_tags(db: Database, ticket_id: int, tags: Sequence[str]) -> None:
    for tag in tags:
        await db.execute("DELETE FROM ticket_tags WHERE ticket_id = ? AND tag = ?", (ticket_id, tag))


async def all_tags(db: Database, limit: int = 500, departments: Sequence[int] | None = None) -> list[str]:
    """The tags in use (on tickets of ``departments``, when given), the most used first (the list's filter)."""
    where, params = "", []
    if departments is not None:   # from the tags to their tickets (there are far fewer tags than tickets)
        where = (" WHERE EXISTS (SELECT 1 FROM tickets t WHERE t.id = g.ticket_id AND t.department_id IN"
                 f" ({','.join('?' * len(departments)) or 'NULL'}))")
        params = list(departments)
    rows = await db.fetchall(f"SELECT g.tag, count(*) AS n FROM ticket_tags g{where} GROUP BY g.tag"
                             " ORDER BY n DESC, g.tag LIMIT ?", (*params, limit))
    return [r["tag"] for r in rows]


async def merge(db: Database, target: int, sources: Sequence[int], stamp: str, *, subject: str, status: str) -> None:
    """Tickets ``sources`` into ``target`` (seed: Merge): their messages (with their attachments), CC
    recipients, watchers and tags move to it; its last-reply times become the latest of all; the sources
    point at it (``merged_into``: old links and old mail follow), and leave every list."""
    if not sources:
        return
    marks = ",".join("?" * len(sources))
    await db.execute(f"UPDATE messages SET ticket_id = ? WHERE ticket_id IN ({marks})", (target, *sources))
    for table, columns in (("cc_recipients", "address, state, added_by"), ("watchers", "staff_id"),
                           ("ticket_tags", "tag")):
        await db.execute(f"INSERT INTO {table} (ticket_id, {columns}) SELECT ?, {columns} FROM {table}"
                         f" WHERE ticket_id IN ({marks}) ON CONFLICT DO NOTHING", (target, *sources))
    everyone = (target, *sources)
    every = ",".join("?" * len(everyone))
    latest = await db.fetchone(
        f"SELECT max(last_reply_at) AS last_reply_at, max(last_client_reply_at) AS last_client_reply_at,"
        f" max(last_staff_reply_at) AS last_staff_reply_at FROM tickets WHERE id IN ({every})", everyone)
    assert latest is not None
    await db.execute(
        "UPDATE tickets SET subject = ?, status = ?, closed_at = ?, last_reply_at = ?, last_client_reply_at = ?,"
        " last_staff_reply_at = ?, updated_at = ?, change_seq = change_seq + 1 WHERE id = ?",
        (subject, status, stamp if status == CLOSED else "", latest["last_reply_at"], latest["last_client_reply_at"],
         latest["last_staff_reply_at"], stamp, target))
    await db.execute(f"UPDATE tickets SET merged_into = ?, updated_at = ? WHERE id IN ({marks})",
                     (target, stamp, *sources))


async def move_messages(db: Database, source: int, target: int, message_ids: Sequence[int]) -> list[int]:
    """Messages ``message_ids`` of ticket ``source`` to ticket ``target`` (their attachments with them), and
    their mail's Message-IDs, so that answers to that mail find the ticket they are on now. The ids moved."""
    if not message_ids:
        return []
    marks = ",".join("?" * len(message_ids))
    rows = await db.fetchall(f"SELECT id, message_id FROM messages WHERE ticket_id = ? AND id IN ({marks})",
                             (source, *message_ids))
    moved = [r["id"] for r in rows]
    if moved:
        await db.execute(f"UPDATE messages SET ticket_id = ? WHERE id IN ({','.join('?' * len(moved))})",
                         (target, *moved))
    mail = [r["message_id"] for r in rows if r["message_id"]]
    if mail:
        await db.execute(f"UPDATE mail_ids SET ticket_id = ? WHERE ticket_id = ? AND message_id IN"
                         f" ({','.join('?' * len(mail))})", (target, source, *mail))
    return moved


async def recount(db: Database, ticket_id: int, stamp: str) -> None:
    """A ticket's reply times from the messages it holds now (after messages moved in or out)."""
    row = await db.fetchone(
        "SELECT max(CASE WHEN kind != 'note' THEN created_at END) AS last_reply,"
        " max(CASE WHEN kind = 'reply' THEN created_at END) AS last_client,"
        " max(CASE WHEN kind = 'staff_reply' THEN created_at END) AS last_staff,"
        " min(CASE WHEN kind = 'staff_reply' THEN created_at END) AS first_staff,"
        " min(created_at) AS first FROM messages WHERE ticket_id = ?", (ticket_id,))
    assert row is not None
    await db.execute(
        "UPDATE tickets SET last_reply_at = ?, last_client_reply_at = ?, last_staff_reply_at = ?,"
        " first_staff_reply_at = ?, updated_at = ? WHERE id = ?",
        (row["last_reply"] or row["first"] or stamp, row["last_client"] or "", row["last_staff"] or "",
         row["first_staff"] or "", stamp, ticket_id))


async def delete(db: Database, ticket_id: int) -> list[int]:
    """A ticket and everything of it (the schema's cascades: messages, attachments' rows, its log, CC
    recipients, watchers, tags...), and the tickets merged into it, which live on only through it. The ids
    deleted. The import log keeps its rows (their ticket becomes none)."""
    doomed, frontier = [ticket_id], [ticket_id]
    while frontier:
        marks = ",".join("?" * len(frontier))
        frontier = [r["id"] for r in await db.fetchall(f"SELECT id FROM tickets WHERE merged_into IN ({marks})",
                                                        frontier)]
        doomed += frontier
    for doomed_id in reversed(doomed):   # the merged-away first: they point at the others
        await db.execute("DELETE FROM tickets WHERE id = ?", (doomed_id,))
    return doomed
