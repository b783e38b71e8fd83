"""Identity: who wrote this, relative to the ticket's account — the reply badge of the seed:
Owner, Authorized User, Sub-account, Registered User, Guest (unknown, or tied to more than one account),
Operator (staff). A badge is a label; what a sender may do is the authorise stage's business."""

from __future__ import annotations

from maild.outcomes import Outcome
from maild.pipeline.context import Env, MessageContext
from maild.store import people

BADGES = {"owner": "Owner", "user": "Authorized User", "contact": "Sub-account"}


async def identify(ctx: MessageContext, env: Env) -> Outcome | None:
    email = ctx.author_email
    ctx.badge, ctx.client_id, ctx.roles, ctx.staff = "Guest", None, {}, None
    if not email:
        return None
    ctx.staff = await people.staff_by_email(env.db, email)
    if ctx.staff is not None:
        ctx.badge = "Operator"
        return None
    ctx.roles = {row["client_id"]: row["role"] for row in await people.accounts_of(env.db, email)}
    account = ctx.ticket["client_id"] if ctx.ticket is not None else None
    if account is not None and account in ctx.roles:
        ctx.badge, ctx.client_id = BADGES[ctx.roles[account]], account
    elif ctx.ticket is None and len(ctx.roles) == 1:
        ctx.client_id, role = next(iter(ctx.roles.items()))
        ctx.badge = BADGES[role]
    elif len(ctx.roles) == 1 or (not ctx.roles and await people.is_registered(env.db, email)):
        ctx.badge = "Registered User"
    # else: unknown, or tied to several accounts so we cannot tell which: Guest
    return None
