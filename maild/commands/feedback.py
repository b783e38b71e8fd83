"""``ticketd feedback list [--answered]``: the feedback requests and what came back."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from maild.app import App
from maild.commands.output import cut, fetch_limit, print_list
from maild.config import Settings
from maild.store import feedback


async def _list(settings: Settings, answered: bool, limit: int | None) -> tuple[list[dict[str, Any]], bool]:
    async with App(settings) as app:
        assert app.db is not None
        rows, more = cut(await feedback.listing(app.db, answered, fetch_limit(limit)), limit)
        return [{"ticket": r["tid"], "subject": r["subject"], "client_email": r["client_email"],
                 "department": r["department"], "requested_at": r["requested_at"], "rating": r["rating"],
                 "comment": r["comment"], "answered_at": r["answered_at"] or None} for r in rows], more


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.feedback_command == "list":
        rows, more = asyncio.run(_list(settings, args.answered, args.limit))
        print_list(rows, args.limit, more, args.json,
                   ["TICKET", "REQUESTED", "CLIENT", "DEPARTMENT", "RATING", "COMMENT"],
                   lambda r: [r["ticket"], r["requested_at"][:19], r["client_email"], r["department"],
                              r["rating"] if r["rating"] is not None else "-", r["comment"]])
        return 0
    raise AssertionError(args.feedback_command)
