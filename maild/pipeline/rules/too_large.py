"""too_large: over ``mail.max_message_size`` (for paths that could not refuse it at the door)."""

from __future__ import annotations

from maild.outcomes import TOO_LARGE, Blocked, Outcome
from maild.pipeline.context import Env, MessageContext


async def check(ctx: MessageContext, env: Env) -> Outcome | None:
    limit = env.settings.mail.max_message_size
    if ctx.inbound.size > limit:
        return Blocked(reason=TOO_LARGE, detail=f"{ctx.inbound.size} bytes, limit {limit}")
    return None
