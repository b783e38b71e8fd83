"""banned: the sender (From or envelope sender) is on the ban list (``ticketd ban``), by address or
``*@domain``."""

from __future__ import annotations

from maild.outcomes import BANNED, Blocked, Outcome
from maild.pipeline.context import Env, MessageContext
from maild.store import senders


async def check(ctx: MessageContext, env: Env) -> Outcome | None:
    for address in dict.fromkeys(a for a in (ctx.mail.from_addr, (ctx.inbound.envelope_from or "").lower()) if a):
        row = await senders.banned(env.db, address)
        if row is not None:
            detail = f"{address} matches {row['pattern']}" + (f" ({row['reason']})" if row["reason"] else "")
            return Blocked(reason=BANNED, detail=detail)
    return None
