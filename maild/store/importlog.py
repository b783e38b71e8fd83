"""Queries on the mail import log: one row, one outcome, per spooled message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from maild.outcomes import label
from maild.store.db import NO_LIMIT, Database, Row

SELECT = (
    "SELECT l.*, i.received_at, i.source, i.source_ref, i.envelope_from, i.envelope_to, i.size, i.state,"
    " t.tid, coalesce(tm.department_id, t.department_id) AS ticket_department_id, d.name AS department"
    " FROM import_log l JOIN inbound i ON i.id = l.inbound_id LEFT JOIN tickets t ON t.id = l.ticket_id"
    " LEFT JOIN tickets tm ON tm.id = t.merged_into LEFT JOIN departments d ON d.id = l.department_id"
)


@dataclass
class Entry:
    inbound_id: int
    outcome: str
    reason: str = ""
    detail: str = ""
    ticket_id: int | None = None
    department_id: int | None = None
    from_addr: str = ""
    from_name: str = ""
    subject: str = ""
    message_id: str = ""
    dedupe_key: str = ""


async def record(db: Database, entry: Entry, stamp: str) -> int:
    """Write (or, on reprocess, replace) the outcome of one spooled message."""
    return await db.insert(
        "INSERT INTO import_log (inbound_id, processed_at, from_addr, from_name, subject, message_id,"
        " outcome, reason, detail, ticket_id, department_id, dedupe_key)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (inbound_id) DO UPDATE SET processed_at = excluded.processed_at,"
        " from_addr = excluded.from_addr, from_name = excluded.from_name, subject = excluded.subject,"
        " message_id = excluded.message_id, outcome = excluded.outcome, reason = excluded.reason,"
        " detail = excluded.detail, ticket_id = excluded.ticket_id,"
        " department_id = excluded.department_id, dedupe_key = excluded.dedupe_key",
        (entry.inbound_id, stamp, entry.from_addr, entry.from_name, entry.subject[:998], entry.message_id,
         entry.outcome, entry.reason, entry.detail, entry.ticket_id, entry.department_id, entry.dedupe_key),
    )


async def claim_key(db: Database, dedupe_key: str, inbound_id: int) -> Row | None:
    """Claim the message's dedupe key for queue id ``inbound_id``, in the message's transaction; None when it
    is ours now (or was already), else the earlier handling that holds it. The key's unique constraint
    decides, not a read before the write: of two nodes processing the same message at once, the second
    waits for the first's commit and finds the key taken (or claims it, if the first rolled back)."""
    if await db.execute("INSERT INTO message_keys (dedupe_key, inbound_id) VALUES (?, ?)"
                        " ON CONFLICT (dedupe_key) DO NOTHING", (dedupe_key, inbound_id)):
        return None
    holder = await db.fetchone(
        "SELECT k.inbound_id, l.outcome, l.ticket_id, t.tid FROM message_keys k"
        " LEFT JOIN import_log l ON l.inbound_id = k.inbound_id LEFT JOIN tickets t ON t.id = l.ticket_id"
        " WHERE k.dedupe_key = ?", (dedupe_key,))
    if holder is None or holder["inbound_id"] == inbound_id:
        return None   # (a row deleted meanwhile), or this very message processed again
    return holder


async def get(db: Database, log_id: int) -> Row | None:
    return await db.fetchone(f"{SELECT} WHERE l.id = ?", (log_id,))


async def by_inbound(db: Database, inbound_id: int) -> Row | None:
    return await db.fetchone(f"{SELECT} WHERE l.inbound_id = ?", (inbound_id,))


async def listing(
    db: Database,
    outcome: str | None = None,
    reason: str | None = None,
    since: str | None = None,
    limit: int | None = 100,
    after_inbound: int | None = None,
    *,
    until: str | None = None,
    source: str | None = None,
    sender: str | None = None,
    scope: Sequence[int] | None = None,
    offset: int = 0,
) -> list[Row]:
    """Entries, newest first; ``since``/``until`` ISO stamps in the stored form (UTC, ``Z``); ``sender``: part
    of the From or envelope sender address; ``scope``: only entries of these departments (its ticket's
    department now, or, without a ticket, the department it was routed to; entries of neither are left
    out); ``limit`` None: all."""
    where: list[str] = []
    params: list[object] = []
    for clause, value in (("l.outcome = ?", outcome), ("l.reason = ?", reason), ("i.received_at >= ?", since),
                          ("i.received_at < ?", until), ("i.source = ?", source), ("l.inbound_id > ?", after_inbound)):
        if value is not None and value != "":
            where.append(clause)
            params.append(value)
    if sender:
        like = "%" + sender.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append("(lower(l.from_addr) LIKE ? ESCAPE '\\' OR lower(i.envelope_from) LIKE ? ESCAPE '\\')")
        params += [like, like]
    if scope is not None:   # the ticket's department now, when the mail has a ticket; else where it was routed
        marks = ",".join("?" * len(scope)) or "NULL"
        where.append(f"coalesce(tm.department_id, t.department_id, l.department_id) IN ({marks})")
        params += list(scope)
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    return await db.fetchall(f"{SELECT} {clause} ORDER BY l.id DESC LIMIT ? OFFSET ?",
                             (*params, NO_LIMIT if limit is None else limit, offset))


async def counts(db: Database, inbound_ids: tuple[int, int] | None = None) -> dict[str, int]:
    """Outcome label → count, optionally for a range of queue ids."""
    clause = ""
    params: tuple[int, ...] = ()
    if inbound_ids:
        clause, params = "WHERE inbound_id BETWEEN ? AND ?", inbound_ids
    rows = await db.fetchall(
        f"SELECT outcome, reason, count(*) AS n FROM import_log {clause} GROUP BY outcome, reason", params
    )
    return {label(r["outcome"], r["reason"]): r["n"] for r in rows}


async def outcomes_for(db: Database, inbound_ids: list[int]) -> list[Row]:
    """Outcome rows of these queue ids (those processed so far), in queue order."""
    rows: list[Row] = []
    for i in range(0, len(inbound_ids), 500):
        chunk = inbound_ids[i:i + 500]
        marks = ",".join("?" * len(chunk))
        rows += await db.fetchall(
            "SELECT l.inbound_id, l.outcome, l.reason, t.tid, i.source_ref FROM import_log l"
            " JOIN inbound i ON i.id = l.inbound_id LEFT JOIN tickets t ON t.id = l.ticket_id"
            f" WHERE l.inbound_id IN ({marks})",
            chunk,
        )
    return sorted(rows, key=lambda r: r["inbound_id"])


async def mark_imported(db: Database, log_id: int, ticket_id: int, by: str, stamp: str) -> bool:
    """Record who imported a blocked message into which ticket; False if it was imported already."""
    changed = await db.execute(
        "UPDATE import_log SET imported_by = ?, imported_at = ?, ticket_id = ? WHERE id = ? AND imported_at IS NULL",
        (by, stamp, ticket_id, log_id),
    )
    return changed == 1


async def blocked_for_ticket(db: Database, ticket_id: int) -> list[Row]:
    """The ticket's blocked mail not imported yet (seed: Blocked Client Replies), newest first."""
    return await db.fetchall(f"{SELECT} WHERE l.ticket_id = ? AND l.outcome = 'blocked' AND l.imported_at IS NULL"
                             " ORDER BY l.id DESC", (ticket_id,))
