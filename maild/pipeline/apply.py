"""Apply: create the ticket, or add the reply to the ticket it threads to (one transaction per message).

Status rules from the seed (client doc): a new ticket is Open; a client reply sets Customer-Reply; a reply
to a Closed ticket reopens it; a reply from verified staff (identity stage) is a staff reply and sets
Answered (admin doc).
"""

from __future__ import annotations

import secrets
import sqlite3

from maild.outcomes import NewTicket, Outcome, Reply
from maild.pipeline import quotes
from maild.pipeline.context import Env, MessageContext
from maild.store import messages, people, tickets

MAX_TID_TRIES = 50


async def create_ticket(ctx: MessageContext, env: Env, stamp: str) -> tuple[int, str]:
    """Insert the ticket under a random public number of ``mail.ticket_id_digits`` digits, never
    sequential; a number already taken is caught by the unique index and another one drawn."""
    assert ctx.department is not None  # the unknown_recipient guard ran before us
    digits = env.settings.ticket_id_digits
    low = 10 ** (digits - 1)
    for _ in range(MAX_TID_TRIES):
        tid = str(low + secrets.randbelow(9 * low))
        try:
            ticket_id = await tickets.create(
                env.db,
                tid=tid,
                subject=ctx.mail.subject.strip() or "(no subject)",
                status=tickets.OPEN,
                priority=ctx.mail.priority or env.settings.default_priority,
                department_id=ctx.department.id,
                client_email=ctx.author_email,
                client_name=ctx.mail.from_name,
                client_id=ctx.client_id,
                stamp=stamp,
            )
        except sqlite3.IntegrityError as exc:
            if "tickets.tid" not in str(exc):
                raise
            continue
        return ticket_id, tid
    raise RuntimeError(f"no free {digits}-digit ticket number after {MAX_TID_TRIES} tries; raise ticket_id_digits")


async def add_message(ctx: MessageContext, env: Env, ticket_id: int, stamp: str, kind: str = "reply") -> int:
    """The message, its attachments and its Message-ID (for threading) on the ticket."""
    mail = ctx.mail
    message_id = await messages.add(
        env.db,
        ticket_id=ticket_id,
        kind=kind,
        author_email=ctx.author_email,
        author_name=mail.from_name,
        badge=ctx.badge,
        subject=mail.subject,
        # A reply shows what is new; the quoted history stays in body_full. A new ticket shows it all.
        body=(quotes.visible(mail.content.text) or mail.content.text) if ctx.ticket is not None else mail.content.text,
        body_full=mail.content.text,
        body_html=mail.content.safe_html,
        message_id=mail.message_id,
        inbound_id=ctx.inbound.id,
        stamp=stamp,
    )
    for f in ctx.files:
        await messages.add_attachment(
            env.db, message_id=message_id, filename=f.filename, content_type=f.content_type, size=f.size,
            sha256=f.sha256, content_id=f.content_id, inline=f.inline,
        )
    await tickets.add_mail_id(env.db, ticket_id, mail.message_id, "in")
    return message_id


async def apply(ctx: MessageContext, env: Env) -> Outcome | None:
    stamp = env.clock.stamp()
    if ctx.ticket is None:
        assert ctx.department is not None
        ticket_id, tid = await create_ticket(ctx, env, stamp)
        await add_message(ctx, env, ticket_id, stamp)
        # Whoever the client copied (not us, not the client) is a CC recipient: their replies are welcome.
        others = {a for _, a in ctx.mail.to + ctx.mail.cc} - {ctx.author_email}
        await people.add_cc(env.db, ticket_id, sorted(a for a in others if not env.book.department_for(a)))
        await tickets.log_event(env.db, ticket_id, "opened", ctx.author_email or "unknown", stamp,
                                source=ctx.inbound.source, queue_id=ctx.inbound.id, department=ctx.department.name)
        return NewTicket(ticket_id=ticket_id, tid=tid)
    ticket = ctx.ticket
    await add_reply(ctx, env, ticket, stamp, queue_id=ctx.inbound.id, threaded_by=ctx.threaded_by)
    return Reply(ticket_id=ticket["id"], tid=ticket["tid"])


async def add_reply(ctx: MessageContext, env: Env, ticket: sqlite3.Row, stamp: str, **detail: object) -> int:
    """The mail as a reply on ``ticket`` (here and for an admin's import of a blocked reply): from verified
    staff a staff reply, setting Answered; from anyone else a client reply, setting Customer-Reply. A
    Closed ticket reopens either way. Logs the event; returns the message's id."""
    staff = ctx.staff is not None
    event = "staff_reply" if staff else "client_reply"
    actor = ctx.staff["username"] if ctx.staff is not None else ctx.author_email or "unknown"
    message_id = await add_message(ctx, env, ticket["id"], stamp, kind=event if staff else "reply")
    if ticket["status"] == tickets.CLOSED:
        await tickets.log_event(env.db, ticket["id"], "reopened", actor, stamp, by=event)
    await tickets.touch_reply(env.db, ticket["id"], tickets.ANSWERED if staff else tickets.CUSTOMER_REPLY, stamp)
    await tickets.log_event(env.db, ticket["id"], event, actor, stamp, previous_status=ticket["status"], **detail)
    return message_id
