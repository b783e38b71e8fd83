"""Apply: the message changes a ticket, through the desk's writers (:mod:`maild.desk.core` for a client's
mail, the desk's actions for a staff member's), inside the worker's transaction. The events it produces
are followed by the next stage, :func:`notify`, which writes the outbox rows in the same transaction.

A client's mail opens a ticket or replies to one (Customer-Reply; a Closed ticket reopens). A staff
member's mail to a ticket (signed reply token, or a From verified by a trusted server) is a staff reply
under their name and signature, a ``#note``, or commands alone (no mail to the client).
"""

from __future__ import annotations

from typing import Any

from maild.desk import core
from maild.desk.desk import actor_of
from maild.desk.events import Actor, Event
from maild.desk.options import Options
from maild.notify import links
from maild.outcomes import Command, NewTicket, Note, Outcome, Reply
from maild.pipeline import authres, quotes
from maild.pipeline.context import Env, MessageContext
from maild.pipeline.staffmail import read
from maild.store import people, tickets
from maild.store.tickets import Ticket


def client_message(ctx: MessageContext) -> core.NewMessage:
    mail = ctx.mail
    text = links.scrub(mail.content.text)   # a quoted notification's client link is that recipient's key
    html = links.scrub(mail.content.safe_html) if mail.content.safe_html else mail.content.safe_html
    return core.NewMessage(
        kind="reply", author_email=ctx.author_email, author_name=mail.from_name, badge=ctx.badge,
        subject=mail.subject,
        # A reply shows what is new; the quoted history stays in body_full. A new ticket shows it all.
        body=(quotes.visible(text) or text) if ctx.ticket is not None else text, body_full=text,
        body_html=html, message_id=mail.message_id, direction="in", inbound_id=ctx.inbound.id,
        files=tuple(ctx.files), signatures=tuple(mail.content.signatures))


async def apply(ctx: MessageContext, env: Env) -> Outcome | None:
    if ctx.ticket is not None and ctx.staff is not None:
        ctx.events, ctx.result = await staff_mail(ctx, env, ctx.ticket, queue_id=ctx.inbound.id)
    elif ctx.ticket is None:
        ctx.events, ctx.result = await open_from_mail(ctx, env)
    else:
        ctx.events = await client_reply(ctx, env, ctx.ticket, queue_id=ctx.inbound.id, threaded_by=ctx.threaded_by)
        ctx.result = Reply(ticket_id=ctx.ticket.id, tid=ctx.ticket.tid)
    return None


async def notify(ctx: MessageContext, env: Env) -> Outcome | None:
    """Follow apply's events to the outbox (same transaction); end the message with apply's outcome. In a
    worker's optimistic batch the events wait for the end of the batch's transaction (worker.py)."""
    if env.deferred is not None:
        env.deferred.extend(ctx.events)
    else:
        await env.notifier.follow(ctx.events)
    assert ctx.result is not None, "apply must run before notify"
    return ctx.result


