"""Identity: who wrote this, relative to the ticket's account — the reply badge of the seed:
Owner, Authorized User, Sub-account, Registered User, Guest (unknown, or tied to more than one account),
Operator (staff — never on the From header's word alone: the signed reply token of their notification
together with their From (:mod:`maild.pipeline.token`), or a From domain verified by a mail server named in
``mail.trusted_authserv_ids``, see :mod:`maild.pipeline.authres`). A badge is a label; what a sender may do is the
authorise stage's business."""

from __future__ import annotations

from maild.outcomes import Outcome
from maild.pipeline import authres
from maild.pipeline.context import Env, MessageContext
from maild.store import people, staff
from maild.store.staff import StaffMember

# Headers a message has once (RFC 5322 3.6); a second copy is a sign of tampering.
SINGLE_HEADERS = ("from", "subject", "message-id", "in-reply-to", "references", "to", "cc", "date")


async def identify(ctx: MessageContext, env: Env) -> Outcome | None:
    """Look the author up (staff, accounts, registered user) once; then :func:`assign_badge`."""
    email, source = ctx.mail.author(ctx.inbound.envelope_from)
    ctx.client_id, ctx.roles, ctx.registered, ctx.known = None, {}, False, False
    if not ctx.via_token:  # the signed reply token proved the staff member already
        ctx.staff = None
    if email and source != "from":
        # No usable From: the address is only whom to answer, so it earns no badge (Guest). Whether it is a
        # known client's still counts: mail naming a client's address must not bring in CC recipients.
        where = "Reply-To" if source == "reply-to" else "envelope sender"
        ctx.notes.append(f"no usable From: answering {email} ({where}) as a Guest")
        ctx.known = (bool(await people.accounts_of(env.db, email)) or await people.is_registered(env.db, email)
                     or await staff.by_email(env.db, email) is not None)
    elif email and ctx.staff is None:
        claimed = await staff.by_email(env.db, email)
        if claimed is not None and ctx.mail.from_addr == email:
            ctx.staff = _verified_staff(ctx, env, claimed)
        if ctx.staff is None:
            ctx.roles = {row["client_id"]: row["role"] for row in await people.accounts_of(env.db, email)}
            ctx.registered = bool(ctx.roles) or await people.is_registered(env.db, email)
        ctx.known = ctx.registered or claimed is not None
    else:
        ctx.known = ctx.staff is not None
    assign_badge(ctx)
    return None


def _verified_staff(ctx: MessageContext, env: Env, claimed: StaffMember) -> StaffMember | None:
    """``claimed`` if a trusted mail server verified the From domain, else None; a note says which."""
    proof = authres.verified_by(ctx.mail.headers.get("authentication-results", []),
                                env.settings.mail.trusted_authserv_ids, ctx.mail.from_addr.rpartition("@")[2])
    doubled = [h for h in SINGLE_HEADERS if len(ctx.mail.headers.get(h, [])) > 1]
    name = claimed.username
    if not proof:
        ctx.notes.append(f"From claims staff member {name} but no trusted mail server verified its domain"
                         " (mail.trusted_authserv_ids); treated as any other sender")
        return None
    if doubled:
        # DKIM signs the last of a repeated header, we read the first: one added on top of a genuine
        # signed staff mail would steer it, so a signature proves nothing here.
        ctx.notes.append(f"From claims staff member {name} ({proof}) but the mail repeats {', '.join(doubled)};"
                         " treated as any other sender")
        return None
    ctx.notes.append(f"staff member {name}: From domain verified, {proof}")
    return claimed


def assign_badge(ctx: MessageContext) -> None:
    """The badge (and the account of a new ticket) from what :func:`identify` found, relative to
    ``ctx.ticket``: no database work, so it can run again when the ticket changes (authorise)."""
    if ctx.staff is not None:
        ctx.badge, ctx.client_id = "Operator", None
        return
    account = ctx.ticket.client_id if ctx.ticket is not None else None
    ctx.badge, ctx.client_id = people.badge(ctx.roles, ctx.registered, account, opening=ctx.ticket is None)
