"""``ticketd import-log [...]``, ``import-log show ID [--raw]`` and ``ticketd reprocess ID``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from maild.app import App
from maild.cli import EX_DATAERR, EX_NOINPUT, EX_USAGE
from maild.commands.output import print_json, print_table
from maild.commands.views import import_log_row
from maild.config import Settings
from maild.outcomes import OUTCOME_NAMES
from maild.pipeline.manual import Imported, ImportRefused, import_blocked
from maild.store import importlog, inbound


async def _list(settings: Settings, args: argparse.Namespace) -> list[dict]:
    outcome, _, reason = (args.outcome or "").partition(":")
    async with App(settings) as app:
        assert app.db is not None
        rows = await importlog.listing(app.db, outcome or None, reason or None, args.since, args.limit)
        return [import_log_row(r) for r in rows]


async def _show(settings: Settings, log_id: int) -> tuple[dict, str, bytes] | None:
    async with App(settings) as app:
        assert app.db is not None
        row = await importlog.get(app.db, log_id)
        if row is None:
            return None
        found = await inbound.get(app.db, row["inbound_id"])
        return import_log_row(row), row["detail"], found[1] if found else b""


async def _reprocess(settings: Settings, log_id: int) -> tuple[str, dict | None]:
    async with App(settings) as app:
        assert app.db is not None and app.worker is not None
        row = await importlog.get(app.db, log_id)
        if row is None:
            return "missing", None
        if row["outcome"] != "failed":
            return row["outcome"], import_log_row(row)
        found = await inbound.get(app.db, row["inbound_id"])
        assert found is not None
        await app.worker.process_rows([found], from_state="failed")
        new = await importlog.get(app.db, log_id)
        assert new is not None
        return "done", import_log_row(new)


async def _import(settings: Settings, args: argparse.Namespace) -> Imported:
    async with App(settings) as app:
        assert app.env is not None and app.worker is not None
        return await import_blocked(app.env, app.worker.preparer, args.id, args.ticket, args.kind,
                                    f"cli:{getpass.getuser()}", force=args.force)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if getattr(args, "log_command", None) == "import":
        try:
            done = asyncio.run(_import(settings, args))
        except ImportRefused as exc:
            print(f"ticketd import-log import: {exc}", file=sys.stderr)
            return EX_DATAERR
        print(f"entry {done.log_id} imported into ticket #{done.tid} as a {done.kind}")
        return 0
    if args.command == "reprocess":
        status, row = asyncio.run(_reprocess(settings, args.id))
        if status == "missing":
            print(f"ticketd reprocess: no import-log entry {args.id}", file=sys.stderr)
            return EX_NOINPUT
        if status != "done":
            print(f"ticketd reprocess: entry {args.id} is '{status}', not 'failed'; only failed entries"
                  " are reprocessed", file=sys.stderr)
            return EX_DATAERR
        assert row is not None
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
    if args.outcome and args.outcome.partition(":")[0] not in OUTCOME_NAMES:
        print(f"ticketd import-log: --outcome {args.outcome!r}: expected one of {', '.join(OUTCOME_NAMES)}"
              " or blocked:REASON", file=sys.stderr)
        return EX_USAGE
    rows = asyncio.run(_list(settings, args))
    if args.json:
        print_json(rows)
        return 0
    print_table(
        ["ID", "RECEIVED", "SOURCE", "FROM", "SUBJECT", "OUTCOME", "TICKET"],
        [[r["id"], (r["received_at"] or "")[:19], r["source"], r["from"], r["subject"],
          r["outcome"] + (":" + r["reason"] if r["reason"] else ""), r["ticket"]] for r in rows],
    )
    return 0
