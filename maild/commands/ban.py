"""``ticketd ban add PATTERN [--reason R] | remove PATTERN | list``: the banned senders list."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import re
import sys

from maild.app import App
from maild.cli import EX_DATAERR, EX_NOINPUT
from maild.commands.output import cut, fetch_limit, print_list
from maild.config import Settings
from maild.store import senders

PATTERN = re.compile(r"^(\*|[^@\s*]+)@[^@\s*]+\.[^@\s*]+$")


async def _run(settings: Settings, args: argparse.Namespace) -> tuple[int, object]:
    async with App(settings) as app:
        assert app.db is not None
        if args.ban_command == "list":
            return 0, cut([dict(r) for r in await senders.bans(app.db, fetch_limit(args.limit))], args.limit)
        pattern = args.pattern.strip().lower()
        if args.ban_command == "add":
            async with app.db.transaction():
                added = await senders.ban(app.db, pattern, args.reason or "", getpass.getuser(), app.clock.stamp())
            return 0, "banned" if added else "already banned"
        removed = await senders.unban(app.db, pattern)
        return (0, "removed") if removed else (EX_NOINPUT, "not on the ban list")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.ban_command in ("add", "remove") and not PATTERN.match(args.pattern.strip()):
        print(f"ticketd ban: {args.pattern!r} is neither an address (user@example.com) nor *@domain",
              file=sys.stderr)
        return EX_DATAERR
    code, result = asyncio.run(_run(settings, args))
    if args.ban_command == "list":
        assert isinstance(result, tuple)
        rows, more = result
        print_list(rows, args.limit, more, args.json, ["PATTERN", "REASON", "BY", "SINCE"],
                   lambda r: [r["pattern"], r["reason"], r["created_by"], r["created_at"][:19]])
        return 0
    print(f"{args.pattern}: {result}", file=sys.stderr if code else sys.stdout)
    return code
