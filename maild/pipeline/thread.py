"""Thread: is this message a reply to a ticket we know?

A reply names a Message-ID we sent or received for a ticket (In-Reply-To, then References newest first)
or carries the ticket's token in its subject (format from ``mail.subject_token``). Merged tickets resolve
to the ticket they were merged into.
"""

from __future__ import annotations

from maild.outcomes import Outcome
from maild.pipeline.context import Env, MessageContext
from maild.store import tickets


async def thread(ctx: MessageContext, env: Env) -> Outcome | None:
    if ctx.ticket is not None:  # the reply token stage found it
        return None
    mail = ctx.mail
    ticket = None
    if mail.in_reply_to:
        ticket = await tickets.by_mail_ids(env.db, mail.in_reply_to)
        ctx.threaded_by = "in-reply-to"
    if ticket is None and mail.references:
        ticket = await tickets.by_mail_ids(env.db, mail.references)
        ctx.threaded_by = "references"
    if ticket is None:
        for tid in env.token_re.findall(mail.subject):
            ticket = await tickets.by_tid(env.db, tid)
            if ticket is not None:
                ctx.threaded_by = "subject"
                break
    if ticket is None:
        ctx.threaded_by = ""
        return None
    ctx.ticket = await tickets.resolve_merged(env.db, ticket)
    return None
