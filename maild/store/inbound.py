"""Queries on the spool (the ``inbound`` table)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from maild.clock import Clock
from maild.spool import Incoming, SpoolError
from maild.store.db import Database, Row, StorageError, SyncConnection

INSERT_SQL = (
    "INSERT INTO inbound (received_at, source, source_ref, peer, envelope_from, envelope_to,"
    " department_hint, size, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
COLUMNS = "id, received_at, source, source_ref, peer, envelope_from, envelope_to, department_hint, size"


@dataclass(frozen=True)
class InboundRow:
    id: int
    received_at: str
    source: str
    source_ref: str | None
    peer: str | None
    envelope_from: str | None
    envelope_to: tuple[str, ...]
    department_hint: str | None
    size: int

    @classmethod
    def from_row(cls, row: Row) -> InboundRow:
        return cls(
            id=row["id"],
            received_at=row["received_at"],
            source=row["source"],
            source_ref=row["source_ref"],
            peer=row["peer"],
            envelope_from=row["envelope_from"],
            envelope_to=tuple(json.loads(row["envelope_to"] or "[]")),
            department_hint=row["department_hint"],
            size=row["size"],
        )


MAX_BATCH_BYTES = 64 * 1024 * 1024


async def pending(db: Database, limit: int, after: int = 0, max_bytes: int = MAX_BATCH_BYTES,
                  claim: tuple[str, str, str] = ("", "", ""), exclude: Sequence[int] = ()
                  ) -> list[tuple[InboundRow, bytes]]:
    """The oldest rows not yet processed (above queue id ``after``), with their raw bytes: at most
    ``limit`` rows and, past the first, ``max_bytes`` of mail, so a burst of big mail stays in bounds.
    ``claim`` (node, now, until): rows another node works on are left out, and those taken are claimed for
    ``node`` until ``until`` (see :meth:`Database.claim_rows`); ``exclude``: the rows the caller has in hand."""
    node, now, until = claim
    skip = sorted(i for i in exclude if i > after)
    where = "state = 'new' AND id > ?" + (f" AND id NOT IN ({','.join('?' * len(skip))})" if skip else "")
    sizes = sorted(await db.claim_rows("inbound", "id, length(raw) AS n", where, (after, *skip),
                                       "id", limit, node, now, until), key=lambda r: r["id"])
    ids: list[int] = []
    total = 0
    for row in sizes:
        if ids and total + row["n"] > max_bytes:
            break
        ids.append(row["id"])
        total += row["n"]
    if not ids:
        return []
    rows = await db.fetchall(
        f"SELECT {COLUMNS}, raw FROM inbound WHERE id IN ({','.join('?' * len(ids))}) ORDER BY id", ids
    )
    return [(InboundRow.from_row(r), bytes(r["raw"])) for r in rows]


async def get(db: Database, inbound_id: int) -> tuple[InboundRow, bytes] | None:
    row = await db.fetchone(f"SELECT {COLUMNS}, raw FROM inbound WHERE id = ?", (inbound_id,))
    return (InboundRow.from_row(row), bytes(row["raw"])) if row else None


async def insert(db: Database, items: Sequence[Incoming], stamp: str) -> list[int]:
    """Spool ``items`` inside the caller's transaction; their queue ids, in order."""
    return [await db.insert(INSERT_SQL, item.row(stamp)) for item in items]


async def owned(db: Database, ids: list[int], from_state: str = "new") -> set[int]:
    """Those of ``ids`` still in ``from_state``: inside a write transaction, no other worker can take
    them until it ends (rows another worker already took drop out)."""
    marks = ",".join("?" * len(ids))
    # Locked: a worker of another node that took the same rows (its claim ran out) waits, then finds them done.
    rows = await db.fetchall(f"SELECT i.id FROM inbound i WHERE i.state = ? AND i.id IN ({marks})"
                             f"{db.lock_clause('i')}", (from_state, *ids))
    return {r["id"] for r in rows}


async def finish(db: Database, ids: list[int], from_state: str = "new") -> None:
    """Mark processed rows done, in the transaction that processed them. Only what was processed is
    written: an UPDATE rewrites the whole row, raw mail included."""
    if ids:
        marks = ",".join("?" * len(ids))
        await db.execute(f"UPDATE inbound SET state = 'done', attempts = attempts + 1"
                         f" WHERE state = ? AND id IN ({marks})", (from_state, *ids))


async def mark_failed(db: Database, inbound_id: int) -> None:
    await db.execute("UPDATE inbound SET state = 'failed', attempts = attempts + 1 WHERE id = ?", (inbound_id,))


async def count_pending(db: Database) -> int:
    return int(await db.scalar("SELECT count(*) FROM inbound WHERE state = 'new'") or 0)


def spool_sync(conn: SyncConnection, item: Incoming, clock: Clock | None = None) -> int:
    """Commit one message with a synchronous connection (``ticketd pipe``); return its queue id."""
    stamp = (clock or Clock()).stamp()
    try:
        return conn.insert_committed(INSERT_SQL, item.row(stamp))
    except StorageError as exc:
        raise SpoolError(str(exc)) from exc


async def purge_raw(db: Database, done_before: str, kept_before: str, limit: int = 1000) -> int:
    """Empty the raw mail of messages received before ``done_before`` that were processed (a ticket, a
    reply, a duplicate, or blocked and imported since), and before ``kept_before`` of every message no
    longer waiting (blocked and not imported, failed: what an admin may still import or reprocess). At most
    ``limit`` rows; how many. The rows stay (the import log points at them)."""
    blocked = ("SELECT 1 FROM import_log l WHERE l.inbound_id = inbound.id AND l.outcome = 'blocked'"
               " AND l.imported_at IS NULL")
    async with db.transaction():
        n = await db.execute(
            f"UPDATE inbound SET raw = ? WHERE id IN (SELECT id FROM inbound WHERE length(raw) > 0"
            f" AND received_at <= ? AND state = 'done' AND NOT EXISTS ({blocked}) ORDER BY id LIMIT ?)",
            (b"", done_before, limit))
        n += await db.execute(
            "UPDATE inbound SET raw = ? WHERE id IN (SELECT id FROM inbound WHERE length(raw) > 0"
            " AND received_at <= ? AND state IN ('done', 'failed') ORDER BY id LIMIT ?)",
            (b"", kept_before, limit))
    return n
