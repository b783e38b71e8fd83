"""bounce: a delivery failure report. When it is about mail of a ticket, it is recorded on that ticket;
an address that fails permanently (5.x.x) is marked, so that we stop mailing it."""

from __future__ import annotations

from maild.outcomes import BOUNCE, Blocked, Outcome
from maild.pipeline.context import Env, MessageContext
from maild.store import senders, tickets

DAEMON_LOCALPARTS = ("mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon")


def is_bounce(ctx: MessageContext) -> bool:
    mail = ctx.mail
    if mail.report is not None and mail.report.report_type in ("delivery-status", ""):
        return True
    local = mail.from_addr.partition("@")[0]
    if local in DAEMON_LOCALPARTS:
        return True
    # Some MTAs send plain-text bounces from a null sender: the subject gives them away.
    subject = mail.subject.lower()
    null_sender = ctx.inbound.envelope_from == ""
    return null_sender and any(w in subject for w in ("undeliver", "delivery status", "returned mail",
                                                       "delivery failure", "failure notice"))


async def check(ctx: MessageContext, env: Env) -> Outcome | None:
    if not is_bounce(ctx):
        return None
    report = ctx.mail.report
    ticket = None
    if report is not None and report.original_ids:
        ticket = await tickets.by_mail_ids(env.db, report.original_ids)
    stamp = env.clock.stamp()
    lines = []
    for rcpt in report.recipients if report else []:
        lines.append(f"{rcpt.address} {rcpt.action or '?'} {rcpt.status or '?'}")
        if rcpt.permanent:
            await senders.record_bounce(env.db, rcpt.address, rcpt.status or "5.0.0", rcpt.diagnostic,
                                        ticket["id"] if ticket else None, stamp)
        if ticket is not None:
            await tickets.log_event(env.db, ticket["id"], "bounce", ctx.author_email or "mailer-daemon", stamp,
                                    recipient=rcpt.address, action=rcpt.action, status=rcpt.status,
                                    diagnostic=rcpt.diagnostic, queue_id=ctx.inbound.id)
    detail = "; ".join(lines) or "delivery failure (no machine-readable report)"
    return Blocked(reason=BOUNCE, detail=detail, ticket_id=ticket["id"] if ticket else None,
                   tid=ticket["tid"] if ticket else None)