async def open_from_mail(ctx: MessageContext, env: Env) -> tuple[list[Event], Outcome]:
    assert ctx.department is not None  # the unknown_recipient guard ran before us
    mail = ctx.mail
    actor = Actor(kind="client", email=ctx.author_email, name=mail.from_name)
    ticket_id, tid, events = await core.open_ticket(
        env.db, actor=actor, digits=env.settings.mail.ticket_id_digits, department_id=ctx.department.id,
        department=ctx.department.name, client_email=ctx.author_email, client_name=mail.from_name,
        client_id=ctx.client_id, priority=mail.priority or env.settings.mail.default_priority,
        first=client_message(ctx), stamp=env.clock.stamp(), source=ctx.inbound.source, queue_id=ctx.inbound.id)
    # Whoever the client copied (not us, not the client) is a CC recipient: their replies are welcome. Mail
    # goes to them only if the From cannot be a forgery that matters: an unknown sender (Guest), or a From
    # domain a trusted server verified. Otherwise they wait, pending, until staff confirm them.
    others = {a for _, a in mail.to + mail.cc} - {ctx.author_email}
    others = {a for a in others if a and not env.book.department_for(a)}
    if others:
        # "Unknown" means no account, not registered, not staff: a client of several accounts is a Guest by
        # badge, and so is a client's address taken from the Reply-To or the envelope for want of a From,
        # but neither may bring in a CC.
        unknown = not ctx.known
        trusted = unknown or bool(authres.verified_by(
            mail.headers.get("authentication-results", []), env.settings.mail.trusted_authserv_ids,
            ctx.author_email.rpartition("@")[2]))
        await people.add_cc(env.db, ticket_id, sorted(others), state="confirmed" if trusted else "pending",
                            added_by=ctx.author_email)
        if not trusted:
            ctx.notes.append(f"CC recipients {', '.join(sorted(others))} pending: the From is a known client's"
                             " and was not verified; staff confirm them with ticket set --cc-add")
    await _thread_index(ctx, env, ticket_id)
    return events, NewTicket(ticket_id=ticket_id, tid=tid)


async def client_reply(ctx: MessageContext, env: Env, ticket: Ticket, **detail: Any) -> list[Event]:
    """A client's mail as a reply on ``ticket`` (here and for an admin's import of a blocked reply)."""
    actor = Actor(kind="client", email=ctx.author_email, name=ctx.mail.from_name)
    _, events = await core.add_reply(env.db, ticket, client_message(ctx), actor, env.clock.stamp(), **detail)
    await _thread_index(ctx, env, ticket.id)
    return events


async def staff_mail(ctx: MessageContext, env: Env, ticket: Ticket, **detail: Any) -> tuple[list[Event], Outcome]:
    """A staff member's mail: a reply, a #note, or commands alone; all through the desk's actions."""
    assert ctx.staff is not None
    text = ctx.mail.content.text
    sm = ctx.staff_mail or read(quotes.visible(text))
    actor = actor_of(ctx.staff)
    desk, tid = env.desk.within(), ticket.tid
    await tickets.add_mail_id(env.db, ticket.id, ctx.mail.message_id, "in")
    events: list[Event] = []
    opts = Options(status=sm.status, priority=sm.priority, assign=sm.assign)
    outcome: Outcome = Command(ticket_id=ticket.id, tid=tid, detail="; ".join(sm.commands))
    if sm.note and (sm.body.strip() or ctx.files):
        result = await desk.note(actor, tid, sm.body, inbound_id=ctx.inbound.id, files=tuple(ctx.files), **detail)
        events += result.events
        ctx.notes += result.notes
        outcome = Note(ticket_id=ticket.id, tid=tid)
        await _signatures(ctx, env, result.message_id)
    elif not sm.note and (sm.body.strip() or ctx.files):
        result = await desk.reply(actor, tid, sm.body, tuple(ctx.files), status=sm.status, inbound_id=ctx.inbound.id,
                                  **detail)
        events += result.events
        opts.status = None  # the reply set it
        outcome = Reply(ticket_id=ticket.id, tid=tid)
        await _signatures(ctx, env, result.message_id)
    if opts.status or opts.priority or opts.assign:
        events += (await desk.set_options(actor, tid, opts)).events
    return events, outcome


async def _signatures(ctx: MessageContext, env: Env, message_id: int | None) -> None:
    """A staff member's mail keeps its signature parts on the message the desk wrote, as a client's does."""
    if message_id is not None and ctx.mail.content.signatures:
        await core.add_signatures(env.db, message_id, ctx.mail.content.signatures)


async def _thread_index(ctx: MessageContext, env: Env, ticket_id: int) -> None:
    """Outlook threads by Thread-Index: our next mail extends the client's latest one."""
    value = ctx.mail.header("thread-index").strip()
    if value:
        await tickets.set_thread_index(env.db, ticket_id, value)
