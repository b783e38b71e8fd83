"""``ticketd outbox list | show ID | retry ID | test ADDRESS``: the outbound queue, and a relay check."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import formataddr, formatdate, make_msgid
from typing import Any

from maild.app import App
from maild.cli import EX_DATAERR, EX_NOINPUT, EX_UNAVAILABLE
from maild.commands.output import cut, fetch_limit, print_json, print_list
from maild.config import Settings
from maild.notify.transport import Delivery, Envelope, build_transport
from maild.store import outbox
from maild.store.outbox import OutboxRow


def row_dict(row: OutboxRow) -> dict[str, Any]:
    return {
        "id": row.id, "state": row.state, "ticket_id": row.ticket_id, "event": row.event,
        "audience": row.audience, "automatic": row.automatic, "sender": row.sender, "recipient": row.recipient,
        "message_id": row.message_id, "subject": row.subject, "attempts": row.attempts,
        "created_at": row.created_at, "next_attempt_at": row.next_attempt_at, "sent_at": row.sent_at,
        "last_error": row.last_error, "bounced_at": row.bounced_at, "size": row.size,
    }


def headers(raw: bytes) -> list[list[str]]:
    """The message's header fields as [name, decoded value] pairs, in order."""
    parsed = BytesHeaderParser(policy=policy.default).parsebytes(raw)
    out = []
    for name, value in parsed.raw_items():
        try:
            text = str(policy.default.header_fetch_parse(name, value))
        except Exception:  # a malformed field: show it as it is
            text = str(value)
        out.append([name, " ".join(text.split())])
    return out


async def _list(settings: Settings, state: str | None, limit: int | None) -> tuple[list[dict[str, Any]], bool]:
    async with App(settings) as app:
        assert app.db is not None
        rows, more = cut(await outbox.listing(app.db, state, fetch_limit(limit)), limit)
        return [row_dict(r) for r in rows], more


async def _get(settings: Settings, outbox_id: int) -> OutboxRow | None:
    async with App(settings) as app:
        assert app.db is not None
        return await outbox.get(app.db, outbox_id)


async def _retry(settings: Settings, outbox_id: int) -> str | None:
    async with App(settings) as app:
        assert app.db is not None
        async with app.db.transaction() as db:
            return await outbox.retry(db, outbox_id, app.clock.stamp())


def test_message(settings: Settings, address: str) -> Envelope:
    """A small mail from the first department's address, sent outside the queue."""
    dept = settings.departments[0]
    sender = dept.addresses[0]
    msg = EmailMessage()
    msg["From"] = formataddr((settings.outbound.from_name or dept.name, sender))
    msg["To"] = address
    msg["Subject"] = "ticketd outbox test"
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid("outbox-test", domain=settings.mail.domain)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content("This is a test message from ticketd (`ticketd outbox test`). It went through the configured\n"
                    "outbound transport directly, not through the outbox queue. Nothing needs to be done.\n")
    return Envelope(sender, address, msg.as_bytes(policy=policy.SMTP), f"test-{uuid.uuid4().hex}")


async def _test(settings: Settings, address: str) -> tuple[str, Delivery]:
    transport = build_transport(settings)
    session = transport.session()
    try:
        return transport.describe(), await session.send(test_message(settings, address))
    finally:
        await session.close()


def _print_row(row: OutboxRow) -> None:
    print(f"outbox #{row.id}  {row.state}  attempts {row.attempts}  event {row.event}  audience {row.audience}"
          f"{'  automatic' if row.automatic else ''}")
    print(f"from {row.sender}  to {row.recipient}  ticket {row.ticket_id if row.ticket_id is not None else '-'}")
    print(f"created {row.created_at}  next try {row.next_attempt_at}  sent {row.sent_at or '-'}"
          f"{'  bounced ' + row.bounced_at if row.bounced_at else ''}")
    if row.last_error:
        print(f"last error: {row.last_error}")
    print()
    for name, value in headers(row.raw):
        print(f"{name}: {value}")


def run(args: argparse.Namespace, settings: Settings) -> int:
    command = args.outbox_command
    if command == "list":
        rows, more = asyncio.run(_list(settings, args.state, args.limit))
        print_list(rows, args.limit, more, args.json,
                   ["ID", "STATE", "TRIES", "CREATED", "NEXT TRY", "RECIPIENT", "EVENT", "LAST ERROR"],
                   lambda r: [r["id"], r["state"], r["attempts"], r["created_at"][:19],
                              r["next_attempt_at"][:19] if r["state"] == "queued" else "", r["recipient"], r["event"],
                              r["last_error"]])
        return 0
    if command in ("show", "retry"):
        if command == "retry":
            state = asyncio.run(_retry(settings, args.id))
            if state is None:
                print(f"ticketd outbox retry: no outbox mail #{args.id}", file=sys.stderr)
                return EX_NOINPUT
            if state == outbox.SENT:
                print(f"ticketd outbox retry: #{args.id} was sent already; nothing to do", file=sys.stderr)
                return EX_DATAERR
            print(f"#{args.id} queued (was {state}); the daemon's sender will deliver it")
            return 0
        row = asyncio.run(_get(settings, args.id))
        if row is None:
            print(f"ticketd outbox show: no outbox mail #{args.id}", file=sys.stderr)
            return EX_NOINPUT
        if args.raw:
            sys.stdout.flush()
            sys.stdout.buffer.write(row.raw)
        elif args.json:
            print_json({**row_dict(row), "headers": headers(row.raw)})
        else:
            _print_row(row)
        return 0
    if command == "test":
        if "@" not in args.address.strip("@"):
            print(f"ticketd outbox test: {args.address!r} is not an address", file=sys.stderr)
            return EX_DATAERR
        via, d = asyncio.run(_test(settings, args.address))
        if args.json:
            print_json({"ok": d.ok, "via": via, "recipient": args.address, "status": d.status,
                        "step": d.step or None, "code": d.code, "text": d.text, "where": d.where or None,
                        "transcript": list(d.transcript)})
        else:
            for line in d.transcript:
                print(f"  {line}")
            if d.ok:
                print(f"sent to {args.address} via {via}" + (f": {d.where}" if d.where else f": {d.code} {d.text}"))
        if not d.ok:
            answer = " ".join(str(x) for x in (d.code, d.text) if x is not None and x != "")
            print(f"ticketd outbox test: failed at {d.step.upper()} ({via}): {answer}", file=sys.stderr)
            return EX_UNAVAILABLE
        return 0
    raise AssertionError(command)
