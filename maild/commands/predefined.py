"""``ticketd predefined add|list|show|delete``: the predefined replies staff insert into a reply."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any

from maild.app import App
from maild.cli import EX_DATAERR, EX_NOINPUT
from maild.commands.desk import NotFound, UsageError, read_body
from maild.commands.output import cut, fetch_limit, print_json, print_list
from maild.config import Settings
from maild.store import predefined


def as_dict(row: Any) -> dict[str, Any]:
    return {"id": row["id"], "title": row["title"], "body": row["body"], "created_by": row["created_by"],
            "created_at": row["created_at"]}


async def _run(settings: Settings, args: argparse.Namespace) -> tuple[int, Any]:
    async with App(settings) as app:
        assert app.db is not None
        db = app.db
        if args.predefined_command == "add":
            title, body = " ".join(args.title.split()), read_body(args, required=True)
            if not title or not body.strip():
                return EX_DATAERR, "a predefined reply needs a title and a text"
            try:
                return 0, await predefined.add(db, title[:200], body, f"cli:{getpass.getuser()}", app.clock.stamp())
            except predefined.TitleTaken:
                return EX_DATAERR, f"a predefined reply titled {title!r} exists already"
        if args.predefined_command == "list":
            rows, more = cut(await predefined.listing(db, args.search, fetch_limit(args.limit) or 1_000_000),
                             args.limit)
            return 0, ([as_dict(r) for r in rows], more)
        row = await predefined.get(db, args.id)
        if row is None:
            return EX_NOINPUT, f"no predefined reply {args.id} (ticketd predefined list)"
        if args.predefined_command == "delete":
            await predefined.delete(db, args.id)
        return 0, as_dict(row)


def run(args: argparse.Namespace, settings: Settings) -> int:
    name = f"ticketd predefined {args.predefined_command}"
    try:
        code, result = asyncio.run(_run(settings, args))
    except (UsageError, NotFound) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EX_NOINPUT if isinstance(exc, NotFound) else EX_DATAERR
    if code:
        print(f"{name}: {result}", file=sys.stderr)
        return code
    if args.predefined_command == "add":
        print(f"predefined reply {result} added")
    elif args.predefined_command == "list":
        rows, more = result
        print_list(rows, args.limit, more, args.json, ["ID", "TITLE", "TEXT"],
                   lambda r: [r["id"], r["title"], " ".join(r["body"].split())[:60]])
    elif args.predefined_command == "delete":
        print(f"predefined reply {result['id']} ({result['title']}) deleted")
    elif args.json:
        print_json(result)
    else:
        print(result["title"])
        print()
        print(result["body"])
    return 0
