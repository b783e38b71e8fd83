"""unknown_recipient: a new ticket needs a department, and no recipient named one."""

from __future__ import annotations

from maild.outcomes import UNKNOWN_RECIPIENT, Blocked, Outcome
from maild.pipeline.context import Env, MessageContext


async def check(ctx: MessageContext, env: Env) -> Outcome | None:
    if ctx.ticket is None and ctx.department is None:
        seen = ", ".join(ctx.inbound.envelope_to) or ", ".join(a for _, a in ctx.mail.to) or "none"
        return Blocked(reason=UNKNOWN_RECIPIENT, detail=f"no department address among recipients ({seen})")
    return None
