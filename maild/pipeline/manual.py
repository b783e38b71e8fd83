"""An admin's import of a blocked message into a ticket, or as a new ticket (seed: Blocked Client Replies). It
bypasses the guards that blocked it — that is the point — but not the attachment policy, and it happens once.
It never puts one sender's mail into another client's ticket unless the admin forces it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from maild.desk import core
from maild.desk.events import Actor
from maild.outcomes import RATE_LIMITED, UNKNOWN_RECIPIENT, UNREGISTERED
from maild.pipeline import apply, attachments, identity
from maild.pipeline.context import DepartmentRef, Env, MessageContext
from maild.pipeline.prepare import Preparer
from maild.store import importlog, inbound, people, tickets
from maild.store.db import Row
from maild.store.tickets import Ticket

if TYPE_CHECKING:
    from maild.pipeline.worker import Worker

# Blocked mail that would have opened a ticket had the guard let it through: it may become one (--new).
NEW_TICKET_REASONS = (UNKNOWN_RECIPIENT, RATE_LIMITED, UNREGISTERED)


class ImportRefused(Exception):
    """Why the entry cannot be imported (not blocked, imported already, another client's ticket)."""


class ImportNotFound(ImportRefused):
    """No such entry, ticket or department."""


class ImportNeedsTarget(ImportRefused):
    """The entry has no ticket of its own: the admin must say where it goes (``--ticket`` or ``--new``)."""


@dataclass(frozen=True)
class Imported:
    log_id: int
    tid: str
    message_id: int | None
    kind: str
    new: bool = False


async def import_blocked(env: Env, preparer: Preparer, log_id: int, tid: str | None, kind: str, by: str,
                         force: bool = False, new: bool = False, department: str | None = None) -> Imported:
    """Import entry ``log_id`` into ticket ``tid`` — by default the ticket the mail was blocked from
    replying to — or, with ``new``, as a new ticket in ``department`` (default: where it was routed).
    Into another ticket than its own, or a ticket of another client, only with ``force``: a typo must not
    put one client's mail into another client's ticket."""
    entry = await importlog.get(env.db, log_id)
    if entry is None:
        raise ImportNotFound(f"no import-log entry {log_id} (ticketd import-log --outcome blocked)")
    if entry["outcome"] != "blocked":
        raise ImportRefused(f"entry {log_id} is '{entry['outcome']}', not blocked; only blocked mail is imported")
    if entry["imported_at"]:
        raise ImportRefused(f"entry {log_id} was imported already, by {entry['imported_by']} at {entry['imported_at']}")
    recorded = await tickets.get(env.db, entry["ticket_id"]) if entry["ticket_id"] is not None else None
    if recorded is not None:
        recorded = await tickets.resolve_merged(env.db, recorded)
    dept = None
    if new:
        if entry["reason"] not in NEW_TICKET_REASONS:
            raise ImportRefused(f"entry {log_id} was blocked as {entry['reason']}; only mail blocked as"
                                f" {', '.join(NEW_TICKET_REASONS)} can become a new ticket; import it into one"
                                " with --ticket TID")
        dept = _department(env, department or entry["department"], log_id)
    found = await inbound.get(env.db, entry["inbound_id"])
    assert found is not None
    row, raw = found
    if not raw:
        raise ImportRefused(f"entry {log_id}'s raw mail was emptied by housekeeping ([housekeeping] raw_days_kept);"
                            " it can no longer be imported")
    (mail,) = await preparer.prepare([raw])
    if isinstance(mail, BaseException):
        raise mail
    ticket, own = (None, False) if new else await _target(env, entry, recorded, tid, force)
    ctx = MessageContext(inbound=row, raw=raw, mail=mail, ticket=ticket, department=dept)
    stamp = env.clock.stamp()
    async with env.db.transaction():
        await identity.identify(ctx, env)
        if ticket is not None and not own and not force and not await _belongs(env, ticket, ctx):
            raise ImportRefused(f"entry {log_id} is from {ctx.author_email or 'an unknown sender'}, who is not"
                                f" ticket #{ticket.tid}'s client; add --force to import it there anyway")
        await attachments.store(ctx, env)
        if ticket is None:
            events, outcome = await apply.open_from_mail(ctx, env)
            assert outcome.ticket_id is not None
            ticket = await tickets.get(env.db, outcome.ticket_id)
            assert ticket is not None
        elif kind == "reply" and ctx.staff is not None:
            events, _ = await apply.staff_mail(ctx, env, ticket, import_log=log_id, imported_by=by)
        elif kind == "reply":
            events = await apply.client_reply(ctx, env, ticket, import_log=log_id, imported_by=by)
        else:
            msg = replace(apply.client_message(ctx), kind="note")
            _, events = await core.add_note(env.db, ticket, msg, Actor.system(by), (), stamp, import_log=log_id)
        if not await importlog.mark_imported(env.db, log_id, ticket.id, by, stamp):
            raise ImportRefused(f"entry {log_id} was imported already")  # by someone else meanwhile: rolled back
        await tickets.log_event(env.db, ticket.id, "blocked_mail_imported", by, stamp, import_log=log_id,
                                reason=entry["reason"], kind="new_ticket" if new else kind, author=ctx.author_email)
        # The same notifications as if the mail had not been blocked (staff hear of it; the client does not).
        await env.notifier.follow(events)
    await env.notifier.expand()   # committed: the queued events become mail now
    return Imported(log_id, ticket.tid, events[0].message_id if events else None,
                    "new ticket" if new else kind, new)


async def reprocess(env: Env, worker: Worker, log_id: int) -> Row:
    """Process entry ``log_id`` again, a failed message only (after the cause was fixed); its new row."""
    entry = await importlog.get(env.db, log_id)
    if entry is None:
        raise ImportNotFound(f"no import-log entry {log_id}")
    if entry["outcome"] != "failed":
        raise ImportRefused(f"entry {log_id} is '{entry['outcome']}', not 'failed'; only failed entries are"
                            " reprocessed")
    found = await inbound.get(env.db, entry["inbound_id"])
    if found is None or not found[1]:
        raise ImportRefused(f"entry {log_id}'s raw mail was emptied by housekeeping ([housekeeping] raw_days_kept);"
                            " it can no longer be reprocessed")
    await worker.process_rows([found], from_state="failed")
    new = await importlog.get(env.db, log_id)
    assert new is not None
    return new


def _department(env: Env, name: str | None, log_id: int) -> DepartmentRef:
    known = ", ".join(env.departments)
    if not name:
        raise ImportNeedsTarget(f"entry {log_id} was routed to no department; say which: --department D ({known})")
    dept = env.department(name)
    if dept is None:
        raise ImportNotFound(f"no department {name!r}; configured: {known}")
    return dept


async def _target(env: Env, entry: Row, recorded: Ticket | None, tid: str | None, force: bool) -> tuple[Ticket, bool]:
    """The ticket named by ``tid``, else the one the entry was blocked from replying to; and whether it is
    that one, its own (where the sender check does not apply: the sender is what the admin reviews)."""
    if tid is None:
        if recorded is None:
            can_new = " or --new [--department D]" if entry["reason"] in NEW_TICKET_REASONS else ""
            raise ImportNeedsTarget(f"entry {entry['id']} ({entry['reason']}) was not a reply to any ticket;"
                                    f" say where it goes: --ticket TID{can_new}")
        return recorded, True
    named = await tickets.by_tid(env.db, tid.lstrip("#"))
    if named is None:
        raise ImportNotFound(f"no ticket #{tid.lstrip('#')}")
    ticket = await tickets.resolve_merged(env.db, named)
    if recorded is not None and ticket.id != recorded.id and not force:
        raise ImportRefused(f"entry {entry['id']} was blocked as a reply to ticket #{recorded.tid}, not #{tid};"
                            " add --force to import it into another ticket")
    return ticket, recorded is not None and ticket.id == recorded.id


async def _belongs(env: Env, ticket: Ticket, ctx: MessageContext) -> bool:
    """Is the mail's author the ticket's client: its address, a confirmed CC, or a person of its account?"""
    email = ctx.author_email
    if not email:
        return False
    if await people.on_ticket(env.db, ticket, email):
        return True
    return ticket.client_id is not None and ticket.client_id in ctx.roles
