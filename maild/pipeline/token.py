"""token: a reply to one of our mails whose recipient carries a signed reply tag (Reply-To
``dept+t{tid}-{mac}@`` or, in a staff notification, ``dept+t{tid}-s{staff}-{mac}@``).

A client tag threads the reply to its ticket. A staff tag proves a staff member only together with a
From of that same member: the tag was in their notification alone, and the From names them, so neither a
forged From nor a leaked tag is enough on its own. Otherwise the mail goes on as anyone's.
"""

from __future__ import annotations

from maild.notify.tokens import tags_in
from maild.outcomes import Outcome
from maild.pipeline.context import Env, MessageContext
from maild.store import staff, tickets


async def reply_token(ctx: MessageContext, env: Env) -> Outcome | None:
    mail = ctx.mail
    addresses = [*ctx.inbound.envelope_to, *mail.delivered_to, *(a for _, a in mail.to), *(a for _, a in mail.cc)]
    for tag in tags_in(addresses):
        token = env.signer.read_reply_tag(tag)
        if token is None:
            continue
        ticket = await tickets.by_tid(env.db, token.tid)
        if ticket is None:
            continue
        if token.staff_id is not None:
            member = await staff.by_id(env.db, token.staff_id)
            if member is None or mail.from_unclear or member.email != mail.from_addr:
                ctx.notes.append(f"staff reply token for #{token.tid}, but From {mail.from_addr or '(unclear)'} is"
                                 " not the staff member it was made for: treated as any other sender")
                continue
            ctx.staff, ctx.via_token = member, True
            ctx.notes.append(f"staff member {member.username}: signed reply token")
        ctx.ticket = await tickets.resolve_merged(env.db, ticket)
        ctx.threaded_by = "token"
        return None
    return None
