"""rate_limited: more new tickets from one sender than ``limits.new_tickets_per_sender`` within
``limits.window_minutes``. Replies to existing tickets are not counted or limited."""

from __future__ import annotations

from datetime import timedelta

from maild.clock import iso
from maild.outcomes import RATE_LIMITED, Blocked, Outcome
from maild.pipeline.context import Env, MessageContext
from maild.store import senders


async def check(ctx: MessageContext, env: Env) -> Outcome | None:
    limit = env.settings.rate_limit
    if ctx.ticket is not None or limit <= 0 or not ctx.author_email:
        return None
    window = env.settings.rate_window_minutes
    since = iso(env.clock.now() - timedelta(minutes=window))
    opened = await senders.tickets_opened_since(env.db, ctx.author_email, since)
    if opened >= limit:
        return Blocked(reason=RATE_LIMITED,
                       detail=f"{ctx.author_email} opened {opened} tickets in the last {window} minutes"
                              f" (limit {limit})")
    return None
