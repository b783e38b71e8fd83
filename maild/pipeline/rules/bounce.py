"""bounce: a delivery failure report. The rule only decides (and finds what the report is about);
:func:`record`, its action in the chain table, writes.

What a report is trusted for: when it comes to a signed bounce address (our VERP envelope sender,
``dept+b{outbox id}-{mac}@``, whose MAC binds that one recipient), exactly that recipient of that mail is
marked; as a fallback, a report that quotes one of the Message-IDs we sent marks the recipient it names
only when that mail went to that one address alone (whoever else got a copy could have written the report).
Only hard failures (5.x.x) stop mail to an address, and the mark
expires (``notifications.bounce_hold_days``). A report about anything else is blocked and kept, and
changes nothing."""

from __future__ import annotations

from dataclasses import dataclass, field

from maild.notify.tokens import tags_in
from maild.outcomes import BOUNCE, Blocked, Outcome
from maild.pipeline.context import Env, MessageContext
from maild.pipeline.dsn import Recipient
from maild.store import outbox, senders, tickets
from maild.store.tickets import Ticket

DAEMON_LOCALPARTS = ("mailer-daemon", "mail-daemon", "mailerdaemon")


@dataclass
class Finding:
    """What a report is about: the ticket, and the recipients it may mark (address → status)."""

    ticket: Ticket | None = None
    outbox_id: int | None = None             # the signed mail it answers
    marks: dict[str, Recipient] = field(default_factory=dict)   # may be marked when they fail hard
    told: list[Recipient] = field(default_factory=list)         # logged on the ticket
    lines: list[str] = field(default_factory=list)


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


async def _signed(ctx: MessageContext, env: Env, found: Finding) -> bool:
    """A report to one of our signed bounce addresses: that mail, that recipient."""
    mail = ctx.mail
    addresses = [*ctx.inbound.envelope_to, *mail.delivered_to, *(a for _, a in mail.to)]
    for tag in tags_in(addresses):
        outbox_id = env.signer.read_bounce_tag(tag)
        row = await outbox.get(env.db, outbox_id) if outbox_id is not None else None
        if row is None or env.signer.verify_bounce_tag(tag, row.recipient) is None:
            continue
        found.outbox_id = row.id
        found.ticket = await tickets.get(env.db, row.ticket_id) if row.ticket_id is not None else None
        report = mail.report.recipients if mail.report else []
        named = [r for r in report if r.address == row.recipient.lower()] or report[:1]
        status = named[0] if named else Recipient(row.recipient, status="")
        rcpt = Recipient(row.recipient.lower(), status.action, status.status, status.diagnostic)
        found.marks[rcpt.address] = rcpt
        found.told.append(rcpt)
        return True
    return False


async def check(ctx: MessageContext, env: Env) -> Outcome | None:
    if not is_bounce(ctx):
        return None
    found = Finding()
    report = ctx.mail.report
    if not await _signed(ctx, env, found) and report is not None and report.original_ids:
        # Only a report about mail we sent counts: anyone can quote a Message-ID a client sent us.
        found.ticket = await tickets.by_mail_ids(env.db, report.original_ids, direction="out")
        sent = await outbox.recipients_of(env.db, report.original_ids) if found.ticket is not None else {}
        for rcpt in report.recipients if found.ticket is not None else []:
            found.told.append(rcpt)
            # Marked only when the quoted mail went to that one address and nobody else: everyone who got a
            # copy could write this report, and must not be able to cut off the others (or staff).
            if [rcpt.address] in sent.values():
                found.marks[rcpt.address] = rcpt
    for rcpt in report.recipients if report else []:
        found.lines.append(f"{rcpt.address} {rcpt.action or '?'} {rcpt.status or '?'}")
    if found.ticket is None and found.outbox_id is None:
        ctx.notes.append("the report is not about mail we sent: no address marked, no ticket told")
    elif found.outbox_id is not None:
        ctx.notes.append(f"report to the signed bounce address of outbox mail {found.outbox_id}")
    ctx.bounce = found
    ticket = found.ticket
    return Blocked(reason=BOUNCE, detail="; ".join(found.lines) or "delivery failure (no machine-readable report)",
                   ticket_id=ticket.id if ticket is not None else None,
                   tid=ticket.tid if ticket is not None else None)


async def record(ctx: MessageContext, env: Env, outcome: Outcome) -> None:
    """The action: mark hard-failing recipients, note the report on the mail and the ticket."""
    found = ctx.bounce
    if not isinstance(found, Finding):
        return
    stamp = env.clock.stamp()
    if found.outbox_id is not None:
        await outbox.mark_bounced(env.db, found.outbox_id, stamp)
    ticket_id = found.ticket.id if found.ticket is not None else None
    for address, rcpt in found.marks.items():
        if rcpt.permanent:
            await senders.record_bounce(env.db, address, rcpt.status or "5.0.0", rcpt.diagnostic, ticket_id, stamp)
    for rcpt in found.told if ticket_id is not None else []:
        stops = rcpt.permanent and rcpt.address in found.marks
        assert ticket_id is not None  # the loop runs only for a ticket
        await tickets.log_event(env.db, ticket_id, "bounce", ctx.author_email or "mailer-daemon", stamp,
                                recipient=rcpt.address, action=rcpt.action, status=rcpt.status,
                                diagnostic=rcpt.diagnostic, queue_id=ctx.inbound.id, outbox_id=found.outbox_id,
                                stops_mail=stops)
