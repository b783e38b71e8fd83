"""Authorise: may this sender do what the message would do? Three rules, each a row of the chain table.

- :func:`reply_allowed`: a reply to a ticket is accepted from its owner (the address that opened it), its
  account's owner, authorised users and contacts, its CC recipients and staff; anyone else's is a blocked
  reply that an admin can import (``ticketd import-log import``).
- :func:`closed_ticket`: a reply to a Closed ticket follows the department's ``closed_replies`` (reopen,
  new_ticket or block); new_ticket turns the message into a new ticket.
- :func:`new_ticket_allowed`: a new ticket follows the department's ``accept_new``.
"""

from __future__ import annotations

from maild.outcomes import CLOSED_TICKET, UNAUTHORISED_SENDER, UNREGISTERED, Blocked, Outcome
from maild.pipeline import identity
from maild.pipeline.context import DepartmentRef, Env, MessageContext
from maild.store import people, tickets


async def reply_allowed(ctx: MessageContext, env: Env) -> Outcome | None:
    ticket = ctx.ticket
    if ticket is None or (ctx.staff is not None and ctx.via_token):
        return None
    if ctx.staff is not None:
        # A verified From is a good badge but not enough to act: replies, notes and commands come with the
        # reply token of the staff member's own notification (or an admin imports the mail).
        return Blocked(reason=UNAUTHORISED_SENDER, ticket_id=ticket.id, tid=ticket.tid,
                       detail=f"staff member {ctx.staff.username} wrote without the reply token of a"
                              " notification; staff answer by replying to their notification mail")
    author = ctx.author_email
    if (ticket.client_id is not None and ticket.client_id in ctx.roles) \
            or await people.on_ticket(env.db, ticket, author):
        return None
    return Blocked(reason=UNAUTHORISED_SENDER, ticket_id=ticket.id, tid=ticket.tid,
                   detail=f"{author or 'no sender'} is not the ticket's owner, one of its account's users or"
                          f" contacts, a CC recipient or staff")


async def closed_ticket(ctx: MessageContext, env: Env) -> Outcome | None:
    ticket = ctx.ticket
    if ticket is None or ticket.status != tickets.CLOSED or ctx.staff is not None:
        return None
    dept = env.settings.department(ticket.department)
    policy = dept.closed_replies if dept else "reopen"
    if policy == "block":
        return Blocked(reason=CLOSED_TICKET, ticket_id=ticket.id, tid=ticket.tid,
                       detail=f"reply to closed ticket #{ticket.tid}; department {ticket.department!r}"
                              " blocks replies to closed tickets")
    if policy == "new_ticket":
        ctx.notes.append(f"reply to closed ticket #{ticket.tid} opened a new ticket (department policy)")
        if ctx.department is None:
            ctx.department = DepartmentRef(ticket.department_id, ticket.department)
        ctx.ticket = None
        identity.assign_badge(ctx)  # a new ticket now: who is the author relative to it?
    return None


async def new_ticket_allowed(ctx: MessageContext, env: Env) -> Outcome | None:
    if ctx.ticket is not None or ctx.staff is not None or ctx.registered:
        return None
    dept = env.settings.department(ctx.department.name) if ctx.department else None
    if dept is None or dept.accept_new == "anyone":
        return None
    return Blocked(reason=UNREGISTERED, detail=f"{ctx.author_email or 'no sender'} is not a registered client;"
                                               f" department {dept.name!r} takes new tickets from registered"
                                               " clients only")
