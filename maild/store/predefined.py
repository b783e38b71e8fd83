"""Predefined replies (seed: Support > Predefined Replies): titled texts a staff member inserts into a reply,
found by title."""

from __future__ import annotations

from maild.store.db import Database, Row
from maild.store.errors import Conflict


class TitleTaken(Exception):
    """Another predefined reply has this title."""


async def add(db: Database, title: str, body: str, by: str, stamp: str) -> int:
    try:
        return await db.insert("INSERT INTO predefined_replies (title, body, created_by, created_at)"
                               " VALUES (?, ?, ?, ?)", (title, body, by, stamp))
    except Conflict:
        raise TitleTaken(title) from None


async def update(db: Database, reply_id: int, title: str, body: str) -> bool:
    try:
        return await db.execute("UPDATE predefined_replies SET title = ?, body = ? WHERE id = ?",
                                (title, body, reply_id)) == 1
    except Conflict:
        raise TitleTaken(title) from None


async def delete(db: Database, reply_id: int) -> bool:
    return await db.execute("DELETE FROM predefined_replies WHERE id = ?", (reply_id,)) == 1


async def get(db: Database, reply_id: int) -> Row | None:
    return await db.fetchone("SELECT * FROM predefined_replies WHERE id = ?", (reply_id,))


async def by_title(db: Database, title: str) -> Row | None:
    return await db.fetchone("SELECT * FROM predefined_replies WHERE lower(title) = lower(?)", (title,))


async def listing(db: Database, search: str = "", limit: int = 200) -> list[Row]:
    """By title; ``search``: only titles holding that text (any case)."""
    text = search.strip().lower()
    if text:
        like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return await db.fetchall("SELECT * FROM predefined_replies WHERE lower(title) LIKE ? ESCAPE '\\'"
                                 " ORDER BY lower(title) LIMIT ?", (like, limit))
    return await db.fetchall("SELECT * FROM predefined_replies ORDER BY lower(title) LIMIT ?", (limit,))
