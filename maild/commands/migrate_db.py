"""``ticketd migrate-db --from URL --to URL``: copy a whole install from one database to another (SQLite to
PostgreSQL when one node is outgrown), then verify counts and content hashes table by table. Stop every
ticketd first; the README's "Moving to PostgreSQL" gives the steps."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from maild.cli import EX_DATAERR, EX_SOFTWARE, EX_USAGE
from maild.commands.output import print_json
from maild.config import Settings
from maild.store import migrate
from maild.store.db import DatabaseURL, open_database, parse_url


class _Progress:
    """One line on stderr per table while it copies, when stdout is a terminal."""

    def __init__(self) -> None:
        self.on = sys.stdout.isatty()
        self.table = ""

    def __call__(self, table: str, done: int, total: int) -> None:
        if not self.on:
            return
        if table != self.table and self.table:
            print(file=sys.stderr)
        self.table = table
        print(f"\r{table}: {done}/{total} rows", end="", file=sys.stderr, flush=True)

    def end(self) -> None:
        if self.on and self.table:
            print(file=sys.stderr)


def run(args: argparse.Namespace, settings: Settings) -> int:
    urls: list[DatabaseURL] = []
    for option, text in (("--from", args.source), ("--to", args.target)):
        try:
            urls.append(parse_url(text, settings.state_dir))
        except ValueError as exc:
            print(f"ticketd migrate-db: {option} {text!r}: {exc}", file=sys.stderr)
            return EX_USAGE
    source, target = urls
    if source.display == target.display:
        print("ticketd migrate-db: --from and --to name the same database", file=sys.stderr)
        return EX_USAGE
    return asyncio.run(_run(source, target, args))


async def _run(source_url: DatabaseURL, target_url: DatabaseURL, args: argparse.Namespace) -> int:
    started = time.monotonic()
    source = await open_database(source_url)
    try:
        target = await open_database(target_url)
        try:
            progress = _Progress()
            try:
                results = await migrate.copy(source, target, force=args.force, progress=progress)
            except migrate.SameDatabase:
                progress.end()
                print(f"ticketd migrate-db: --from {source_url.display} and --to {target_url.display} are the same"
                      " database", file=sys.stderr)
                return EX_USAGE
            except migrate.NotEmpty as exc:
                progress.end()
                print(f"ticketd migrate-db: {target_url.display} holds data already ({exc}); empty it, or pass"
                      " --force to delete what is there before the copy", file=sys.stderr)
                return EX_DATAERR
            except migrate.Mismatch as exc:
                progress.end()
                print(f"ticketd migrate-db: the copy did not verify: {exc}; do not switch to"
                      f" {target_url.display}", file=sys.stderr)
                return EX_SOFTWARE
            progress.end()
        finally:
            await target.close()
    finally:
        await source.close()
    seconds = round(time.monotonic() - started, 3)
    if args.json:
        print_json({"from": source_url.display, "to": target_url.display, "seconds": seconds, "verified": True,
                    "tables": {r.table: {"rows": r.rows, "sha256": r.digest} for r in results}})
    else:
        for r in results:
            print(f"{r.table:<20} {r.rows:>9} rows  verified")
        print(f"copied {sum(r.rows for r in results)} rows from {source_url.display} to {target_url.display}"
              f" in {seconds} s; counts and content hashes match")
    return 0
