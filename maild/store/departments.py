"""Departments: the configuration is the source of truth; the table gives them stable ids."""

from __future__ import annotations

from collections.abc import Iterable

from maild.store.db import Database


async def sync(db: Database, names: Iterable[str], stamp: str) -> dict[str, int]:
    """Make sure every configured department has a row; return name → id for all rows."""
    async with db.transaction():
        for name in names:
            await db.execute(
                "INSERT INTO departments (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                (name, stamp),
            )
    rows = await db.fetchall("SELECT id, name FROM departments")
    return {row["name"]: row["id"] for row in rows}
