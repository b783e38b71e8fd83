"""``ticketd clients add|import|list`` and ``ticketd staff add|list``."""

from __future__ import annotations

import argparse
import asyncio
import csv
import re
import sys
from pathlib import Path

from maild.app import App
from maild.cli import EX_DATAERR, EX_NOINPUT, EX_USAGE
from maild.commands.output import cut, fetch_limit, print_json, print_list
from maild.config import Settings
from maild.store import people, staff, websessions
from maild.store.db import Row

ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CSV_COLUMNS = ("account", "email", "name", "role")


def _check(email: str, role: str, account: str | None) -> str | None:
    if not ADDRESS.match(email.strip()):
        return f"{email!r} is not an email address"
    if role not in (*people.ROLES, "registered"):
        return f"role {role!r}: expected owner, user, contact or registered"
    if role != "registered" and not account:
        return f"role {role} needs an account"
    if role == "registered" and account:
        return f"role registered has no account, but account {account!r} is given"
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


async def _list(settings: Settings, limit: int | None) -> tuple[list[dict], bool]:
    async with App(settings) as app:
        assert app.db is not None
        return cut([dict(r) for r in await people.listing(app.db, fetch_limit(limit))], limit)


async def _save_staff(settings: Settings, args: argparse.Namespace) -> dict:
    """``staff add EMAIL`` or ``staff set USERNAME``: the fields given change, the rest stay."""
    from maild.store import staff

    async with App(settings) as app:
        assert app.db is not None
        db = app.db
        signature = None
        if args.signature_file:
            path = Path(args.signature_file)
            if not path.is_file():
                raise LookupError(f"no such file: {path}")
            signature = path.read_text(encoding="utf-8").rstrip()
        member = _department_ids(app.departments, args.departments)
        existing = await staff.by_email(db, args.email) if args.staff_command == "add" else None
        if member is None and args.staff_command == "add" and existing is None:
            member = list(app.departments.values())  # a new member works everywhere until told otherwise
        notify = _department_ids(app.departments, args.notify)
        admin = True if args.admin else (False if getattr(args, "no_admin", False) else None)
        async with db.transaction():
            if args.staff_command == "add":
                # Adding an address again changes only what is given (its username and departments stay).
                username = args.username or (existing.username if existing else args.email.split("@")[0])
                other = await staff.by_username(db, username)
                if other is not None and other.email != args.email.lower():
                    raise ValueError(f"username {username!r} is taken by {other.email}; choose --username")
                staff_id = await staff.save(db, email=args.email, username=username, name=args.name,
                                            is_admin=admin, signature=signature, stamp=app.clock.stamp())
            else:
                found = await staff.by_username(db, args.username)
                if found is None:
                    raise LookupError(f"no staff member {args.username!r} (ticketd staff list)")
                staff_id = found.id
                await staff.update(db, staff_id, email=args.email, name=args.name, is_admin=admin,
                                   signature=signature, username=args.new_username)
            await staff.set_departments(db, staff_id, member, notify)
        row = next(r for r in await staff.listing(db) if r["id"] == staff_id)
        return _staff_dict(row)


def _department_ids(known: dict[str, int], value: str | None) -> list[int] | None:
    if value is None:
        return None
    ids = []
    for name in (n.strip() for n in value.split(",")):
        if not name:
            continue
        match = next((i for k, i in known.items() if k.lower() == name.lower()), None)
        if match is None:
            raise LookupError(f"no department {name!r}; configured: {', '.join(known)}")
        ids.append(match)
    return ids


def _staff_dict(row: Row) -> dict:
    return {"username": row["username"], "email": row["email"], "name": row["name"],
            "admin": bool(row["is_admin"]), "departments": [d for d in (row["departments"] or "").split(",") if d],
            "notify": [d for d in (row["notify"] or "").split(",") if d], "signature": row["signature"]}


async def _list_staff(settings: Settings, limit: int | None) -> tuple[list[dict], bool]:
    from maild.store import staff

    async with App(settings) as app:
        assert app.db is not None
        return cut([_staff_dict(r) for r in await staff.listing(app.db, fetch_limit(limit))], limit)


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


