"""Moving an install from one database to another (``ticketd migrate-db``): SQLite to PostgreSQL when one
node is outgrown, or back. Every table is copied in key order, parents before children, through the
storage interface (so any engine to any engine), then verified: the same row count and the same content
hash on both sides. Attachment files stay where they are (the state directory)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from maild.store.db import Database, Row

# Parents first; each table's key orders the copy (keyset pagination) and identifies a row.
TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("departments", ("id",)),
    ("clients", ("id",)),
    ("client_people", ("client_id", "email")),
    ("registered_users", ("email",)),
    ("staff", ("id",)),
    ("staff_departments", ("staff_id", "department_id")),
    ("inbound", ("id",)),
    ("tickets", ("id",)),
    ("messages", ("id",)),
    ("attachments", ("id",)),
    ("message_signatures", ("id",)),
    ("mail_ids", ("message_id", "ticket_id")),
    ("ticket_log", ("id",)),
    ("import_log", ("id",)),
    ("message_keys", ("dedupe_key",)),
    ("cc_recipients", ("ticket_id", "address")),
    ("watchers", ("ticket_id", "staff_id")),
    ("imap_folders", ("account", "folder")),
    ("imap_pending", ("account", "folder", "uidvalidity", "uid")),
    ("imap_status", ("account",)),
    ("banned_senders", ("pattern",)),
    ("bounced_addresses", ("address",)),
    ("outbox", ("id",)),
    ("notify_queue", ("id",)),
    ("leases", ("name",)),
    ("blobs", ("sha256", "chunk")),
    ("job_runs", ("name",)),
    ("escalations_fired", ("ticket_id", "rule")),
    ("feedback", ("ticket_id",)),
    ("web_sessions", ("token_hash",)),
    ("login_failures", ("id",)),
    ("ticket_tags", ("ticket_id", "tag")),
    ("predefined_replies", ("id",)),
    ("client_links", ("id",)),
    ("client_sessions", ("token_hash",)),
    ("reply_ratings", ("message_id",)),
)
# Columns that point at a row of the same table, set in a second pass (the row pointed at may come later).
SELF_REFERENCES = {"tickets": ("merged_into",)}
BIG_ROWS = {"inbound": 20, "outbox": 50, "blobs": 8}   # raw mail, 1 MiB chunks: fewer rows a chunk
CHUNK = 500

Progress = Callable[[str, int, int], None]   # table, rows copied so far, rows in all


class NotEmpty(Exception):
    """The target holds data already (and ``force`` was not given)."""


class SameDatabase(Exception):
    """``source`` and ``target`` are one database under two names."""


class Mismatch(Exception):
    """The copy does not verify: a table's count or content differs."""


@dataclass(frozen=True)
class TableResult:
    table: str
    rows: int
    digest: str


async def counts(db: Database) -> dict[str, int]:
    return {t: int(await db.scalar(f"SELECT count(*) FROM {t}") or 0) for t, _ in TABLES}


async def check_tables(db: Database) -> None:
    """Every table of the schema is one this module copies (a table added without it fails here first)."""
    missing = set(await db.tables()) - {t for t, _ in TABLES}
    if missing:
        raise Mismatch(f"tables migrate-db does not know: {', '.join(sorted(missing))}")


async def _rows(db: Database, table: str, key: tuple[str, ...], columns: Sequence[str]) -> AsyncIterator[list[Row]]:
    """The table's rows in key order, a chunk at a time."""
    size = BIG_ROWS.get(table, CHUNK)
    select = f"SELECT {', '.join(columns)} FROM {table}"
    order = f" ORDER BY {', '.join(key)} LIMIT ?"
    last: tuple[Any, ...] | None = None
    while True:
        if last is None:
            chunk = await db.fetchall(select + order, (size,))
        else:
            marks = ", ".join("?" * len(key))
            chunk = await db.fetchall(f"{select} WHERE ({', '.join(key)}) > ({marks}){order}", (*last, size))
        if not chunk:
            return
        yield chunk
        last = tuple(chunk[-1][k] for k in key)


