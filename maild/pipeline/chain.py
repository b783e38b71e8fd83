"""The chain: the stages every message goes through, in order. Read top to bottom.

Each stage either passes (returns None) or ends the message with an outcome. A new check is a new row
here, not a new branch inside an old stage.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from maild.outcomes import Outcome
from maild.pipeline import apply, attachments, authorise, dedupe, identity, route, thread
from maild.pipeline.context import Env, MessageContext
from maild.pipeline.rules import auto_reply, banned, bounce, loop, rate_limited, too_large, unknown_recipient


@dataclass(frozen=True)
class Stage:
    name: str
    description: str
    run: Callable[[MessageContext, Env], Awaitable[Outcome | None]]


CHAIN: tuple[Stage, ...] = (
    Stage("dedupe", "the same message again (Message-ID + body) changes nothing", dedupe.check),
    Stage("too_large", "over mail.max_message_size", too_large.check),
    Stage("loop", "our own mail coming back (X-Loop, From a department address)", loop.check),
    Stage("bounce", "a delivery failure report: recorded, never a ticket", bounce.check),
    Stage("auto_reply", "written by a machine (RFC 3834 and the like): never a ticket, never answered",
          auto_reply.check),
    Stage("banned", "the sender is on the ban list", banned.check),
    Stage("route", "department from the recipients", route.route),
    Stage("thread", "reply to a known ticket: Message-IDs, then subject token", thread.thread),
    Stage("identify", "who wrote it, relative to the ticket's account: the badge", identity.identify),
    Stage("authorise", "replies from the ticket's people only; closed-ticket and new-ticket policies",
          authorise.authorise),
    Stage("rate_limited", "too many new tickets from one sender", rate_limited.check),
    Stage("unknown_recipient", "a new ticket needs a department", unknown_recipient.check),
    Stage("attachments", "safe names; bytes stored content-addressed", attachments.store),
    Stage("apply", "create the ticket or add the reply", apply.apply),
)


async def run(ctx: MessageContext, env: Env, chain: tuple[Stage, ...] = CHAIN) -> Outcome:
    for stage in chain:
        outcome = await stage.run(ctx, env)
        if outcome is not None:
            return outcome
    raise RuntimeError("the chain ended without an outcome (the last stage must decide)")
