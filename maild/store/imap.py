"""Queries for IMAP import: folder sync state, pending after-import actions, account status."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from maild.spool import Incoming
from maild.store import inbound
from maild.store.db import Database, Row


@dataclass(frozen=True)
class Fetched:
    uid: int
    raw: bytes        # the whole message, or only its header when it is over the size limit
    size: int         # the size the server reported


def source_ref(account: str, folder: str, uidvalidity: int, uid: int) -> str:
    return f"{account}/{folder}/{uidvalidity}/{uid}"


async def folder_state(db: Database, account: str, folder: str) -> tuple[int, int] | None:
    row = await db.fetchone("SELECT uidvalidity, last_uid FROM imap_folders WHERE account = ? AND folder = ?",
                            (account, folder))
    return (row["uidvalidity"], row["last_uid"]) if row else None


async def reset_folder(db: Database, account: str, folder: str, uidvalidity: int, stamp: str) -> None:
    """A new folder, or a new UIDVALIDITY: start from UID 0 (deduplication catches what we had)."""
    async with db.transaction():
        await db.execute(
            "INSERT INTO imap_folders (account, folder, uidvalidity, last_uid, updated_at) VALUES (?, ?, ?, 0, ?)"
            " ON CONFLICT (account, folder) DO UPDATE SET uidvalidity = excluded.uidvalidity, last_uid = 0,"
            " updated_at = excluded.updated_at",
            (account, folder, uidvalidity, stamp),
        )
        await db.execute("DELETE FROM imap_pending WHERE account = ? AND folder = ? AND uidvalidity != ?",
                         (account, folder, uidvalidity))


async def commit_batch(
    db: Database, account: str, folder: str, uidvalidity: int, department: str, items: Sequence[Fetched],
    last_uid: int, stamp: str, act_on: Sequence[int] | None = None,
) -> list[int]:
    """Spool the messages, remember their after-import action (for the UIDs in ``act_on``, default all)
    and the new high UID: one transaction. A message already spooled (a re-fetch after a crash) is not
    spooled again."""
    act = set(act_on) if act_on is not None else {it.uid for it in items}
    refs = [source_ref(account, folder, uidvalidity, it.uid) for it in items]
    async with db.transaction():
        known: set[str] = set()
        for i in range(0, len(refs), 500):
            chunk = refs[i:i + 500]
            marks = ",".join("?" * len(chunk))
            rows = await db.fetchall(
                f"SELECT source_ref FROM inbound WHERE source = 'imap' AND source_ref IN ({marks})", chunk
            )
            known.update(r["source_ref"] for r in rows)
        # The server's size: a message over the limit is spooled with its header only.
        new = [Incoming(raw=item.raw, source="imap", source_ref=ref, department_hint=department, size=item.size)
               for item, ref in zip(items, refs, strict=True) if ref not in known]
        ids = await inbound.insert(db, new, stamp)
        for item in items:
            if item.uid in act:
                await db.execute(
                    "INSERT INTO imap_pending (account, folder, uidvalidity, uid) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT DO NOTHING",
                    (account, folder, uidvalidity, item.uid),
                )
        await db.execute(
            "UPDATE imap_folders SET last_uid = CASE WHEN last_uid < ? THEN ? ELSE last_uid END, updated_at = ?"
            " WHERE account = ? AND folder = ?",
            (last_uid, last_uid, stamp, account, folder),
        )
    return ids


async def pending(db: Database, account: str, folder: str, uidvalidity: int) -> list[int]:
    rows = await db.fetchall(
        "SELECT uid FROM imap_pending WHERE account = ? AND folder = ? AND uidvalidity = ? ORDER BY uid",
        (account, folder, uidvalidity),
    )
    return [r["uid"] for r in rows]


async def actions_done(db: Database, account: str, folder: str, uidvalidity: int, uids: Sequence[int]) -> None:
    async with db.transaction():
        for i in range(0, len(uids), 500):
            chunk = list(uids[i:i + 500])
            await db.execute(
                f"DELETE FROM imap_pending WHERE account = ? AND folder = ? AND uidvalidity = ?"
                f" AND uid IN ({','.join('?' * len(chunk))})",
                (account, folder, uidvalidity, *chunk),
            )


async def set_status(db: Database, account: str, stamp: str, **fields: object) -> None:
    """Update the account's status row (created on first use); only the given fields change."""
    allowed = {"state", "connected", "last_sync", "last_error", "last_error_at", "next_try_at", "capabilities"}
    assert set(fields) <= allowed, set(fields) - allowed
    async with db.transaction():
        await db.execute(
            "INSERT INTO imap_status (account, state, updated_at) VALUES (?, 'starting', ?)"
            " ON CONFLICT (account) DO NOTHING",
            (account, stamp),
        )
        if fields:
            sets = ", ".join(f"{k} = ?" for k in fields)
            await db.execute(f"UPDATE imap_status SET {sets}, updated_at = ? WHERE account = ?",
                             (*fields.values(), stamp, account))


async def status_rows(db: Database) -> list[Row]:
    return await db.fetchall("SELECT * FROM imap_status ORDER BY account")


async def folder_rows(db: Database) -> list[Row]:
    return await db.fetchall("SELECT * FROM imap_folders ORDER BY account, folder")


async def counts(db: Database) -> dict[str, dict[str, int]]:
    """Per account: messages spooled from it, and how many of them are blocked as too large."""
    rows = await db.fetchall(
        "SELECT substr(i.source_ref, 1, instr(i.source_ref, '/') - 1) AS account, count(*) AS spooled,"
        " sum(CASE WHEN l.reason = 'too_large' THEN 1 ELSE 0 END) AS too_large,"
        " sum(CASE WHEN i.state = 'new' THEN 1 ELSE 0 END) AS waiting"
        " FROM inbound i LEFT JOIN import_log l ON l.inbound_id = i.id WHERE i.source = 'imap' GROUP BY 1"
    )
    return {r["account"]: {"imported": r["spooled"], "too_large": r["too_large"] or 0,
                           "waiting": r["waiting"] or 0} for r in rows}
