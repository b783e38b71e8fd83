"""bounce: a delivery failure report. When it is about mail we sent (a Message-ID of ours, direction
"out"), it is recorded on that ticket, and a client-side recipient of that ticket (its client, a CC
recipient) that fails permanently (5.x.x) is marked, so that we stop mailing it. A report about anything
else is blocked and kept, and changes nothing."""

from __future__ import annotations

from maild.outcomes import BOUNCE, Blocked, Outcome
from maild.pipeline.context import Env, MessageContext
from maild.store import people, senders, tickets

DAEMON_LOCALPARTS = ("mailer-daemon", "mail-daemon", "mailerdaemon")


def is_bounce(ctx: MessageContext) -> bool:
    """A delivery report from a null return path, or mail from a mailer-daemon. A report from an ordinary
    sender is not trusted as a bounce: anyone can write one, and it would silence an address."""
    mail = ctx.mail
    local = mail.from_addr.partition("@")[0]
    return_path = mail.header("return-path").strip().strip("<>").lower().partition("@")[0]
    raw_from = mail.header("from").lower()
    if local in DAEMON_LOCALPARTS or return_path in DAEMON_LOCALPARTS or (
            not mail.from_addr and ("mailer-daemon" in raw_from or "mailer daemon" in raw_from)):
        return True
    report = mail.report is not None and mail.report.report_type in ("delivery-status", "")
    if report and local == "postmaster":  # Exchange and Office 365 send their reports from postmaster@
        return True
    if not ctx.null_return_path:
        return False
    if report:
        return True
    # Some MTAs send plain-text bounces from a null sender: the subject gives them away.
    return any(w in mail.subject.lower() for w in ("undeliver", "delivery status", "returned mail",
                                                   "delivery failure", "failure notice"))


async def check(ctx: MessageContext, env: Env) -> Outcome | None:
    if not is_bounce(ctx):
        return None
    report = ctx.mail.report
    ticket = None
    if report is not None and report.original_ids:
        # Only a report about mail we sent counts: anyone can quote a Message-ID a client sent us.
        ticket = await tickets.by_mail_ids(env.db, report.original_ids, direction="out")
    stamp = env.clock.stamp()
    lines = []
    for rcpt in report.recipients if report else []:
        lines.append(f"{rcpt.address} {rcpt.action or '?'} {rcpt.status or '?'}")
        if ticket is None:
            continue
        if rcpt.permanent and await people.on_ticket(env.db, ticket, rcpt.address):
            # Only the ticket's own client-side people: never staff, whom anyone on a ticket could otherwise
            # cut off their mail with a forged report (the outbox will sign return paths, ROADMAP 1).
            await senders.record_bounce(env.db, rcpt.address, rcpt.status or "5.0.0", rcpt.diagnostic,
                                        ticket["id"], stamp)
        await tickets.log_event(env.db, ticket["id"], "bounce", ctx.author_email or "mailer-daemon", stamp,
                                recipient=rcpt.address, action=rcpt.action, status=rcpt.status,
                                diagnostic=rcpt.diagnostic, queue_id=ctx.inbound.id)
    if report is not None and report.recipients and ticket is None:
        ctx.notes.append("the report is not about mail we sent: no address marked, no ticket told")
    detail = "; ".join(lines) or "delivery failure (no machine-readable report)"
    return Blocked(reason=BOUNCE, detail=detail, ticket_id=ticket["id"] if ticket else None,
                   tid=ticket["tid"] if ticket else None)