def _row_digest(row: Row, columns: Sequence[str]) -> int:
    values = []
    for c in columns:
        v = row[c]
        if isinstance(v, memoryview):
            v = bytes(v)
        elif isinstance(v, str):
            v = v.replace("\x00", "\ufffd")   # as PostgreSQL stores it
        elif isinstance(v, bool):
            v = int(v)
        values.append(v)
    return int.from_bytes(hashlib.sha256(repr(values).encode("utf-8", "surrogatepass")).digest(), "big")


async def digest(db: Database, table: str, key: tuple[str, ...], columns: Sequence[str]) -> TableResult:
    """The table's row count and a hash of its content, independent of row order and engine."""
    total, n = 0, 0
    async for chunk in _rows(db, table, key, columns):
        for row in chunk:
            total = (total + _row_digest(row, columns)) % (1 << 256)
            n += 1
    return TableResult(table, n, f"{total:064x}")


async def same_database(source: Database, target: Database) -> bool:
    """Whether the two connections reach one database (two URLs for one file or server: a relative and an
    absolute path, a host name and its address): a row written through one is read through the other."""
    probe = f"migrate-db-probe-{secrets.token_hex(8)}"
    async with target.transaction():
        await target.execute("INSERT INTO leases (name, holder, until, taken_at) VALUES (?, '', '', '')", (probe,))
    try:
        return bool(await source.scalar("SELECT count(*) FROM leases WHERE name = ?", (probe,)))
    finally:
        async with target.transaction():
            await target.execute("DELETE FROM leases WHERE name = ?", (probe,))


async def copy(source: Database, target: Database, force: bool = False,
               progress: Progress | None = None) -> list[TableResult]:
    """Copy every table from ``source`` to ``target`` (both at the same schema version), then verify it.
    A target with rows refuses (:class:`NotEmpty`) unless ``force``, which empties it first; the source
    itself as the target is refused (:class:`SameDatabase`), whatever the URLs say."""
    await check_tables(source)
    await check_tables(target)
    if await same_database(source, target):
        raise SameDatabase("the two URLs reach the same database")
    have = {t: n for t, n in (await counts(target)).items() if n}
    if have and not force:
        raise NotEmpty(", ".join(f"{t}: {n}" for t, n in have.items()))
    if have:
        async with target.transaction():
            for table, _ in reversed(TABLES):
                await target.execute(f"DELETE FROM {table}")
    source_columns = await source.tables()
    target_columns = await target.tables()
    totals = await counts(source)
    results = []
    for table, key in TABLES:
        columns = [c for c in source_columns[table] if c in set(target_columns[table])]
        later = SELF_REFERENCES.get(table, ())
        insert = (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})")
        done = 0
        pointers: list[tuple[Any, ...]] = []
        async for chunk in _rows(source, table, key, columns):
            rows = []
            for r in chunk:
                values = [None if c in later else r[c] for c in columns]
                pointers += [(r[c], r["id"]) for c in later if r[c] is not None]
                rows.append(values)
            async with target.transaction():
                await target.executemany(insert, rows)
            done += len(rows)
            if progress:
                progress(table, done, totals[table])
        for column in later:
            async with target.transaction():
                await target.executemany(f"UPDATE {table} SET {column} = ? WHERE id = ?", pointers)
        if "id" in columns:
            await target.reset_ids(table)
        if progress and not done:
            progress(table, 0, 0)
    for table, key in TABLES:
        columns = sorted(set(source_columns[table]) & set(target_columns[table]))
        mine, theirs = await digest(source, table, key, columns), await digest(target, table, key, columns)
        if mine != theirs:
            raise Mismatch(f"{table}: {mine.rows} rows in the source, {theirs.rows} in the target"
                           + ("" if mine.rows != theirs.rows else " (their content differs)"))
        results.append(mine)
    return results
