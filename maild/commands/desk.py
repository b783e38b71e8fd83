"""``ticketd ticket open|reply|note|set|watch|unwatch|close|edit|delete|split|merge``: staff actions, all through
the desk.

Who acts is ``--as USERNAME`` (or ``$TICKETD_AS``). Exit codes: 0 done, 64 usage, 65 a value the desk
refused, 66 no such ticket/staff member/department/file, 75 the ticket changed since ``--expect`` (look
again), 77 not allowed for that staff member.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from maild.app import App
from maild.cli import EX_DATAERR, EX_NOINPUT, EX_NOPERM, EX_TEMPFAIL, EX_USAGE
from maild.commands.output import print_json
from maild.config import Settings
from maild.desk.core import StoredFile
from maild.desk.desk import Desk, Result
from maild.desk.errors import Collision, Denied, DeskError, Invalid, NotFound
from maild.desk.options import Options

EXIT = {NotFound: EX_NOINPUT, Denied: EX_NOPERM, Invalid: EX_DATAERR, Collision: EX_TEMPFAIL}


class UsageError(Exception):
    pass


def read_body(args: argparse.Namespace, required: bool) -> str:
    """``--body-file F`` (``-`` for stdin); without it, stdin when it is not a terminal."""
    source = getattr(args, "body_file", None)
    if source == "-" or (source is None and not sys.stdin.isatty()):
        return sys.stdin.read()
    if source is None:
        if required:
            raise UsageError("give the text with --body-file FILE, or --body-file - (standard input)")
        return ""
    path = Path(source)
    if not path.is_file():
        raise NotFound(f"no such file: {path}")
    return path.read_text(encoding="utf-8", errors="replace")


def store_files(settings: Settings, paths: Sequence[str]) -> list[StoredFile]:
    """Staff may attach any file type (seed); names are made safe and bytes stored content-addressed."""
    from maild.desk import uploads
    from maild.store.blobs import BlobSpec

    named = []
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise NotFound(f"no such file to attach: {path}")
        named.append((path.name, path.read_bytes()))
    return uploads.store(BlobSpec.from_settings(settings).open(), named)


def expected(args: argparse.Namespace) -> dict[str, str] | None:
    pairs = getattr(args, "expect", None) or []
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"--expect {pair!r}: expected FIELD=VALUE, e.g. status=Open")
        out[key.strip()] = value
    return out or None


async def _act(settings: Settings, args: argparse.Namespace) -> Result:
    action = args.ticket_command
    who = args.as_user or os.environ.get("TICKETD_AS")
    if not who:
        raise UsageError("say who acts: --as USERNAME (or set $TICKETD_AS)")
    wants_text = ("open", "reply", "note", "edit")
    body = read_body(args, required=True) if action in wants_text else ""
    files = store_files(settings, args.attach or []) if action in ("reply", "open") else []
    async with App(settings) as app:
        desk: Desk = app.desk
        actor = await desk.actor(who)
        if action == "open":
            return await desk.open_ticket(actor, department=args.department, email=args.to, name=args.name or "",
                                          subject=args.subject, body=body, files=files, priority=args.priority)
        if action == "reply":
            return await desk.reply(actor, args.tid, body, files, status=args.status, expected=expected(args))
        if action == "note":
            return await desk.note(actor, args.tid, body, expected=expected(args))
        if action in ("watch", "unwatch"):
            return await desk.watch(actor, args.tid, on=action == "watch")
        if action == "close":
            return await desk.close(actor, args.tid, expected=expected(args))
        if action == "merge":
            return await desk.merge(actor, [args.tid, *args.more], expected=expected(args))
        if action == "edit":
            return await desk.edit_message(actor, args.tid, args.message, body, expected=expected(args))
        if action == "delete":
            if args.message is not None:
                if args.ban_sender:
                    raise UsageError("--ban-sender goes with deleting the whole ticket, not one message")
                return await desk.delete_message(actor, args.tid, args.message, expected=expected(args))
            (tid,) = await desk.delete_tickets(actor, [args.tid], ban_sender=args.ban_sender)
            gone = Result(0, tid)
            gone.notes.append(f"deleted ticket #{tid}" + (" and banned its client" if args.ban_sender else ""))
            return gone
        if action == "revoke-links":
            return await desk.revoke_links(actor, args.tid, args.recipient)
        if action == "split":
            return await desk.split(actor, args.tid, args.messages, department=args.department, priority=args.priority,
                                    subject=args.subject, notify=args.notify, expected=expected(args))
        opts = Options(status=args.status, priority=args.priority, department=args.department, subject=args.subject,
                       assign=args.assign, unassign=args.unassign, flag=args.flag, unflag=args.unflag,
                       cc_add=args.cc_add or (), cc_remove=args.cc_remove or (), client=args.client,
                       tags_add=args.tag or (), tags_remove=args.untag or (), service=args.service)
        return await desk.set_options(actor, args.tid, opts, expected=expected(args))


def as_dict(result: Result) -> dict[str, Any]:
    return {"tid": result.tid, "message_id": result.message_id,
            "events": [{"event": e.kind.value, "changes": {k: list(v) for k, v in e.changes.items()}}
                       for e in result.events],
            "notes": result.notes}


def run(args: argparse.Namespace, settings: Settings) -> int:
    name = f"ticketd ticket {args.ticket_command}"
    try:
        result = asyncio.run(_act(settings, args))
    except UsageError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EX_USAGE
    except DeskError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return next((code for kind, code in EXIT.items() if isinstance(exc, kind)), EX_DATAERR)
    if args.json:
        print_json(as_dict(result))
        return 0
    done = ", ".join(e.kind.value.replace("_", " ") for e in result.events) or "no change"
    if args.ticket_command in ("merge", "split", "revoke-links") or (args.ticket_command == "delete" and result.notes):
        print(f"#{result.tid}: {result.notes[0]}")
        return 0
    if args.ticket_command in ("edit", "delete"):
        print(f"#{result.tid}: message {result.message_id} {'edited' if args.ticket_command == 'edit' else 'deleted'}")
        return 0
    print(f"#{result.tid}: {done}")
    for note in result.notes:
        print(f"note: {note}")
    return 0
