"""banned: the sender (From or envelope sender; every address in an unclear From) is on the ban list
(``ticketd ban``), by address or ``*@domain``."""

from __future__ import annotations

import re

from maild.outcomes import BANNED, Blocked, Outcome
from maild.pipeline.context import Env, MessageContext
from maild.store import senders

_ANY_ADDRESS = re.compile(r"[^\s<>\"',;:()]+@[^\s<>\"',;:()]+")


def _candidates(ctx: MessageContext) -> list[str]:
    # author_email: with no usable From, the Reply-To we would answer is the sender too
    found = [ctx.mail.from_addr, ctx.author_email, (ctx.inbound.envelope_from or "").lower()]
    if ctx.mail.from_unclear:  # "a@x, b@y" or "a@x <b@y>": a banned sender must not hide behind another
        for value in ctx.mail.headers.get("from", [])[:5]:
            found += [m.lower().rstrip(".") for m in _ANY_ADDRESS.findall(value[:4096])][:20]
    return [a for a in dict.fromkeys(found) if a]


async def check(ctx: MessageContext, env: Env) -> Outcome | None:
    found = await senders.banned(env.db, _candidates(ctx))
    if found is None:
        return None
    address, row = found
    detail = f"{address} matches {row['pattern']}" + (f" ({row['reason']})" if row["reason"] else "")
    return Blocked(reason=BANNED, detail=detail)
