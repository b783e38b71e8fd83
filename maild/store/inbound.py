"""Queries on the spool (the ``inbound`` table)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from maild.store.db import Database

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
    def from_row(cls, row: sqlite3.Row) -> InboundRow:
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


async def pending(db: Database, limit: int, after: int = 0,
                  max_bytes: int = MAX_BATCH_BYTES) -> list[tuple[InboundRow, bytes]]:
    """The oldest rows not yet processed (above queue id ``after``), with their raw bytes: at most
    ``limit`` rows and, past the first, ``max_bytes`` of mail, so a burst of big mail stays in bounds."""
    sizes = await db.fetchall(
        "SELECT id, length(raw) AS n FROM inbound WHERE state = 'new' AND id > ? ORDER BY id LIMIT ?", (after, limit)
    )
    ids, total = [], 0
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


async def claim_many(db: Database, ids: list[int], state: str, from_state: str = "new") -> set[int]:
    """Move rows out of ``from_state`` (inside a transaction); return the ids this call moved, leaving out
    those another worker already took."""
    marks = ",".join("?" * len(ids))
    rows = await db.fetchall(
        f"UPDATE inbound SET state = ?, attempts = attempts + 1 WHERE state = ? AND id IN ({marks}) RETURNING id",
        (state, from_state, *ids),
    )
    return {r["id"] for r in rows}


async def set_state(db: Database, inbound_id: int, state: str) -> None:
    await db.execute("UPDATE inbound SET state = ? WHERE id = ?", (state, inbound_id))


async def count_pending(db: Database) -> int:
    return int(await db.scalar("SELECT count(*) FROM inbound WHERE state = 'new'") or 0)


async def release(db: Database, ids: list[int], state: str, from_state: str = "done") -> None:
    """Undo :func:`claim_many` for rows a worker claimed but left for its next transaction."""
    if ids:
        marks = ",".join("?" * len(ids))
        await db.execute(
            f"UPDATE inbound SET state = ?, attempts = attempts - 1 WHERE state = ? AND id IN ({marks})",
            (state, from_state, *ids),
        )
