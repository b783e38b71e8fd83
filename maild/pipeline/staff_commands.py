"""staff_commands: a staff member's mail to a ticket (signed reply token or verified From) is read for
its commands (:mod:`maild.pipeline.staffmail`). A bad command changes nothing: the message ends as
``command`` (rejected) and the action answers that staff member with what was wrong."""

from __future__ import annotations

from maild.desk.desk import actor_of
from maild.outcomes import Command, Outcome
from maild.pipeline import quotes
from maild.pipeline.context import Env, MessageContext
from maild.pipeline.staffmail import read
from maild.store import staff


async def check(ctx: MessageContext, env: Env) -> Outcome | None:
    if ctx.staff is None or ctx.ticket is None:
        return None
    text = ctx.mail.content.text
    # Only the new text: never the quoted notification (it may hold a private note) or the history.
    sm = ctx.staff_mail = read(quotes.visible(text))
    # What the desk would refuse, found before anything is written: rights, the assignee.
    if not await env.desk.may_work(actor_of(ctx.staff), ctx.ticket.department_id):
        sm.errors.append(f"you do not work in department {ctx.ticket.department!r}; an admin can add it")
    if sm.assign and not await staff.with_access(env.db, [sm.assign], ctx.ticket.department_id):
        sm.errors.append(f"#assign {sm.assign}: no staff member with that username works in department"
                         f" {ctx.ticket.department!r}")
    if sm.note and not sm.body.strip() and not ctx.files and not sm.changes_options:
        sm.errors.append("#note with nothing after it: write the note below the #note line")
    elif not sm.body.strip() and not ctx.files and not sm.changes_options:
        sm.errors.append("nothing new above the quoted mail: no reply, note or command; nothing was sent")
    if not sm.errors:
        return None
    return Command(reason="rejected", ticket_id=ctx.ticket.id, tid=ctx.ticket.tid,
                   detail="; ".join(ctx.staff_mail.errors))


async def answer(ctx: MessageContext, env: Env, outcome: Outcome) -> None:
    """The action of a rejected command mail: one mail back to the staff member saying what was wrong."""
    assert ctx.staff is not None and ctx.ticket is not None and ctx.staff_mail is not None
    await env.notifier.command_error(ctx.ticket, ctx.staff, ctx.staff_mail.errors)
