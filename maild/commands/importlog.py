"""``ticketd import-log [...]``, ``import-log show ID [--raw]`` and ``ticketd reprocess ID``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from maild.app import App
from maild.cli import EX_DATAERR, EX_NOINPUT, EX_USAGE
from maild.commands.output import cut, fetch_limit, print_json, print_list
from maild.commands.views import import_log_row
from maild.config import Settings
from maild.filters import FilterError, parse_instant, parse_outcome
from maild.pipeline.manual import Imported, ImportNeedsTarget, ImportNotFound, ImportRefused, import_blocked, reprocess
from maild.store import importlog, inbound


async def _list(settings: Settings, args: argparse.Namespace, outcome: str | None, reason: str | None,
                since: str | None) -> tuple[list[dict], bool]:
    async with App(settings) as app:
        assert app.db is not None
        rows, more = cut(await importlog.listing(app.db, outcome, reason, since, fetch_limit(args.limit)), args.limit)
        return [import_log_row(r) for r in rows], more


async def _show(settings: Settings, log_id: int) -> tuple[dict, str, bytes] | None:
    async with App(settings) as app:
        assert app.db is not None
        row = await importlog.get(app.db, log_id)
        if row is None:
            return None
        found = await inbound.get(app.db, row["inbound_id"])
        return import_log_row(row), row["detail"], found[1] if found else b""


async def _reprocess(settings: Settings, log_id: int) -> dict:
    async with App(settings) as app:
        assert app.env is not None and app.worker is not None
        return import_log_row(await reprocess(app.env, app.worker, log_id))


async def _import(settings: Settings, args: argparse.Namespace) -> Imported:
    async with App(settings) as app:
        assert app.env is not None and app.worker is not None
        return await import_blocked(app.env, app.worker.preparer, args.id, args.ticket, args.kind,
                                    f"cli:{getpass.getuser()}", force=args.force, new=args.new,
                                    department=args.department)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if getattr(args, "log_command", None) == "import":
        if args.department is not None and not args.new:
            print("ticketd import-log import: --department goes with --new (the department of the new ticket)",
                  file=sys.stderr)
            return EX_USAGE
        if args.new and args.kind == "note":
            print("ticketd import-log import: --new opens a ticket with the client's message; a note needs a"
                  " ticket: --ticket TID --as note", file=sys.stderr)
            return EX_USAGE
        try:
            done = asyncio.run(_import(settings, args))
        except ImportRefused as exc:
            print(f"ticketd import-log import: {exc}", file=sys.stderr)
            return EX_NOINPUT if isinstance(exc, ImportNotFound) else (
                EX_USAGE if isinstance(exc, ImportNeedsTarget) else EX_DATAERR)
        if done.new:
            print(f"entry {done.log_id} imported as new ticket #{done.tid}")
        else:
            print(f"entry {done.log_id} imported into ticket #{done.tid} as a {done.kind}")
        return 0
    if args.command == "reprocess":
        try:
            row = asyncio.run(_reprocess(settings, args.id))
        except ImportRefused as exc:
            print(f"ticketd reprocess: {exc}", file=sys.stderr)
            return EX_NOINPUT if isinstance(exc, ImportNotFound) else EX_DATAERR
        if args.json:
            print_json(row)
        else:
            print(f"entry {row['id']}: {row['outcome']}{':' + row['reason'] if row['reason'] else ''}"
                  f"{' ticket #' + row['ticket'] if row['ticket'] else ''}")
        return 0
    if getattr(args, "log_command", None) == "show":
        found = asyncio.run(_show(settings, args.id))
        if found is None:
            print(f"ticketd import-log show: no entry {args.id}", file=sys.stderr)
            return EX_NOINPUT
        row, detail, raw = found
        if args.raw:
            sys.stdout.buffer.write(raw)
            return 0
        if args.json:
            print_json({**row, "detail": detail})
            return 0
        for key, value in row.items():
            shown = ", ".join(value) if isinstance(value, list) else ("" if value is None else value)
            print(f"{key:14} {shown}")
        if detail:
            print(f"\n{detail}")
        return 0
    try:
        outcome, reason = parse_outcome(args.outcome) if args.outcome is not None else (None, None)
        since = parse_instant(args.since) if args.since is not None else None
    except FilterError as exc:
        print(f"ticketd import-log: {exc}", file=sys.stderr)
        return EX_USAGE
    rows, more = asyncio.run(_list(settings, args, outcome, reason, since))
    print_list(rows, args.limit, more, args.json, ["ID", "RECEIVED", "SOURCE", "FROM", "SUBJECT", "OUTCOME", "TICKET"],
               lambda r: [r["id"], (r["received_at"] or "")[:19], r["source"], r["from"], r["subject"],
                          r["outcome"] + (":" + r["reason"] if r["reason"] else ""), r["ticket"]])
    return 0
