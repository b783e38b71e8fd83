"""The chain: the stages every message goes through, in order. Read top to bottom.

Each stage either passes (returns None) or ends the message with an outcome. A rule only decides; what
happens when it ends a message is its row's ``action`` (Mailman's chains pair each rule with its action).
A new check is a new row here, not a new branch inside an old stage.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from maild.outcomes import Outcome
from maild.pipeline import apply, attachments, authorise, dedupe, identity, route, staff_commands, thread, token
from maild.pipeline.context import Env, MessageContext
from maild.pipeline.rules import auto_reply, banned, bounce, loop, rate_limited, too_large, unknown_recipient

Check = Callable[[MessageContext, Env], Awaitable[Outcome | None]]
Action = Callable[[MessageContext, Env, Outcome], Awaitable[None]]


@dataclass(frozen=True)
class Stage:
    name: str
    description: str
    run: Check
    action: Action | None = None          # what happens when this stage ends the message


CHAIN: tuple[Stage, ...] = (
    Stage("dedupe", "the same message again (Message-ID + body) changes nothing", dedupe.check),
    Stage("too_large", "over mail.max_message_size", too_large.check),
    Stage("loop", "our own mail coming back (X-Loop, From a department address)", loop.check),
    Stage("bounce", "a delivery failure report: never a ticket; a signed one marks its recipient", bounce.check,
          action=bounce.record),
    Stage("auto_reply", "written by a machine (RFC 3834 and the like): never a ticket, never answered",
          auto_reply.check),
    Stage("banned", "the sender is on the ban list", banned.check),
    Stage("route", "department from the recipients", route.route),
    Stage("token", "a signed reply tag: the ticket, and with a staff tag and that member's From, the staff member",
          token.reply_token),
    Stage("thread", "reply to a known ticket: Message-IDs, then subject token", thread.thread),
    Stage("identify", "who wrote it, relative to the ticket's account: the badge", identity.identify),
    Stage("reply_allowed", "replies from the ticket's people and staff only", authorise.reply_allowed),
    Stage("closed_ticket", "a reply to a Closed ticket: the department's closed_replies", authorise.closed_ticket),
    Stage("new_ticket_allowed", "a new ticket: the department's accept_new", authorise.new_ticket_allowed),
    Stage("rate_limited", "too many new tickets from one sender", rate_limited.check),
    Stage("unknown_recipient", "a new ticket needs a department", unknown_recipient.check),
    Stage("staff_commands", "a staff member's #note and commands; a bad one is answered, nothing changes",
          staff_commands.check, action=staff_commands.answer),
    Stage("attachments", "safe names; bytes stored content-addressed", attachments.store),
    Stage("apply", "open the ticket, add the reply, or carry out the staff member's mail (the desk)", apply.apply),
    Stage("notify", "the events' mail to the outbox, in the same transaction", apply.notify),
)


async def run(ctx: MessageContext, env: Env, chain: tuple[Stage, ...] = CHAIN) -> Outcome:
    for stage in chain:
        outcome = await stage.run(ctx, env)
        if outcome is not None:
            if stage.action is not None:
                await stage.action(ctx, env, outcome)
            return outcome
    raise RuntimeError("the chain ended without an outcome (the last stage must decide)")
