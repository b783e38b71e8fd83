"""Shared output helpers: JSON for scripts, aligned tables for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [min(60, max(len(row[i]) for row in cells)) for i in range(len(headers))]
    for row in cells:
        print("  ".join(v[:w].ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def plural(n: int, noun: str) -> str:
    """``1 message``, ``2 messages``, ``0 messages``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def fetch_limit(limit: int | None) -> int | None:
    """How many rows to ask the store for: one more than ``limit``, to learn whether there were more."""
    return None if limit is None else limit + 1


def cut(rows: Sequence[T], limit: int | None) -> tuple[list[T], bool]:
    """The first ``limit`` of ``rows`` (fetched with :func:`fetch_limit`), and whether any were left out."""
    if limit is None or len(rows) <= limit:
        return list(rows), False
    return list(rows[:limit]), True


def print_list(items: Sequence[dict[str, Any]], limit: int | None, truncated: bool, as_json: bool,
               headers: Sequence[str], row: Callable[[dict[str, Any]], Sequence[Any]]) -> None:
    """A list, never silently cut: JSON ``{"items", "count", "limit", "truncated"}``; a table, with a line on
    stderr when rows were left out (so that ``| wc -l`` still counts rows)."""
    if as_json:
        print_json({"items": list(items), "count": len(items), "limit": limit, "truncated": truncated})
        return
    print_table(headers, [row(i) for i in items])
    if truncated:
        print(f"(the first {limit} shown; more with --limit N or --all)", file=sys.stderr)
