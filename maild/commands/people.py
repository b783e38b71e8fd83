"""``ticketd clients add|import|list`` and ``ticketd staff add|list``."""

from __future__ import annotations

import argparse
import asyncio
import csv
import re
import sys
from pathlib import Path

from maild.app import App
from maild.cli import EX_DATAERR, EX_NOINPUT
from maild.commands.output import print_json, print_table
from maild.config import Settings
from maild.store import people

ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CSV_COLUMNS = ("account", "email", "name", "role")


def _check(email: str, role: str, account: str | None) -> str | None:
    if not ADDRESS.match(email.strip()):
        return f"{email!r} is not an email address"
    if role not in (*people.ROLES, "registered"):
        return f"role {role!r}: expected owner, user, contact or registered"
    if role != "registered" and not account:
        return f"role {role} needs an account"
    return None


async def _add_many(settings: Settings, rows: list[tuple[str | None, str, str, str]]) -> list[str]:
    async with App(settings) as app:
        assert app.db is not None
        done = []
        async with app.db.transaction():
            for account, email, name, role in rows:
                what = await people.add_person(app.db, account, email, name, role, app.clock.stamp())
                done.append(f"{email.lower()}: {what}")
        return done


async def _list(settings: Settings, staff: bool) -> list[dict]:
    async with App(settings) as app:
        assert app.db is not None
        rows = await (people.staff_listing(app.db) if staff else people.listing(app.db))
        return [dict(r) for r in rows]


async def _add_staff(settings: Settings, email: str, name: str, username: str) -> None:
    async with App(settings) as app:
        assert app.db is not None
        async with app.db.transaction():
            await people.add_staff(app.db, email, name, username, app.clock.stamp())


def _read_csv(path: Path) -> tuple[list[tuple[str | None, str, str, str]], list[str]]:
    rows, errors = [], []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("email", "role") if c not in (reader.fieldnames or [])]
        if missing:
            return [], [f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(CSV_COLUMNS)}"]
        for line, rec in enumerate(reader, start=2):
            account = (rec.get("account") or "").strip() or None
            email, role = (rec.get("email") or "").strip(), (rec.get("role") or "").strip().lower()
            problem = _check(email, role, account)
            if problem:
                errors.append(f"{path}:{line}: {problem}")
            else:
                rows.append((account, email, (rec.get("name") or "").strip(), role))
    return rows, errors


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "staff":
        if args.staff_command == "list":
            rows = asyncio.run(_list(settings, staff=True))
            if args.json:
                print_json(rows)
            else:
                print_table(["USERNAME", "EMAIL", "NAME"], [[r["username"], r["email"], r["name"]] for r in rows])
            return 0
        if not ADDRESS.match(args.email):
            print(f"ticketd staff add: {args.email!r} is not an email address", file=sys.stderr)
            return EX_DATAERR
        asyncio.run(_add_staff(settings, args.email, args.name or "", args.username or args.email.split("@")[0]))
        print(f"{args.email.lower()}: staff")
        return 0
    if args.clients_command == "list":
        rows = asyncio.run(_list(settings, staff=False))
        if args.json:
            print_json(rows)
        else:
            print_table(["ACCOUNT", "EMAIL", "NAME", "ROLE"],
                        [[r["account"] or "", r["email"], r["name"], r["role"]] for r in rows])
        return 0
    if args.clients_command == "import":
        path = Path(args.file)
        if not path.is_file():
            print(f"ticketd clients import: no such file: {path}", file=sys.stderr)
            return EX_NOINPUT
        rows, errors = _read_csv(path)
        if errors:  # all or nothing: a half-imported file is worse than none
            print("\n".join(f"ticketd clients import: {e}" for e in errors), file=sys.stderr)
            return EX_DATAERR
    else:
        role = args.role
        problem = _check(args.email, role, args.account)
        if problem:
            print(f"ticketd clients add: {problem}", file=sys.stderr)
            return EX_DATAERR
        rows = [(args.account, args.email, args.name or "", role)]
    for line in asyncio.run(_add_many(settings, rows)):
        print(line)
    return 0
