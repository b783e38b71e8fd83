"""PostgreSQL's migrations (numbered like SQLite's: the same numbers, each engine's own SQL) and the
rewriting of the shared SQL's ``?`` placeholders for its drivers. Only the standard library here: the
synchronous path (``ticketd pipe``) uses it without asyncio."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

MIGRATIONS = Path(__file__).with_name("migrations")


def migration_files() -> list[tuple[int, Path]]:
    return sorted((int(p.name.split("_", 1)[0]), p) for p in MIGRATIONS.glob("*.sql"))


def schema_version() -> int:
    return migration_files()[-1][0]


def storable(params: Sequence[Any]) -> Sequence[Any]:
    """PostgreSQL's text cannot hold NUL (mail can, in a subject or a body): stored as U+FFFD instead."""
    for p in params:
        if type(p) is str and "\x00" in p:
            return [v.replace("\x00", "\ufffd") if type(v) is str else v for v in params]
    return params


_cache: dict[tuple[str, bool], str] = {}


def rewrite(sql: str, numbered: bool) -> str:
    """The shared SQL for a PostgreSQL driver: each ``?`` outside quoted strings and identifiers becomes
    ``$1, $2...`` (``numbered``, asyncpg) or ``%s`` (psycopg2, which then needs a literal ``%`` doubled)."""
    key = (sql, numbered)
    done = _cache.get(key)
    if done is not None:
        return done
    out: list[str] = []
    n = 0
    quote = ""
    for ch in sql:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in ("'", '"'):
            quote = ch
        elif ch == "?":
            n += 1
            out.append(f"${n}" if numbered else "%s")
            continue
        out.append("%%" if ch == "%" and not numbered else ch)   # psycopg2 reads % inside quotes too
    done = "".join(out)
    if len(_cache) < 4096:
        _cache[key] = done
    return done
