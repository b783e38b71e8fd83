"""PostgreSQL's migrations: numbered like SQLite's (the same numbers, each engine's own SQL). Only the
standard library here: the synchronous path (``ticketd pipe``) asks for the version without asyncio."""

from __future__ import annotations

from pathlib import Path

MIGRATIONS = Path(__file__).with_name("migrations")


def migration_files() -> list[tuple[int, Path]]:
    return sorted((int(p.name.split("_", 1)[0]), p) for p in MIGRATIONS.glob("*.sql"))


def schema_version() -> int:
    return migration_files()[-1][0]
