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
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from maild.addressbook import subject_token_pattern
from maild.desk.events import Actor, Event, EventKind
from maild.notify import rules as R
from maild.notify.compose import ascii_address
from maild.notify.mailing import Mailing
from maild.store import outbox, people, senders, staff, tickets

if TYPE_CHECKING:
    from maild.addressbook import AddressBook
    from maild.clock import Clock
    from maild.config import Settings
    from maild.notify.render import Renderer
    from maild.notify.tokens import Signer
    from maild.store.db import Database
    from maild.store.files import FileStore

log = logging.getLogger("ticketd.notify")

# Mail a person writes to the client: no Auto-Submitted (RFC 3834 is for automatic mail).
PERSONAL = frozenset({EventKind.ADMIN_REPLY})


@dataclass(frozen=True)
class Recipient:
    email: str
    name: str
    audience: str                  # client | staff
    staff_id: int | None = None
    role: str = ""                 # for client mail: requester | owner | user | contact | cc


class Notifier:
    def __init__(self, db: Database, settings: Settings, clock: Clock, signer: Signer, renderer: Renderer,
                 files: FileStore, book: AddressBook) -> None:
        self.db, self.settings, self.clock = db, settings, clock
        self.signer, self.renderer, self.files, self.book = signer, renderer, files, book
        self.rules = R.rules(settings.notifications.rules)
        self.token_re = subject_token_pattern(settings)
        self.queued = 0            # rows written since start (for wake-ups and tests)

    def templates_needed(self) -> list[tuple[str, str]]:
        return [("client" if g in R.CLIENT_GROUPS else "staff", kind.value)
                for kind, groups in self.rules.items() for g in groups]

    async def follow(self, events: Sequence[Event]) -> int:
        """Write the outbox rows for ``events``; returns how many. Runs inside the caller's transaction."""
        written = 0
        for event in events:
            if not event.notify or not self.rules.get(event.kind):
                continue
            ticket = await tickets.get(self.db, event.ticket_id)
            if ticket is None:
                continue
            staff_to, client_to = await self._recipients(event, ticket)
            mailing = Mailing(self, event, ticket)
            if client_to:
                client_to = await self._deliverable(event, ticket, client_to)
            if client_to:
                written += await mailing.to_clients(client_to, automatic=self._automatic(event))
            for rcpt in staff_to:
                if ascii_address(rcpt.email) is None:
                    log.warning("staff mail skipped: address needs SMTPUTF8", extra={"kv": {"staff": rcpt.email}})
                    continue
                written += await mailing.to_staff(rcpt)
        self.queued += written
        return written

    async def command_error(self, ticket: sqlite3.Row, member: sqlite3.Row, errors: Sequence[str]) -> None:
        """Answer a staff member whose mailed commands could not be carried out (nothing changed)."""
        carrier = Event(EventKind.OPTIONS_CHANGED, ticket["id"], Actor.system("ticketd"))
        rcpt = Recipient(member["email"], member["name"], "staff", member["id"])
        self.queued += await Mailing(self, carrier, ticket).to_staff(
            rcpt, template="command_error", errors=list(errors), statuses=list(tickets.STATUSES))

    def _automatic(self, event: Event) -> bool:
        if event.kind in PERSONAL:
            return False
        # A ticket a staff member opened carries their first message: a person's mail too.
        return not (event.kind is EventKind.TICKET_OPENED and event.actor.kind == "staff")

    async def _recipients(self, event: Event, ticket: sqlite3.Row) -> tuple[list[Recipient], list[Recipient]]:
        groups = self.rules[event.kind]
        staff_ids: list[int] = []
        rows: dict[int, sqlite3.Row] = {}
        client: list[Recipient] = []

        async def add_rows(found: Sequence[sqlite3.Row]) -> None:
            for row in found:
                rows[row["id"]] = row
                staff_ids.append(row["id"])

        for group in groups:
            if group == R.WATCHERS:
                await add_rows(await staff.watchers(self.db, ticket["id"]))
            elif group == R.DEPARTMENT or (group == R.DEPARTMENT_UNFLAGGED and ticket["flagged_to"] is None):
                await add_rows(await staff.notified_for(self.db, ticket["department_id"]))
            elif group == R.FLAGGED:
                who = event.staff_id if event.kind is EventKind.FLAGGED else ticket["flagged_to"]
                await add_rows(await staff.by_ids(self.db, [who] if who else []))
            elif group == R.ASSIGNED:
                who = event.staff_id if event.kind in (EventKind.ASSIGNED, EventKind.UNASSIGNED) \
                    else ticket["assigned_to"]
                await add_rows(await staff.by_ids(self.db, [who] if who else []))
            elif group == R.MENTIONED:
                await add_rows(await staff.by_ids(self.db, event.mentioned))
            elif group == R.REQUESTER:
                client.append(Recipient(ticket["client_email"], ticket["client_name"], "client", role="requester"))
            elif group in (R.OWNER, R.USERS, R.CONTACTS) and ticket["client_id"] is not None:
                role = {R.OWNER: "owner", R.USERS: "user", R.CONTACTS: "contact"}[group]
                client += [Recipient(p["email"], p["name"], "client", role=role)
                           for p in await people.account_people(self.db, ticket["client_id"]) if p["role"] == role]
            elif group == R.CC:
                client += [Recipient(c["address"], "", "client", role="cc")
                           for c in await people.cc_list(self.db, ticket["id"]) if c["state"] == "confirmed"]
        actor = event.actor
        staff_to: dict[str, Recipient] = {}
        for sid in staff_ids:
            row = rows[sid]
            if sid == actor.staff_id or (actor.email and row["email"] == actor.email.lower()):
                continue  # the actor never gets mail about their own action (flagging yourself included)
            staff_to.setdefault(row["email"], Recipient(row["email"], row["name"], "staff", sid))
        client_to: dict[str, Recipient] = {}
        for rcpt in client:
            email = rcpt.email.lower()
            if not email or email in staff_to or self.book.department_for(email):
                continue
            if email == actor.email.lower() and not (event.kind is EventKind.TICKET_OPENED and actor.kind == "client"):
                continue  # a client's confirmation of their own new ticket is the one exception
            client_to.setdefault(email, Recipient(email, rcpt.name, "client", role=rcpt.role))
        return list(staff_to.values()), list(client_to.values())

    async def _deliverable(self, event: Event, ticket: sqlite3.Row, rcpts: list[Recipient]) -> list[Recipient]:
        now = self.clock.now()
        hold = now - timedelta(days=self.settings.notifications.bounce_hold_days)
        bad = await senders.undeliverable(self.db, [r.email for r in rcpts], _iso(hold))
        cap = self.settings.notifications.auto_per_hour
        kept = []
        for rcpt in rcpts:
            reason = bad.get(rcpt.email)
            if reason is None and ascii_address(rcpt.email) is None:
                reason = "the address's local part is not ASCII (it would need SMTPUTF8)"
            if reason is None and cap and self._automatic(event):
                sent = await outbox.automatic_since(self.db, rcpt.email, _iso(now - timedelta(hours=1)))
                if sent >= cap:
                    reason = f"{sent} automatic mails in the last hour (notifications.auto_per_hour = {cap})"
            if reason is None:
                kept.append(rcpt)
                continue
            await tickets.log_event(self.db, ticket["id"], "mail_skipped", "notify", self.clock.stamp(),
                                    recipient=rcpt.email, for_event=event.kind.value, reason=reason)
            log.info("mail skipped", extra={"kv": {"ticket": ticket["tid"], "recipient": rcpt.email,
                                                   "event": event.kind.value, "reason": reason}})
        return kept


def _iso(dt: Any) -> str:
    from maild.clock import iso

    return iso(dt)