def read_password(username: str) -> str | None:
    """The new password: asked twice on a terminal, else the first line of standard input."""
    import getpass

    if sys.stdin.isatty():
        first = getpass.getpass(f"New password for {username}: ")
        if getpass.getpass("Again: ") != first:
            print("ticketd staff passwd: the two passwords differ; nothing changed", file=sys.stderr)
            return None
        return first
    return sys.stdin.readline().rstrip("\r\n")


async def _passwd(settings: Settings, username: str, password: str | None, disabled: bool | None) -> bool:
    from maild import passwords

    async with App(settings) as app:
        assert app.db is not None
        found = await staff.login_record(app.db, username)
        if found is None:
            return False
        member = found[0]
        new_hash = passwords.hash_password(password) if password is not None else None
        async with app.db.transaction():
            if new_hash is not None:
                await staff.set_password(app.db, member.id, new_hash)
            if disabled is not None:
                await staff.set_disabled(app.db, member.id, disabled)
            if new_hash is not None or disabled:   # a new password, or the account off: its sessions end
                await websessions.end_all(app.db, member.id)
        return True


def passwd(args: argparse.Namespace, settings: Settings) -> int:
    from maild import passwords

    password = None
    if not (args.disable or args.enable):
        password = read_password(args.username)
        if password is None:
            return EX_DATAERR
        try:
            passwords.check_new(password, args.username)
        except passwords.WeakPassword as exc:
            print(f"ticketd staff passwd: password refused: {exc}; nothing changed", file=sys.stderr)
            return EX_DATAERR
    disabled = True if args.disable else False if args.enable else None
    if not asyncio.run(_passwd(settings, args.username, password, disabled)):
        print(f"ticketd staff passwd: no staff member {args.username!r} (ticketd staff list shows them)",
              file=sys.stderr)
        return EX_NOINPUT
    what = "disabled" if args.disable else "enabled" if args.enable else "password set"
    print(f"{args.username}: {what}")
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "staff":
        if args.staff_command == "list":
            staff_rows, more = asyncio.run(_list_staff(settings, args.limit))
            print_list(staff_rows, args.limit, more, args.json,
                       ["USERNAME", "EMAIL", "NAME", "ADMIN", "DEPARTMENTS", "NOTIFY"],
                       lambda r: [r["username"], r["email"], r["name"], "yes" if r["admin"] else "",
                                  ",".join(r["departments"]), ",".join(r["notify"])])
            return 0
        if args.staff_command == "passwd":
            return passwd(args, settings)
        email = getattr(args, "email", None)
        if email is not None and not ADDRESS.match(email):
            print(f"ticketd staff {args.staff_command}: {email!r} is not an email address", file=sys.stderr)
            return EX_DATAERR
        try:
            saved = asyncio.run(_save_staff(settings, args))
        except LookupError as exc:
            print(f"ticketd staff {args.staff_command}: {exc.args[0]}", file=sys.stderr)
            return EX_NOINPUT
        except ValueError as exc:
            print(f"ticketd staff {args.staff_command}: {exc}", file=sys.stderr)
            return EX_DATAERR
        if getattr(args, "json", False):
            print_json(saved)
        else:
            print(f"{saved['email']}: staff {saved['username']}{' (admin)' if saved['admin'] else ''}")
        return 0
    if args.clients_command == "list":
        listed, more = asyncio.run(_list(settings, args.limit))
        print_list(listed, args.limit, more, args.json, ["ACCOUNT", "EMAIL", "NAME", "ROLE"],
                   lambda r: [r["account"] or "", r["email"], r["name"], r["role"]])
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
        if role == "registered" and args.account:
            print(f"ticketd clients add: --role registered is a registered user with no account, but --account"
                  f" {args.account!r} was given; drop --account, or choose --role owner, user or contact",
                  file=sys.stderr)
            return EX_USAGE
        problem = _check(args.email, role, args.account)
        if problem:
            print(f"ticketd clients add: {problem}", file=sys.stderr)
            return EX_DATAERR
        rows = [(args.account, args.email, args.name or "", role)]
    for line in asyncio.run(_add_many(settings, rows)):
        print(line)
    return 0
