"""loop: mail that is our own coming back — our X-Loop marker, or From one of our department addresses."""

from __future__ import annotations

from maild.addressbook import loop_marker
from maild.outcomes import LOOP, Blocked, Outcome
from maild.pipeline.context import Env, MessageContext


async def check(ctx: MessageContext, env: Env) -> Outcome | None:
    marker = loop_marker(env.settings.mail.domain)
    for value in ctx.mail.headers.get("x-loop", []):
        if value.strip().lower() == marker:
            return Blocked(reason=LOOP, detail=f"X-Loop: {marker} (our own mail came back)")
    sender = ctx.author_email   # the From; with no usable From, the Reply-To or envelope we would answer
    if sender and env.book.department_for(sender):
        return Blocked(reason=LOOP, detail=f"From {sender} is one of our department addresses")
    return None
