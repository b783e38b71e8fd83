"""An admin's import of a blocked message into a ticket (seed: Blocked Client Replies). It bypasses the
guards that blocked it — that is the point — but not the attachment policy, and it happens once."""

from __future__ import annotations

from dataclasses import dataclass, replace

from maild.desk import core
from maild.desk.events import Actor
from maild.pipeline import apply, attachments, identity
from maild.pipeline.context import Env, MessageContext
from maild.pipeline.prepare import Preparer
from maild.store import importlog, inbound, tickets


class ImportRefused(Exception):
    """Why the entry cannot be imported (not blocked, imported already, no such ticket)."""


@dataclass(frozen=True)
class Imported:
    log_id: int
    tid: str
    message_id: int | None
    kind: str


async def import_blocked(env: Env, preparer: Preparer, log_id: int, tid: str | None, kind: str, by: str,
                         force: bool = False) -> Imported:
    """Import entry ``log_id`` into ticket ``tid`` — by default the ticket the mail was blocked from
    replying to. Into another ticket only with ``force``: a typo must not put one client's mail into
    another client's ticket."""
    entry = await importlog.get(env.db, log_id)
    if entry is None:
        raise ImportRefused(f"no import-log entry {log_id}")
    if entry["outcome"] != "blocked":
        raise ImportRefused(f"entry {log_id} is '{entry['outcome']}', not blocked; only blocked mail is imported")
    if entry["imported_at"]:
        raise ImportRefused(f"entry {log_id} was imported already, by {entry['imported_by']} at {entry['imported_at']}")
    recorded = await tickets.get(env.db, entry["ticket_id"]) if entry["ticket_id"] is not None else None
    if recorded is not None:
        recorded = await tickets.resolve_merged(env.db, recorded)
    if tid is None:
        if recorded is None:
            raise ImportRefused(f"entry {log_id} was not a reply to any ticket; say which: --ticket TID")
        ticket = recorded
    else:
        named = await tickets.by_tid(env.db, tid.lstrip("#"))
        if named is None:
            raise ImportRefused(f"no ticket #{tid}")
        ticket = await tickets.resolve_merged(env.db, named)
        if recorded is not None and ticket["id"] != recorded["id"] and not force:
            raise ImportRefused(f"entry {log_id} was blocked as a reply to ticket #{recorded['tid']}, not #{tid};"
                                " add --force to import it into another ticket")
    found = await inbound.get(env.db, entry["inbound_id"])
    assert found is not None
    row, raw = found
    (mail,) = await preparer.prepare([raw])
    if isinstance(mail, BaseException):
        raise mail
    ctx = MessageContext(inbound=row, raw=raw, mail=mail, ticket=ticket)
    stamp = env.clock.stamp()
    async with env.db.transaction():
        if not await importlog.mark_imported(env.db, log_id, ticket["id"], by, stamp):
            raise ImportRefused(f"entry {log_id} was imported already")
        await identity.identify(ctx, env)
        await attachments.store(ctx, env)
        if kind == "reply" and ctx.staff is not None:
            events, _ = await apply.staff_mail(ctx, env, ticket, import_log=log_id, imported_by=by)
        elif kind == "reply":
            events = await apply.client_reply(ctx, env, ticket, import_log=log_id, imported_by=by)
        else:
            msg = replace(apply.client_message(ctx), kind="note")
            _, events = await core.add_note(env.db, ticket, msg, Actor.system(by), (), stamp, import_log=log_id)
        await tickets.log_event(env.db, ticket["id"], "blocked_mail_imported", by, stamp, import_log=log_id,
                                reason=entry["reason"], kind=kind, author=ctx.author_email)
        # The same notifications as if the mail had not been blocked (staff hear of it; the client does not).
        await env.notifier.follow(events)
    return Imported(log_id, ticket["tid"], events[0].message_id if events else None, kind)
