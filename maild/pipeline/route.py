"""Route: which department a message is for, from its recipients.

Order: the envelope recipients (those also in To: first), then Delivered-To/X-Original-To, To and Cc,
then the receiver's fallback department (``--department`` or the IMAP account's). Plus-addressing
(``support+anything@``) matches the department's address.
"""

from __future__ import annotations

from maild.addressbook import strip_plus
from maild.outcomes import Outcome
from maild.pipeline.context import Env, MessageContext


async def route(ctx: MessageContext, env: Env) -> Outcome | None:
    mail = ctx.mail
    header_to = [a for _, a in mail.to]
    envelope = list(ctx.inbound.envelope_to)
    preferred = [a for a in envelope if strip_plus(a) in {strip_plus(t) for t in header_to}]
    candidates = [
        *preferred,
        *envelope,
        *mail.delivered_to,
        *header_to,
        *(a for _, a in mail.cc),
    ]
    name = env.book.first_match(candidates)
    if name is None and ctx.inbound.department_hint:
        name = ctx.inbound.department_hint
    if name is not None:
        ctx.department = env.department(name)
    # No department is not an error yet: a reply finds its ticket's department in the thread stage.
    return None
