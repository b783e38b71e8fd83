"""Authorise: may this sender do what the message would do?

A reply to a ticket is accepted from its owner (the address that opened it), its account's owner,
authorised users and contacts, its CC recipients and staff; anyone else's is a blocked reply that an
admin can import (``ticketd import-log import``). A reply to a Closed ticket follows the department's
``closed_replies`` (reopen, new_ticket or block); a new ticket follows its ``accept_new``."""

from __future__ import annotations

from maild.config import Department
from maild.outcomes import CLOSED_TICKET, UNAUTHORISED_SENDER, UNREGISTERED, Blocked, Outcome
from maild.pipeline import identity
from maild.pipeline.context import DepartmentRef, Env, MessageContext
from maild.store import people, tickets


def _department(env: Env, name: str | None) -> Department | None:
    return env.settings.department(name) if name else None


async def authorise(ctx: MessageContext, env: Env) -> Outcome | None:
    ticket = ctx.ticket
    if ticket is not None:
        blocked = await _reply(ctx, env)
        if blocked is not None or ctx.ticket is not None:
            return blocked
        identity.assign_badge(ctx)  # the reply became a new ticket: who is it relative to that?
    return await _new_ticket(ctx, env)


async def _reply(ctx: MessageContext, env: Env) -> Outcome | None:
    ticket = ctx.ticket
    assert ticket is not None
    author = ctx.author_email
    allowed = (
        ctx.staff is not None
        or (ticket["client_id"] is not None and ticket["client_id"] in ctx.roles)
        or await people.on_ticket(env.db, ticket, author)
    )
    if not allowed:
        return Blocked(reason=UNAUTHORISED_SENDER, ticket_id=ticket["id"], tid=ticket["tid"],
                       detail=f"{author or 'no sender'} is not the ticket's owner, one of its account's users or"
                              f" contacts, a CC recipient or staff")
    if ticket["status"] != tickets.CLOSED or ctx.staff is not None:
        return None
    dept = _department(env, ticket["department"])
    policy = dept.closed_replies if dept else "reopen"
    if policy == "block":
        return Blocked(reason=CLOSED_TICKET, ticket_id=ticket["id"], tid=ticket["tid"],
                       detail=f"reply to closed ticket #{ticket['tid']}; department {ticket['department']!r}"
                              " blocks replies to closed tickets")
    if policy == "new_ticket":
        ctx.notes.append(f"reply to closed ticket #{ticket['tid']} opened a new ticket (department policy)")
        if ctx.department is None:
            ctx.department = DepartmentRef(ticket["department_id"], ticket["department"])
        ctx.ticket = None
    return None


async def _new_ticket(ctx: MessageContext, env: Env) -> Outcome | None:
    dept = _department(env, ctx.department.name if ctx.department else None)
    if dept is None or dept.accept_new == "anyone" or ctx.staff is not None:
        return None
    author = ctx.author_email
    if ctx.registered:
        return None
    return Blocked(reason=UNREGISTERED, detail=f"{author or 'no sender'} is not a registered client; department"
                                               f" {dept.name!r} takes new tickets from registered clients only")
