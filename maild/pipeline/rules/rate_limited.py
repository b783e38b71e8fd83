"""rate_limited: more new tickets from one sender than ``limits.new_tickets_per_sender`` within
``limits.window_minutes``. Replies to existing tickets are not counted or limited."""

from __future__ import annotations

from datetime import timedelta

from maild.clock import iso
from maild.outcomes import RATE_LIMITED, Blocked, Outcome
from maild.pipeline.context import Env, MessageContext
from maild.store import senders


async def check(ctx: MessageContext, env: Env) -> Outcome | None:
    limit = env.settings.limits.new_tickets_per_sender
    if ctx.ticket is not None or limit <= 0:
        return None
    window = env.settings.limits.window_minutes
    since = iso(env.clock.now() - timedelta(minutes=window))
    # Mail with no clear sender shares one allowance (tickets opened with no client address): otherwise an
    # unclear From would be a way around the limit.
    who = ctx.author_email
    opened = await senders.tickets_opened_since(env.db, who, since)
    if opened >= limit:
        return Blocked(reason=RATE_LIMITED,
                       detail=f"{who or 'mail with no clear sender'} opened {opened} tickets in the last {window}"
                              f" minutes (limit {limit})")
    return None
