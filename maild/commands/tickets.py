"""``ticketd ticket list``, ``ticketd ticket show TID`` and ``ticketd ticket links TID``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from maild.app import App
from maild.cli import EX_NOINPUT, EX_USAGE
from maild.commands.output import cut, fetch_limit, print_json, print_list, print_table
from maild.commands.views import ticket_full, ticket_summary
from maild.config import Settings
from maild.jobs import targets
from maild.store import clientlinks, tickets


async def _list(settings: Settings, status: str | None, limit: int | None) -> tuple[list[dict], bool]:
    async with App(settings) as app:
        assert app.db is not None
        rows, more = cut(await tickets.listing(app.db, status, fetch_limit(limit)), limit)
        now = app.clock.now()
        return [ticket_summary(r, targets.of(r, settings, now)) for r in rows], more


def known_status(value: str) -> str | None:
    """The status as spelled in :data:`tickets.STATUSES` (any case), or None."""
    return next((s for s in tickets.STATUSES if s.lower() == value.strip().lower()), None)


async def _found(app: App, tid: str) -> tickets.Ticket | None:
    """Ticket ``tid`` (``#`` allowed), followed past merges."""
    assert app.db is not None
    row = await tickets.by_tid(app.db, tid.lstrip("#"))
    return await tickets.resolve_merged(app.db, row) if row is not None else None


async def _show(settings: Settings, tid: str) -> dict | None:
    async with App(settings) as app:
        assert app.db is not None
        row = await _found(app, tid)
        return None if row is None else await ticket_full(app.db, row, targets.of(row, settings, app.clock.now()))




async def _links(settings: Settings, tid: str) -> tuple[str, list[dict]] | None:
    async with App(settings) as app:
        assert app.db is not None
        row = await _found(app, tid)
        if row is None:
            return None
        return row.tid, [{"recipient": r["recipient"], "live": int(r["live"] or 0), "sent_at": r["sent_at"],
                          "used_at": r["used_at"] or None, "expires_at": r["expires_at"] or None,
                          "revoked_at": r["revoked_at"] or None, "revoked_by": r["revoked_by"] or None}
                         for r in await clientlinks.for_ticket(app.db, row.id, app.clock.stamp())]


DESK_ACTIONS = ("open", "reply", "note", "set", "watch", "unwatch", "close", "edit", "delete", "split", "merge",
                "revoke-links")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.ticket_command in DESK_ACTIONS:
        from maild.commands import desk

        return desk.run(args, settings)
    if args.ticket_command == "list":
        status = None
        if args.status is not None and (status := known_status(args.status)) is None:
            print(f"ticketd ticket list: --status {args.status!r}: expected one of {', '.join(tickets.STATUSES)}",
                  file=sys.stderr)
            return EX_USAGE
        rows, more = asyncio.run(_list(settings, status, args.limit))
        print_list(rows, args.limit, more, args.json,
                   ["TID", "STATUS", "PRIORITY", "DEPARTMENT", "CLIENT", "LAST REPLY", "SUBJECT"],
                   lambda r: [r["tid"], r["status"], r["priority"], r["department"], r["client_email"],
                              r["last_reply_at"][:19], r["subject"]])
        return 0
    if args.ticket_command == "links":
        found = asyncio.run(_links(settings, args.tid))
        if found is None:
            print(f"ticketd ticket links: no ticket #{args.tid}", file=sys.stderr)
            return EX_NOINPUT
        if args.json:
            print_json({"tid": found[0], "links": found[1]})
        else:
            print_table(["RECIPIENT", "LIVE", "LAST SENT", "LAST USED", "EXPIRES", "REVOKED"],
                        [[r["recipient"], r["live"], r["sent_at"][:16], (r["used_at"] or "-")[:16],
                          (r["expires_at"] or "-")[:16], f"{r['revoked_at'][:16]} by {r['revoked_by']}"
                          if r["revoked_at"] else "-"] for r in found[1]])
        return 0
    data = asyncio.run(_show(settings, args.tid))
    if data is None:
        print(f"ticketd ticket {args.ticket_command}: no ticket #{args.tid}", file=sys.stderr)
        return EX_NOINPUT
    if args.ticket_command == "log":   # the log part of `show`
        if args.json:
            print_json(data["log"])
        else:
            print_table(["AT", "ACTOR", "EVENT", "DETAIL"],
                        [[e["at"][:19], e["actor"], e["event"],
                          " ".join(f"{k}={v}" for k, v in e["detail"].items())] for e in data["log"]])
        return 0
    if args.json:
        print_json(data)
        return 0
    print(f"#{data['tid']}  {data['subject']}")
    print(f"status {data['status']}  priority {data['priority']}  department {data['department']}")
    print(f"client {data['client_name']} <{data['client_email']}>  opened {data['created_at']}")
    if data["assigned"] or data["flagged"] or data["watchers"]:
        print(f"assigned {data['assigned'] or '-'}  flagged {data['flagged'] or '-'}"
              f"  watchers {', '.join(data['watchers']) or '-'}")
    if data["cc"]:
        print("cc " + ", ".join(c["address"] + (" (pending)" if c["state"] == "pending" else "") for c in data["cc"]))
    for m in data["messages"]:  # numbered within the ticket: the first message is 1
        print(f"\n--- {m['number']}. {m['kind']} from {m['author_name']} <{m['author_email']}>"
              f" [{m['badge']}] at {m['created_at']}")
        print(m["body"])
        for a in m["attachments"]:
            print(f"    [attachment] {a['filename']} ({a['content_type']}, {a['size']} bytes)")
        for s in m["signatures"]:
            print(f"    [signature] {s['kind']} {s['filename'] or '-'}"
                  f" ({s['content_type']}, {s['size']} bytes; not checked)")
    return 0
