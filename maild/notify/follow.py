"""Follow events to the outbox: the rule row of each event names recipient groups, which become
addresses; each mail is rendered, composed and written to the outbox in the caller's transaction.

Never a leak, never a loop: whoever acted gets no mail about their own action (except a client's
confirmation of the ticket they opened); no mail to our own addresses, to an address that bounced hard
(until the mark expires), to a banned address, to a pending CC recipient, or past the per-address cap of
automatic mail per hour (RFC 3834 section 2). A client mail skipped for one of these is logged on the
ticket so staff know.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from maild.addressbook import subject_token_pattern
from maild.clock import iso
from maild.desk.events import Actor, Event, EventKind
from maild.notify import lookups
from maild.notify import rules as R
from maild.notify.compose import ascii_address
from maild.notify.mailing import Batch, Mailing, Recipient
from maild.store import clientlinks, outbox, senders, tickets
from maild.store.db import is_transient, node_name
from maild.store.staff import StaffMember
from maild.store.tickets import Ticket

if TYPE_CHECKING:
    from maild.addressbook import AddressBook
    from maild.clock import Clock
    from maild.config import Settings
    from maild.notify.lookups import Lookups
    from maild.notify.render import Renderer
    from maild.notify.tokens import Signer
    from maild.store.blobs import Blobs
    from maild.store.db import Database

log = logging.getLogger("ticketd.notify")

EXPAND_BATCH = 200     # queued events expanded per write transaction


class _Taken(Exception):
    """Another expander took some of the events being expanded: roll back, read the queue again."""

# Mail a person writes to the client: no Auto-Submitted (RFC 3834 is for automatic mail).
PERSONAL = frozenset({EventKind.ADMIN_REPLY})


class Notifier:
    def __init__(self, db: Database, settings: Settings, clock: Clock, signer: Signer, renderer: Renderer,
                 files: Blobs, book: AddressBook) -> None:
        self.db, self.settings, self.clock = db, settings, clock
        self.signer, self.renderer, self.files, self.book = signer, renderer, files, book
        self.rules = R.rules(settings.notifications.rules)
        self.token_re = subject_token_pattern(settings)

    @classmethod
    def build(cls, db: Database, settings: Settings, clock: Clock, signer: Signer) -> Notifier:
        """A notifier of its own for ``db`` (the sender process expands the queue on its own connection)."""
        from maild.addressbook import AddressBook
        from maild.notify.render import Renderer
        from maild.store.blobs import BlobSpec

        return cls(db, settings, clock, signer, Renderer(settings.notifications.templates),
                   BlobSpec.from_settings(settings).open(), AddressBook(settings))

    async def follow(self, events: Sequence[Event]) -> int:
        """Queue ``events`` for notification in the caller's transaction (one statement); returns how many
        have a rule to follow. :meth:`expand` turns them into mail once that transaction committed."""
        events = [e for e in events if e.notify and self.rules.get(e.kind)]
        if events:
            await outbox.queue_events(self.db, [(e.ticket_id, e.to_json()) for e in events], self.clock.stamp())
        return len(events)

    async def expand(self, limit: int = EXPAND_BATCH) -> int:
        """Turn the queued events into outbox mail; returns how many mails. Called outside any transaction:
        recipients are chosen and mail rendered from plain reads, then one short write transaction stores
        the mail and takes the events out of the queue. If another expander took some of them meanwhile,
        that transaction rolls back and the rest are read again: each event becomes its mail once. An event
        that cannot become mail (unreadable, a template failing on its data) is logged on its ticket and
        taken out, so that it never holds up the others."""
        written = 0
        while queued := await outbox.queued_events(self.db, limit, *self._claim()):
            events: list[tuple[int, Event]] = []
            for queue_id, ticket_id, text in queued:
                try:
                    events.append((queue_id, Event.from_json(text)))
                except Exception as exc:   # e.g. written by another version of ticketd
                    await self._give_up(queue_id, ticket_id, "unreadable", exc)
            if not events:
                continue
            try:
                written += await self._store([queue_id for queue_id, _ in events],
                                             await self.plan([e for _, e in events]))
            except Exception as exc:
                if is_transient(exc):
                    raise
                for queue_id, event in events:   # one event's trouble stays its own
                    written += await self._expand_alone(queue_id, event)
        return written

    def _claim(self) -> tuple[str, str, str]:
        """(node, now, until) for claiming queued events (see [database] lease_seconds)."""
        now = self.clock.now()
        return (node_name(self.settings.database.node), iso(now),
                iso(now + timedelta(seconds=self.settings.database.lease_seconds)))

    async def _expand_alone(self, queue_id: int, event: Event) -> int:
        try:
            return await self._store([queue_id], await self.plan([event]))
        except Exception as exc:
            if is_transient(exc):
                raise
            await self._give_up(queue_id, event.ticket_id, event.kind.value, exc)
            return 0

    async def _give_up(self, queue_id: int, ticket_id: int | None, what: str, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"[:500]
        log.error("notification failed", exc_info=exc,
                  extra={"kv": {"ticket_id": ticket_id, "event": what, "error": error}})
        batch = Batch()
        if ticket_id is not None:
            batch.logs.append((ticket_id, "notify_failed", {"for_event": what, "error": error}))
        try:
            await self._store([queue_id], batch)
        except Exception as again:
            if is_transient(again):
                raise
            await self._store([queue_id], Batch())   # the log row itself failed (the ticket is gone)

    async def _store(self, queue_ids: list[int], batch: Batch) -> int:
        async def work() -> int:
            if await outbox.take_events(self.db, queue_ids) != len(queue_ids):
                raise _Taken
            return await self._flush(batch)

        try:
            return await self.db.unit(work)
        except _Taken:
            return 0   # another expander had some of these: the loop reads what is left

    async def plan(self, events: Sequence[Event]) -> Batch:
        """The mail for ``events``, rendered, and what else expanding them writes; reads only. Runs in a
        fixed number of database trips whatever the number of events."""
        batch = Batch()
        events = [e for e in events if e.notify and self.rules.get(e.kind)]
        if not events:
            return batch
        found = await lookups.load(self.db, events, self.rules)
        plans: list[tuple[Event, Ticket, list[Recipient], list[Recipient]]] = []
        for event in events:
            ticket = found.tickets.get(event.ticket_id)
            if ticket is None:
                continue
            staff_to, client_to = self._recipients(event, ticket, found)
            if not event.client_notice:  # e.g. a reply that closes: its own mail tells the client
                client_to = []
            plans.append((event, ticket, staff_to, client_to))
        check = await self._checker([r for _, _, _, c in plans for r in c])
        for event, ticket, staff_to, client_to in plans:
            mailing = Mailing(self, event, ticket, batch, found)
            if client_to:
                client_to = self._deliverable(event, ticket, client_to, batch, check)
            if client_to:
                mailing.to_clients(client_to, automatic=self._automatic(event))
            for rcpt in staff_to:
                if ascii_address(rcpt.email) is None:
                    log.warning("staff mail skipped: address needs SMTPUTF8", extra={"kv": {"staff": rcpt.email}})
                    continue
                mailing.to_staff(rcpt)
        return batch

    async def _flush(self, batch: Batch) -> int:
        stamp = self.clock.stamp()
        for ticket_id, event_name, details in batch.logs:
            await tickets.log_event(self.db, ticket_id, event_name, "notify", stamp, **details)
        await tickets.add_mail_ids(self.db, batch.mail_ids, "out")
        await clientlinks.issue(self.db, batch.links, stamp)
        await outbox.enqueue_many(self.db, batch.mails, stamp)
        return len(batch.mails)

    async def command_error(self, ticket: Ticket, member: StaffMember, errors: Sequence[str]) -> None:
        """Answer a staff member whose mailed commands could not be carried out (nothing changed)."""
        carrier = Event(EventKind.OPTIONS_CHANGED, ticket.id, Actor.system("ticketd"))
        rcpt = Recipient(member.email, member.name, "staff", member.id)
        batch = Batch()
        found = await lookups.load(self.db, [carrier], {})
        Mailing(self, carrier, found.tickets[ticket.id], batch, found).to_staff(
            rcpt, template="command_error", errors=list(errors), statuses=list(tickets.STATUSES))
        await self._flush(batch)

    def _automatic(self, event: Event) -> bool:
        if event.kind in PERSONAL:
            return False
        # A ticket a staff member opened carries their first message: a person's mail too.
        return not (event.kind is EventKind.TICKET_OPENED and event.actor.kind == "staff")

    def _recipients(self, event: Event, ticket: Ticket, found: Lookups) -> tuple[list[Recipient], list[Recipient]]:
        groups = self.rules[event.kind]
        wanted = lookups.named_staff(event, ticket, groups)
        department = R.DEPARTMENT in groups or (R.DEPARTMENT_UNFLAGGED in groups and ticket.flagged_to is None)
        actor = event.actor
        staff_to: dict[str, Recipient] = {}
        for row in found.staff.get(ticket.id, []):
            chosen = (row["id"] in wanted or (R.WATCHERS in groups and row["watching"])
                      or (department and row["dept_notify"]))
            if not chosen or not row["can_see"]:
                continue
            if row["id"] == actor.staff_id or (actor.email and row["email"] == actor.email.lower()):
                continue  # the actor never gets mail about their own action (flagging yourself included)
            staff_to.setdefault(row["email"], Recipient(row["email"], row["name"], "staff", row["id"]))
        client: list[Recipient] = []
        if R.REQUESTER in groups:
            client.append(Recipient(ticket.client_email, ticket.client_name, "client", role="requester"))
        roles = {R.OWNER: "owner", R.USERS: "user", R.CONTACTS: "contact", R.CC: "cc"}
        wanted_roles = {roles[g] for g in groups if g in roles}
        client += [Recipient(p["email"], p["name"], "client", role=p["role"])
                   for p in found.people.get(ticket.id, [])
                   if p["role"] in wanted_roles and p["state"] == "confirmed"]
        client_to: dict[str, Recipient] = {}
        for rcpt in client:
            # One spelling everywhere (outbox rows, bounce marks, the cap): the ASCII one, IDNA domain.
            email = ascii_address(rcpt.email) or rcpt.email.lower()
            if not email or email in staff_to or self.book.department_for(email):
                continue
            own = email in (actor.email.lower(), ascii_address(actor.email))
            if own and not (event.kind is EventKind.TICKET_OPENED and actor.kind == "client"):
                continue  # a client's confirmation of their own new ticket is the one exception
            client_to.setdefault(email, Recipient(email, rcpt.name, "client", role=rcpt.role))
        return list(staff_to.values()), list(client_to.values())

    async def _checker(self, rcpts: list[Recipient]) -> tuple[dict[str, str], dict[str, int]]:
        """Who must not be mailed (hard bounce, ban) and how much automatic mail each got this hour: one
        query each for every client recipient of the batch."""
        if not rcpts:
            return {}, {}
        now = self.clock.now()
        addresses = sorted({r.email for r in rcpts})
        hold = now - timedelta(days=self.settings.notifications.bounce_hold_days)
        bad = await senders.undeliverable(self.db, addresses, _iso(hold))
        counts = {}
        if self.settings.notifications.auto_per_hour:
            counts = await outbox.automatic_counts(self.db, addresses, _iso(now - timedelta(hours=1)))
        return bad, counts

    def _deliverable(self, event: Event, ticket: Ticket, rcpts: list[Recipient], batch: Batch,
                     check: tuple[dict[str, str], dict[str, int]]) -> list[Recipient]:
        bad, counts = check
        cap = self.settings.notifications.auto_per_hour
        kept = []
        for rcpt in rcpts:
            reason = bad.get(rcpt.email)
            if reason is None and ascii_address(rcpt.email) is None:
                reason = "the address's local part is not ASCII (it would need SMTPUTF8)"
            if reason is None and cap and self._automatic(event):
                sent = counts.get(rcpt.email, 0) + batch.automatic_to(rcpt.email)
                if sent >= cap:
                    reason = f"{sent} automatic mails in the last hour (notifications.auto_per_hour = {cap})"
            if reason is None:
                kept.append(rcpt)
                continue
            batch.logs.append((ticket.id, "mail_skipped",
                               {"recipient": rcpt.email, "for_event": event.kind.value, "reason": reason}))
            log.info("mail skipped", extra={"kv": {"ticket": ticket.tid, "recipient": rcpt.email,
                                                   "event": event.kind.value, "reason": reason}})
        return kept


def _iso(dt: Any) -> str:
    from maild.clock import iso

    return iso(dt)
