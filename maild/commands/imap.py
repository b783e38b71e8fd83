"""``ticketd imap status | sync [NAME] [--once] | test NAME``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter

from imapclient.exceptions import IMAPClientError, LoginError

from maild.app import App, stop_on_signals
from maild.cli import EX_NOINPUT, EX_NOPERM, EX_TEMPFAIL, EX_UNAVAILABLE
from maild.commands.output import plural, print_json, print_table
from maild.config import ImapAccount, Settings
from maild.receive.imap import Bridge, FolderMissing, ImapService, Importer, connect
from maild.store import imap as store
from maild.store import leases
from maild.store.db import node_name


def _accounts(settings: Settings, name: str | None) -> list[ImapAccount] | None:
    if name is None:
        return list(settings.imap)
    found = [a for a in settings.imap if a.name == name]
    return found or None


def _no_account(settings: Settings, name: str | None) -> int:
    names = ", ".join(a.name for a in settings.imap) or "none configured"
    print(f"ticketd imap: no [[imap]] mailbox named {name!r} in {settings.source} ({names})", file=sys.stderr)
    return EX_NOINPUT


async def _status(settings: Settings) -> list[dict]:
    async with App(settings) as app:
        assert app.db is not None
        status = {r["account"]: r for r in await store.status_rows(app.db)}
        folders = await store.folder_rows(app.db)
        counts = await store.counts(app.db)
        held = {r["name"]: r for r in await leases.listing(app.db)}
    out = []
    for account in settings.imap:
        row = status.get(account.name)
        out.append({
            "name": account.name,
            "host": f"{account.host}:{account.port}",
            "username": account.username,
            "state": row["state"] if row else "never_run",
            "connected": bool(row["connected"]) if row else False,
            "last_sync": row["last_sync"] if row else None,
            "last_error": row["last_error"] if row else None,
            "last_error_at": row["last_error_at"] if row else None,
            "next_try_at": row["next_try_at"] if row else None,
            "updated_at": row["updated_at"] if row else None,
            "folders": {f["folder"]: {"uidvalidity": f["uidvalidity"], "last_uid": f["last_uid"]}
                        for f in folders if f["account"] == account.name},
            **counts.get(account.name, {"imported": 0, "too_large": 0, "waiting": 0}),
            # Which node imports it (serve holds a lease per mailbox), and until when without renewal.
            "node": lease["holder"] if (lease := held.get(f"imap:{account.name}")) else None,
            "node_until": lease["until"] if lease else None,
        })
    return out


async def _sync_once(settings: Settings, accounts: list[ImapAccount]) -> tuple[int, dict]:
    code = 0
    report: dict = {"accounts": {}, "outcomes": {}}
    async with App(settings, parsers=settings.worker.parsers) as app:
        assert app.db is not None and app.worker is not None
        imap_db = await app.db.another()
        loop = asyncio.get_running_loop()
        try:
            held = {r["name"]: r for r in await leases.listing(imap_db)}
            me, now = node_name(settings.database.node), app.clock.stamp()
            for account in accounts:
                importer = Importer(account, imap_db, Bridge(loop), settings.mail.max_message_size, app.clock)
                entry: dict = {"spooled": 0, "error": None}
                lease = held.get(f"imap:{account.name}")
                if lease and lease["holder"] != me and lease["until"] > now:
                    # Another node's serve imports it: two importers would race on its flags and moves.
                    entry["error"] = (f"node {lease['holder']} imports this mailbox (its lease runs until"
                                      f" {lease['until']}); sync it there, or stop that node first")
                    code = code or EX_TEMPFAIL
                    report["accounts"][account.name] = entry
                    continue
                try:
                    await asyncio.to_thread(importer.run, True)
                except LoginError as exc:
                    entry["error"], code = f"login refused for {account.username}: {exc}", code or EX_NOPERM
                except FolderMissing as exc:
                    entry["error"], code = str(exc), code or EX_NOINPUT
                except (IMAPClientError, OSError, EOFError) as exc:
                    entry["error"] = f"{account.host}:{account.port}: {type(exc).__name__}: {exc}"
                    code = code or EX_TEMPFAIL
                if entry["error"]:
                    await store.set_status(imap_db, account.name, app.clock.stamp(), state="error", connected=0,
                                           last_error=entry["error"], last_error_at=app.clock.stamp())
                entry["spooled"] = importer.imported
                report["accounts"][account.name] = entry
        finally:
            await imap_db.close()
        results = await app.worker.drain()
    report["outcomes"] = dict(sorted(Counter(r.outcome.label for r in results).items()))
    return code, report


async def _sync_forever(settings: Settings, accounts: list[ImapAccount]) -> int:
    stop = stop_on_signals()
    async with App(settings, parsers=settings.worker.parsers) as app:
        assert app.db is not None and app.worker is not None
        # One node at a time per mailbox, as under serve: it waits for a mailbox another node imports.
        service = ImapService(accounts, app.db.another, settings.mail.max_message_size, app.clock,
                              app.worker.wake, lease_seconds=settings.database.lease_seconds,
                              node=settings.database.node)
        await service.start()
        try:
            await app.worker.run(stop)
        finally:
            await service.stop()
    return 0


def _test(account: ImapAccount) -> tuple[int, dict]:
    result: dict = {"name": account.name, "host": f"{account.host}:{account.port}", "security": account.security}
    try:
        client = connect(account)
    except LoginError as exc:
        result["error"] = f"login refused for {account.username}: {exc}"
        return EX_NOPERM, result
    except (IMAPClientError, OSError, EOFError) as exc:
        result["error"] = f"cannot connect: {type(exc).__name__}: {exc}"
        return EX_UNAVAILABLE, result
    try:
        result["capabilities"] = sorted(c.decode() for c in client.capabilities())
        result["folders"] = sorted(name for _, _, name in client.list_folders())
        result["missing_folders"] = [f for f in account.folders if not client.folder_exists(f)]
        if account.move_to:
            result["move_to_exists"] = client.folder_exists(account.move_to)
    finally:
        client.logout()
    return (EX_NOINPUT if result["missing_folders"] else 0), result


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.imap_command == "status":
        rows = asyncio.run(_status(settings))
        if args.json:
            print_json(rows)
        elif not rows:
            print(f"no [[imap]] mailboxes in {settings.source}")
        else:
            print_table(["NAME", "STATE", "CONNECTED", "NODE", "LAST SYNC", "IMPORTED", "TOO LARGE", "LAST ERROR"],
                        [[r["name"], r["state"], "yes" if r["connected"] else "no", r["node"] or "",
                          (r["last_sync"] or "")[:19], r["imported"], r["too_large"], r["last_error"] or ""]
                         for r in rows])
        return 0
    accounts = _accounts(settings, args.name)
    if accounts is None:
        return _no_account(settings, args.name)
    if not accounts:
        print(f"ticketd imap: no [[imap]] mailboxes in {settings.source}", file=sys.stderr)
        return EX_NOINPUT
    if args.imap_command == "test":
        code, result = _test(accounts[0])
        if args.json:
            print_json(result)
        else:
            for key, value in result.items():
                print(f"{key:16} {' '.join(value) if isinstance(value, list) else value}")
        return code
    if not args.once:
        return asyncio.run(_sync_forever(settings, accounts))
    code, report = asyncio.run(_sync_once(settings, accounts))
    if args.json:
        print_json(report)
    else:
        for name, entry in report["accounts"].items():  # an error is said once, below, on stderr
            print(f"{name}: {plural(entry['spooled'], 'message')} imported" + ("; stopped by an error"
                                                                             if entry["error"] else ""))
        for label, n in report["outcomes"].items():
            print(f"  {label:32} {n}")
    if code:
        for name, entry in report["accounts"].items():
            if entry["error"]:
                print(f"ticketd imap sync: {name}: {entry['error']}", file=sys.stderr)
    return code
