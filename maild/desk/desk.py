"""The desk's actions: open, reply, note, change options (department, subject, status, priority,
assignee, flag, CC recipients, client), watch, unwatch, close.

Each action checks the actor's rights (admins may do everything, other staff only in the departments they
work in), compares what the actor saw (``expected``) with the ticket now and refuses with the differences
(collision detection), then writes the change, its ticket_log rows and its outbox rows in one transaction.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from maild.clock import iso
from maild.desk import body as bodies
from maild.desk import core
from maild.desk.errors import Collision, Denied, Invalid, NotFound
from maild.desk.events import Actor, Event, EventKind
from maild.desk.options import Options, apply_options, parse_status
from maild.notify.headers import new_message_id
from maild.store import clientlinks, escalations, feedback, messages, people, ratings, senders, staff, tickets
from maild.store.db import Database
from maild.store.staff import StaffMember
from maild.store.tickets import Ticket

if TYPE_CHECKING:
    from maild.clock import Clock
    from maild.config import Escalation, Settings
    from maild.notify.follow import Notifier

# What collision detection compares (seed: department, subject, priority, client, assigned admin, flagged
# admin, CC recipients, last reply time, status).
# What a client may send from the client pages (mail has its own limit: mail.max_message_size).
CLIENT_SUBJECT_MAX, CLIENT_TEXT_MAX, CLIENT_COMMENT_MAX = 300, 100_000, 5_000
WATCHED_FIELDS = ("department", "subject", "priority", "client", "assigned", "flagged", "cc", "last_reply_at",
                  "status")


log = logging.getLogger("ticketd.desk")
T = TypeVar("T")


@dataclass
class Result:
    ticket_id: int
    tid: str
    events: list[Event] = field(default_factory=list)
    message_id: int | None = None
    notes: list[str] = field(default_factory=list)


def actor_of(member: StaffMember) -> Actor:
    """A staff member as the actor of desk actions (their display name, never their username, goes to clients)."""
    return Actor(kind="staff", email=member.email, name=member.name, staff_id=member.id,
                 username=member.username, is_admin=member.is_admin)


class Desk:
    def __init__(self, db: Database, settings: Settings, clock: Clock, departments: Mapping[str, int],
                 notifier: Notifier, outer_transaction: bool = False) -> None:
        self.db, self.settings, self.clock = db, settings, clock
        self.departments = departments
        self.notifier = notifier
        self._outer = outer_transaction

    def within(self) -> Desk:
        """The same desk for a caller that holds the transaction already (the mail pipeline)."""
        return Desk(self.db, self.settings, self.clock, self.departments, self.notifier, outer_transaction=True)

    @asynccontextmanager
    async def _unit(self) -> AsyncIterator[None]:
        if self._outer:
            yield
            return
        async with self.db.transaction():
            yield
        await self._expand()

    async def _as_unit(self, work: Callable[[], Awaitable[T]]) -> T:
        """A job's bulk action: ``work`` as one unit of work (it awaits nothing but statements: one trip
        to SQLite's database thread instead of one per statement), then its queued events expanded."""
        if self._outer:
            return await work()
        assert self.notifier.db is self.db   # the unit's statements must all be this connection's
        result = await self.db.unit(work)
        await self._expand()
        return result

    async def _expand(self) -> None:
        """Once an action committed, its queued events become mail now (the daemon's sender would otherwise
        do it at its next round); trouble here leaves them queued for the sender and never undoes the action."""
        try:
            await self.notifier.expand()
        except Exception:
            log.warning("notifications stay queued for the daemon's sender", exc_info=True)

    # -- looking things up ---------------------------------------------------------------------------------

    async def actor(self, username: str) -> Actor:
        row = await staff.by_username(self.db, username)
        if row is None:
            raise NotFound(f"no staff member {username!r} (ticketd staff list shows them)")
        return actor_of(row)

    async def ticket(self, tid: str, lock: bool = True) -> Ticket:
        """The ticket (followed past merges), locked until the action's transaction ends (``lock``)."""
        row = await tickets.by_tid(self.db, tid.strip().lstrip("#"))
        if row is None:
            raise NotFound(f"no ticket #{tid.strip().lstrip('#')}")
        row = await tickets.resolve_merged(self.db, row)
        return (await tickets.get_locked(self.db, row.id) or row) if lock else row

    def department_id(self, name: str) -> tuple[int, str]:
        for known, dept_id in self.departments.items():
            if known.lower() == name.strip().lower():
                return dept_id, known
        raise NotFound(f"no department {name!r}; configured: {', '.join(self.departments)}")

    async def snapshot(self, ticket: Ticket) -> dict[str, str]:
        """The values collision detection compares, as text."""
        cc = await people.cc_list(self.db, ticket.id)
        return {
            "department": ticket.department, "subject": ticket.subject, "priority": ticket.priority,
            "client": str(ticket.client_id or ""), "assigned": ticket.assigned_username or "",
            "flagged": ticket.flagged_username or "", "cc": ",".join(sorted(r["address"] for r in cc)),
            "last_reply_at": ticket.last_reply_at, "status": ticket.status,
        }

    async def may_work(self, actor: Actor, department_id: int) -> bool:
        """The rights rule: admins (and the system) everywhere, other staff in the departments they work in."""
        if actor.kind == "system" or actor.is_admin:
            return True
        if actor.kind != "staff" or actor.staff_id is None:
            return False
        member, _ = await staff.departments_of(self.db, actor.staff_id)
        return department_id in member

    async def _check_department(self, actor: Actor, department_id: int, department: str) -> None:
        if not await self.may_work(actor, department_id):
            if actor.kind != "staff":
                raise Denied("only staff act on tickets through the desk")
            raise Denied(f"{actor.username} does not work in department {department!r}"
                         f" (an admin can add it: ticketd staff set {actor.username} --departments ...)")

    async def _check(self, actor: Actor, ticket: Ticket, expected: Mapping[str, str] | None) -> None:
        await self._check_department(actor, ticket.department_id, ticket.department)
        if expected:
            unknown = set(expected) - set(WATCHED_FIELDS)
            if unknown:
                raise Invalid(f"cannot compare {', '.join(sorted(unknown))}; known: {', '.join(WATCHED_FIELDS)}")
            now = await self.snapshot(ticket)
            changed = {k: (v, now[k]) for k, v in expected.items() if str(v) != now[k]}
            if changed:
                raise Collision(changed)

    async def _follow(self, events: list[Event]) -> None:
        if not self._outer:  # the mail pipeline queues the events in its own notify stage
            await self.notifier.follow(events)

    async def _finish(self, result: Result) -> Result:
        if not self._outer:  # the mail pipeline queues the events in its own notify stage
            await self.notifier.follow(result.events)
        return result

    # -- actions -------------------------------------------------------------------------------------------

    async def open_ticket(self, actor: Actor, *, department: str, email: str, name: str, subject: str, body: str,
                          files: Sequence[core.StoredFile] = (), priority: str | None = None,
                          notify: bool = True) -> Result:
        """Open a ticket on behalf of a client, or of any name and address (seed); the first message is the
        staff member's, and the client gets it with the new-ticket mail."""
        dept_id, dept_name = self.department_id(department)
        email = people.normalise_address(email)
        if not email:
            raise Invalid("--to needs an email address such as client@example.com")
        if not subject.strip():
            raise Invalid("a ticket needs a subject")
        prio = parse_priority(priority or self.settings.mail.default_priority)
        accounts = await people.accounts_of(self.db, email)
        client_id = accounts[0]["client_id"] if len(accounts) == 1 else None
        await self._check_department(actor, dept_id, dept_name)
        text = bodies.with_signature(bodies.merge(body, name, email), await self._signature(actor))
        first = self._staff_message(actor, text, subject, files)
        async with self._unit():
            ticket_id, tid, events = await core.open_ticket(
                self.db, actor=actor, digits=self.settings.mail.ticket_id_digits, department_id=dept_id,
                department=dept_name, client_email=email, client_name=name.strip(), client_id=client_id,
                priority=prio, first=first, stamp=self.clock.stamp(), notify=notify, by="staff",
                message_id_for=lambda ticket_id: new_message_id(ticket_id, self.settings.mail.domain))
            return await self._finish(Result(ticket_id, tid, events, events[0].message_id))

    async def reply(self, actor: Actor, tid: str, body: str, files: Sequence[core.StoredFile] = (),
                    status: str | None = None, expected: Mapping[str, str] | None = None,
                    inbound_id: int | None = None, **detail: Any) -> Result:
        """An admin reply: merge fields, signature, markdown; status Answered (or ``status``); the client is
        mailed the reply with its attachments."""
        if not body.strip() and not files:
            raise Invalid("an empty reply; write something or attach a file")
        new_status = parse_status(status) if status else None
        async with self._unit():
            ticket = await self.ticket(tid)
            await self._check(actor, ticket, expected)
            text = bodies.merge(body, ticket.client_name, ticket.client_email)
            text = bodies.with_signature(text, await self._signature(actor))
            msg = self._staff_message(actor, text, ticket.subject, files, ticket_id=ticket.id)
            msg = replace(msg, inbound_id=inbound_id)
            message_id, events = await core.add_reply(self.db, ticket, msg, actor, self.clock.stamp(),
                                                      status=new_status, **detail)
            return await self._finish(Result(ticket.id, ticket.tid, events, message_id))

    async def note(self, actor: Actor, tid: str, body: str, expected: Mapping[str, str] | None = None,
                   inbound_id: int | None = None, files: Sequence[core.StoredFile] = (), **detail: Any) -> Result:
        """A private note; ``@username`` mentions mail those admins (never a client)."""
        if not body.strip():
            raise Invalid("an empty note")
        async with self._unit():
            ticket = await self.ticket(tid)
            await self._check(actor, ticket, expected)
            # Only admins and the department's staff can be @mentioned: the note's text goes to them by mail.
            mentions = bodies.mentions(body)
            named = await staff.with_access(self.db, mentions, ticket.department_id)
            msg = core.NewMessage(kind="note", author_email=actor.email, author_name=actor.name or actor.username,
                                  badge="Operator", body=body.strip(), body_html=bodies.to_html(body),
                                  staff_id=actor.staff_id, inbound_id=inbound_id, files=files)
            message_id, events = await core.add_note(self.db, ticket, msg, actor, [r.id for r in named],
                                                     self.clock.stamp(), **detail)
            result = Result(ticket.id, ticket.tid, events, message_id)
            unknown = set(mentions) - {r.username.lower() for r in named}
            if unknown:
                result.notes.append(f"not mentioned (no such staff member, or not in department"
                                    f" {ticket.department!r}): {', '.join('@' + u for u in sorted(unknown))}")
            return await self._finish(result)

    async def set_options(self, actor: Actor, tid: str, options: Options,
                          expected: Mapping[str, str] | None = None) -> Result:
        async with self._unit():
            ticket = await self.ticket(tid)
            await self._check(actor, ticket, expected)
            events = await apply_options(self, actor, ticket, options, self.clock.stamp())
            return await self._finish(Result(ticket.id, ticket.tid, events))

    async def close(self, actor: Actor, tid: str, expected: Mapping[str, str] | None = None) -> Result:
        return await self.set_options(actor, tid, Options(status=tickets.CLOSED), expected)

    async def watch(self, actor: Actor, tid: str, on: bool = True) -> Result:
        """Watch (or stop watching) a ticket: its replies, notes and option changes by mail (seed)."""
        if actor.staff_id is None:
            raise Invalid("only a staff member can watch a ticket: --as USERNAME")
        async with self._unit():
            ticket = await self.ticket(tid)
            await self._check(actor, ticket, None)
            changed = await (staff.watch if on else staff.unwatch)(self.db, ticket.id, actor.staff_id)
            if changed:
                await tickets.log_event(self.db, ticket.id, "watched" if on else "unwatched", actor.label,
                                        self.clock.stamp())
            result = Result(ticket.id, ticket.tid)
            if not changed:
                result.notes.append(f"{actor.username} was {'already' if on else 'not'} watching #{ticket.tid}")
            return result

    async def merge(self, actor: Actor, tids: Sequence[str], expected: Mapping[str, str] | None = None) -> Result:
        """Merge tickets (seed): the newer ones into the oldest, which keeps its client; "[MERGED]" is added
        to its subject; its status becomes that of the ticket with the most recent reply; the messages of all
        of them make one thread, in the order they were written. The merged-away tickets' numbers, links and
        mail lead to it from then on. ``expected``: what the actor saw of the oldest ticket."""
        async with self._unit():
            ids = sorted({(await self.ticket(tid, lock=False)).id for tid in tids})
            found: dict[int, Ticket] = {}
            for ticket_id in ids:   # locked in one order (two merges of the same tickets never deadlock)
                ticket = await tickets.get_locked(self.db, ticket_id)
                assert ticket is not None
                await self._check_department(actor, ticket.department_id, ticket.department)
                found[ticket.id] = ticket
            if len(found) < 2:
                raise Invalid("a merge needs two tickets or more (a ticket merged already counts as the one it"
                              " went into)")
            ordered = sorted(found.values(), key=lambda t: (t.created_at, t.id))
            target, sources = ordered[0], ordered[1:]
            await self._check(actor, target, expected)
            latest = max(found.values(), key=lambda t: (t.last_reply_at, t.id))
            subject = target.subject if target.subject.endswith("[MERGED]") else f"{target.subject} [MERGED]"
            stamp = self.clock.stamp()
            await tickets.merge(self.db, target.id, [t.id for t in sources], stamp, subject=subject,
                                status=latest.status)
            await tickets.log_event(self.db, target.id, "merged", actor.label, stamp,
                                    tickets=[t.tid for t in sources], status=[target.status, latest.status])
            await tickets.log_events(self.db, [(t.id, "merged_into", actor.label, {"ticket": target.tid})
                                               for t in sources], stamp)
            merged = Result(target.id, target.tid)
            merged.notes.append(f"merged {', '.join('#' + t.tid for t in sources)} into #{target.tid}")
            return merged

    async def split(self, actor: Actor, tid: str, message_ids: Sequence[int], *, department: str | None = None,
                    priority: str | None = None, subject: str | None = None, notify: bool = False,
                    expected: Mapping[str, str] | None = None) -> Result:
        """Split messages off into a new ticket (seed: Split Replies): in ``department`` (default: the
        ticket's), with ``priority`` and ``subject`` (default: the ticket's), the same client; attachments go
        with their messages, answers to their mail follow them; ``notify``: the client gets the new-ticket
        mail. At least one message stays. The new ticket."""
        if not message_ids:
            raise Invalid("choose the messages to split off")
        async with self._unit():
            ticket = await self.ticket(tid)
            await self._check(actor, ticket, expected)
            dept_id, dept_name = self.department_id(department) if department else (ticket.department_id,
                                                                                     ticket.department)
            await self._check_department(actor, dept_id, dept_name)
            held = {m.id: m for m in await messages.for_ticket(self.db, ticket.id)}
            chosen = sorted(set(message_ids))
            unknown = [i for i in chosen if i not in held]
            if unknown:
                raise NotFound(f"no message {', '.join(map(str, unknown))} on #{ticket.tid}"
                               " (ticketd ticket show TID --json lists their ids)")
            if len(chosen) == len(held):
                raise Invalid("at least one message must stay on the ticket")
            stamp = self.clock.stamp()
            first = min((held[i] for i in chosen), key=lambda m: (m.created_at, m.id))
            new_id, new_tid = await core.create_ticket(
                self.db, digits=self.settings.mail.ticket_id_digits, subject=subject or ticket.subject,
                priority=parse_priority(priority or ticket.priority), department_id=dept_id,
                client_email=ticket.client_email, client_name=ticket.client_name, client_id=ticket.client_id,
                stamp=stamp, root_message_id=first.message_id)
            await tickets.move_messages(self.db, ticket.id, new_id, chosen)
            for moved_to in (ticket.id, new_id):
                await tickets.recount(self.db, moved_to, stamp)
            await tickets.log_event(self.db, ticket.id, "split", actor.label, stamp, ticket=new_tid,
                                    messages=chosen)
            await tickets.log_event(self.db, new_id, "opened", actor.label, stamp, department=dept_name,
                                    split_from=ticket.tid, messages=chosen)
            events = [Event(EventKind.TICKET_OPENED, new_id, actor, message_id=first.id, notify=notify)]
            result = Result(new_id, new_tid, events, first.id)
            result.notes.append(f"split {len(chosen)} message{'s' if len(chosen) > 1 else ''} of #{ticket.tid}"
                                f" off into #{new_tid}")
            return await self._finish(result)

    async def _message(self, actor: Actor, tid: str, message_id: int,
                       expected: Mapping[str, str] | None) -> tuple[Ticket, messages.Message, bool]:
        """The ticket (checked, locked), its message ``message_id`` and whether that is its first."""
        ticket = await self.ticket(tid)
        await self._check(actor, ticket, expected)
        thread = await messages.for_ticket(self.db, ticket.id)
        found = next((m for m in thread if m.id == message_id), None)
        if found is None:
            raise NotFound(f"no message {message_id} on #{ticket.tid} (ticketd ticket show TID --json lists them)")
        return ticket, found, found.id == thread[0].id

    async def edit_message(self, actor: Actor, tid: str, message_id: int, body: str,
                           expected: Mapping[str, str] | None = None) -> Result:
        """Change a message's text (seed: Edit a Reply); logged with what it said before. Nothing is mailed:
        the client has the mail as it was sent."""
        if not body.strip():
            raise Invalid("an empty message; delete it instead")
        async with self._unit():
            ticket, message, _ = await self._message(actor, tid, message_id, expected)
            html = bodies.to_html(body) if message.kind != "reply" else None
            await messages.edit(self.db, message.id, body.strip(), html)
            stamp = self.clock.stamp()
            await tickets.log_event(self.db, ticket.id, "message_edited", actor.label, stamp, message=message.id,
                                    author=message.author_email, before=message.body[:2000])
            await tickets.touch_change(self.db, ticket.id, stamp)
            return Result(ticket.id, ticket.tid, message_id=message.id)

    async def delete_message(self, actor: Actor, tid: str, message_id: int,
                             expected: Mapping[str, str] | None = None) -> Result:
        """Delete a message (seed: Delete a Reply); deleting the first message deletes the whole ticket."""
        async with self._unit():
            ticket, message, first = await self._message(actor, tid, message_id, expected)
            if first:
                await self._delete_ticket(actor, ticket)
                gone = Result(ticket.id, ticket.tid)
                gone.notes.append(f"deleted ticket #{ticket.tid} (its first message)")
                return gone
            stamp = self.clock.stamp()
            await messages.delete(self.db, message.id)
            await tickets.recount(self.db, ticket.id, stamp)
            await tickets.log_event(self.db, ticket.id, "message_deleted", actor.label, stamp, message=message.id,
                                    kind=message.kind, author=message.author_email, text=message.body[:2000])
            return Result(ticket.id, ticket.tid, message_id=message.id)

    async def delete_tickets(self, actor: Actor, tids: Sequence[str], ban_sender: bool = False) -> list[str]:
        """Delete tickets (seed: bulk Delete); ``ban_sender``: their clients' addresses go on the ban list
        first (seed: Block Sender & Delete). The numbers deleted."""
        deleted: list[str] = []
        async with self._unit():
            for tid in tids:
                ticket = await self.ticket(tid)
                await self._check_department(actor, ticket.department_id, ticket.department)
                if ban_sender:
                    await senders.ban(self.db, ticket.client_email, f"ticket #{ticket.tid} deleted as spam",
                                      actor.label, self.clock.stamp())
                    await clientlinks.revoke(self.db, None, ticket.client_email, self.clock.stamp(), actor.label)
                await self._delete_ticket(actor, ticket)
                deleted.append(ticket.tid)
        return deleted

    async def _delete_ticket(self, actor: Actor, ticket: Ticket) -> None:
        gone = await tickets.delete(self.db, ticket.id)
        log.info("ticket deleted", extra={"kv": {"ticket": ticket.tid, "by": actor.label, "with_merged": len(gone) - 1,
                                                 "client": ticket.client_email}})

    async def revoke_links(self, actor: Actor, tid: str, recipient: str | None = None) -> Result:
        """Revoke the client links of the ticket's recipients (all who had one, or ``recipient``): every
        link of theirs, whatever ticket it came with, and the sessions they started stop at once (a
        recipient's session reaches all the tickets they are one of the people of). Mail sent later carries
        new links; to keep someone away from the ticket for good, take them off it (CC, client account)."""
        async with self._unit():
            ticket = await self.ticket(tid)
            await self._check_department(actor, ticket.department_id, ticket.department)
            stamp = self.clock.stamp()
            who = people.normalise_address(recipient) if recipient else None
            if recipient and not who:
                raise Invalid(f"not an email address: {recipient!r}")
            revoked = await clientlinks.revoke(self.db, ticket.id, who, stamp, actor.label)
            result = Result(ticket.id, ticket.tid)
            if revoked:
                await tickets.log_event(self.db, ticket.id, "links_revoked", actor.label, stamp, recipients=revoked)
                result.notes.append(f"revoked the links of {', '.join(revoked)} on #{ticket.tid}")
            else:
                result.notes.append(f"no live link{' of ' + who if who else ''} on #{ticket.tid}")
            return result

    # -- the client's actions, from their ticket's pages (the actor: the link's recipient) ------------------

    async def _client_allowed(self, actor: Actor) -> None:
        """A client acting from the client pages: not on the ban list (as for their mail)."""
        if actor.kind != "client" or not actor.email:
            raise Denied("only the ticket's own people act on it from the client pages")
        if await senders.banned(self.db, [actor.email]) is not None:
            raise Denied("this address may not use the ticket pages")

    async def _client_ticket(self, actor: Actor, tid: str) -> Ticket:
        """The ticket (locked), if ``actor`` is one of its people; NotFound otherwise (as for no ticket)."""
        await self._client_allowed(actor)
        ticket = await self.ticket(tid)
        if not await clientlinks.may_see(self.db, actor.email, ticket.id):
            raise NotFound(f"no ticket #{tid.strip().lstrip('#')}")
        return ticket

    async def _client_message(self, actor: Actor, client_id: int | None, subject: str, body: str,
                              files: Sequence[core.StoredFile], fallback_name: str) -> core.NewMessage:
        badge, name, _ = await people.badge_and_name(self.db, actor.email, client_id, opening=False)
        return core.NewMessage(kind="reply", author_email=actor.email, author_name=name or fallback_name, badge=badge,
                               body=body.strip(), subject=subject, files=files)

    async def client_reply(self, actor: Actor, tid: str, body: str, files: Sequence[core.StoredFile] = ()) -> Result:
        """A client's reply from the ticket's page (seed: Replying to a Ticket): status Customer-Reply, a
        Closed ticket reopens (as the department's ``closed_replies`` allows), staff hear of it as of a reply
        by mail."""
        if not body.strip() and not files:
            raise Invalid("an empty reply; write something or attach a file")
        _fits(body, CLIENT_TEXT_MAX, "the message")
        async with self._unit():
            ticket = await self._client_ticket(actor, tid)
            dept = self.settings.department(ticket.department)
            if ticket.status == tickets.CLOSED and dept is not None and dept.closed_replies != "reopen":
                raise Invalid("this ticket is closed and cannot be reopened: please open a new ticket")
            own = actor.email == ticket.client_email
            msg = await self._client_message(actor, ticket.client_id, ticket.subject, body, files,
                                             ticket.client_name if own else "")
            message_id, events = await core.add_reply(self.db, ticket, msg, actor, self.clock.stamp(), via="web")
            return await self._finish(Result(ticket.id, ticket.tid, events, message_id))

    async def client_open(self, actor: Actor, *, department: str, subject: str, body: str,
                          files: Sequence[core.StoredFile] = ()) -> Result:
        """A client opens a ticket from the client pages (seed: Opening a New Ticket): the department's
        ``accept_new`` applies as for mail; the client gets the confirmation mail, staff as for mail."""
        await self._client_allowed(actor)
        dept_id, dept_name = self.department_id(department)
        if not subject.strip():
            raise Invalid("a ticket needs a subject")
        if not body.strip():
            raise Invalid("a ticket needs a message")
        _fits(subject, CLIENT_SUBJECT_MAX, "the subject")
        _fits(body, CLIENT_TEXT_MAX, "the message")
        dept = self.settings.department(dept_name)
        limit, window = self.settings.limits.new_tickets_per_sender, self.settings.limits.window_minutes
        since = iso(self.clock.now() - timedelta(minutes=window))
        if limit > 0 and await senders.tickets_opened_since(self.db, actor.email, since) >= limit:
            raise Denied(f"you have opened {limit} tickets in the last {window} minutes; please wait, or reply"
                         " to one of them")
        badge, name, client_id = await people.badge_and_name(self.db, actor.email, None, opening=True)
        if dept is not None and dept.accept_new == "registered" and badge == "Guest":
            raise Denied(f"the {dept_name} department takes tickets from registered clients only")
        first = core.NewMessage(kind="reply", author_email=actor.email, author_name=name or actor.name, badge=badge,
                                body=body.strip(), subject=subject.strip(), files=files)
        async with self._unit():
            ticket_id, tid, events = await core.open_ticket(
                self.db, actor=actor, digits=self.settings.mail.ticket_id_digits, department_id=dept_id,
                department=dept_name, client_email=actor.email, client_name=name or actor.name, client_id=client_id,
                priority=parse_priority(self.settings.mail.default_priority), first=first, stamp=self.clock.stamp(),
                via="web")
            return await self._finish(Result(ticket_id, tid, events, events[0].message_id))

    async def client_close(self, actor: Actor, tid: str) -> Result:
        """The client closes their ticket (seed: Closing a Ticket); staff hear of it as the rules say."""
        async with self._unit():
            ticket = await self._client_ticket(actor, tid)
            events = await apply_options(self, actor, ticket, Options(status=tickets.CLOSED), self.clock.stamp())
            return await self._finish(Result(ticket.id, ticket.tid, events))

    async def rate_reply(self, actor: Actor, tid: str, message_id: int, rating: int) -> Result:
        """The client rates a staff reply 1 (poor) to 5 (excellent) (seed: Ticket Reply Ratings, when
        ``feedback.reply_ratings`` is on); a later rating replaces it. Logged; nobody is mailed."""
        if not self.settings.feedback.reply_ratings:
            raise Denied("reply ratings are turned off ([feedback] reply_ratings)")
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
            raise Invalid("a rating is a number from 1 to 5")
        async with self._unit():
            ticket = await self._client_ticket(actor, tid)
            message = next((m for m in await messages.for_ticket(self.db, ticket.id) if m.id == message_id), None)
            if message is None or message.kind != "staff_reply":
                raise NotFound(f"no staff reply {message_id} on #{ticket.tid}")
            stamp = self.clock.stamp()
            before = await ratings.rate(self.db, message.id, message.staff_id, rating, actor.label, stamp)
            await tickets.log_event(self.db, ticket.id, "reply_rated", actor.label, stamp, message=message.id,
                                    rating=rating, **({"before": before} if before is not None else {}))
            return Result(ticket.id, ticket.tid, message_id=message.id)

    async def give_feedback(self, actor: Actor, tid: str, rating: int, comment: str) -> Result:
        """The client's answer to the feedback request (seed: Feedback Requests): a score from 1 to 10 and
        a comment, once."""
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 10:
            raise Invalid("a score is a number from 1 to 10")
        _fits(comment, CLIENT_COMMENT_MAX, "the comment")
        async with self._unit():
            ticket = await self._client_ticket(actor, tid)
            if ticket.client_email.lower() not in clientlinks.spellings(actor.email):
                raise Denied(f"the feedback request was sent to {ticket.client_email}: only they answer it")
            stamp = self.clock.stamp()
            if not await feedback.answer(self.db, ticket.id, rating, comment.strip(), stamp):
                raise Invalid("there is no feedback request on this ticket, or it was answered already")
            await tickets.log_event(self.db, ticket.id, "feedback_given", actor.label, stamp, rating=rating)
            return Result(ticket.id, ticket.tid)

    async def close_idle(self, ticket_ids: Sequence[int], statuses: Sequence[str], cutoff: str,
                         hours: int) -> list[int]:
        """The auto-close job's action, as the system: close those of ``ticket_ids`` that are still in
        ``statuses`` with nothing new for the client since ``cutoff`` (checked again here, under the lock,
        so that a run overlapping another, or a reply that came meanwhile, changes nothing twice). Each is
        logged, and its client gets the ``auto_closed`` mail. The ids closed."""
        actor = Actor.system()

        async def work() -> list[int]:
            stamp = self.clock.stamp()
            closed = await tickets.close_idle(self.db, ticket_ids, statuses, cutoff, stamp)
            await tickets.log_events(self.db, [(ticket_id, EventKind.AUTO_CLOSED.value, actor.label,
                                                {"status": [before, tickets.CLOSED], "idle_hours": hours})
                                               for ticket_id, before in closed], stamp)
            await self._follow([Event(EventKind.AUTO_CLOSED, ticket_id, actor,
                                      changes={"status": (before, tickets.CLOSED)}) for ticket_id, before in closed])
            return [ticket_id for ticket_id, _ in closed]

        return await self._as_unit(work)

    async def request_feedback(self, ticket_ids: Sequence[int], department_ids: Sequence[int], since: str,
                               cutoff: str) -> list[int]:
        """The feedback job's action, as the system: those of ``ticket_ids`` still closed since ``cutoff``
        (and after ``since``) and never asked get a feedback token and their client the
        ``feedback_request`` mail, with a link that carries it; logged. One request per ticket, ever, even
        when two runs overlap (the token's insert decides). The ids asked."""
        actor = Actor.system()

        async def work() -> list[int]:
            stamp = self.clock.stamp()
            still = await feedback.still_due(self.db, ticket_ids, department_ids, since, cutoff)
            tokens = {ticket_id: secrets.token_urlsafe(24) for ticket_id in still}
            due = await feedback.request(self.db, tokens, stamp)
            await tickets.log_events(self.db, [(t, "feedback_requested", actor.label, {}) for t in due], stamp)
            await self._follow([Event(EventKind.FEEDBACK_REQUEST, t, actor,
                                      changes={"feedback_token": (None, tokens[t])}) for t in due])
            return due

        return await self._as_unit(work)

    async def escalate(self, rule: Escalation, conditions: escalations.Conditions, cutoff: str,
                       ticket_ids: Sequence[int]) -> list[int]:
        """The escalation job's action, as the system: take ``rule``'s actions on those of ``ticket_ids`` it
        is still due on (checked again here, under the lock), log each firing and send the ``escalated``
        mail (to the watchers, the assigned and flagged admins, the department and ``notify``). An action
        that cannot be taken (a username that is no staff member of the department) is logged on the
        ticket as ``escalation_failed``; the rule counts as fired either way. The ids it fired on."""
        actor = Actor(kind="system", username=f"escalation:{rule.name}")

        async def work() -> list[int]:
            events: list[Event] = []
            stamp = self.clock.stamp()
            still = await tickets.get_many(self.db, await escalations.still_due(self.db, conditions, cutoff,
                                                                                ticket_ids))
            # Ours to fire on: what no overlapping run fired on at the ticket's present change count.
            due = await escalations.claim(self.db, rule.name, [(t.id, t.change_seq) for t in still.values()], stamp)
            for ticket in (still[t] for t in due):
                try:
                    async with self.db.savepoint("escalation"):
                        events += await self._escalate_one(rule, actor, ticket, stamp)
                except (Invalid, NotFound, Denied) as exc:
                    await tickets.log_event(self.db, ticket.id, "escalation_failed", actor.label, stamp,
                                            rule=rule.name, error=str(exc))
            await self._follow(events)
            return due

        return await self._as_unit(work)

    async def _escalate_one(self, rule: Escalation, actor: Actor, ticket: Ticket, stamp: str) -> list[Event]:
        options = Options(department=rule.department or None, priority=rule.priority or None,
                          status=(rule.status or None) if not rule.reply else None,
                          assign=rule.assign or None, flag=rule.flag or None)
        events: list[Event] = []
        changed = ticket
        if options != Options():
            events = await apply_options(self, actor, ticket, options, stamp)
            if events:
                changed = await tickets.get(self.db, ticket.id) or ticket
        if rule.reply:
            text = bodies.merge(rule.reply, changed.client_name, changed.client_email)
            msg = self._staff_message(actor, text, changed.subject, (), ticket_id=changed.id)
            _, more = await core.add_reply(self.db, changed, msg, actor, stamp, status=rule.status or None,
                                           escalation=rule.name)
            events += more
        if rule.note:
            note = core.NewMessage(kind="note", author_email="", author_name=actor.label, badge="Operator",
                                   body=rule.note, body_html=bodies.to_html(rule.note))
            _, more = await core.add_note(self.db, changed, note, actor, [], stamp, escalation=rule.name)
            events += more
        named = await staff.with_access(self.db, list(rule.notify), changed.department_id) if rule.notify else []
        await tickets.log_event(self.db, ticket.id, "escalated", actor.label, stamp, rule=rule.name)
        events.append(Event(EventKind.ESCALATED, ticket.id, actor, mentioned=tuple(m.id for m in named),
                            changes={"rule": (None, rule.name)}))
        return events

    async def preview(self, actor: Actor, ticket: Ticket, body: str) -> str:
        """A reply's HTML as the client would get it (merge fields filled in, the signature added), unsent."""
        text = bodies.merge(body, ticket.client_name, ticket.client_email)
        return bodies.to_html(bodies.with_signature(text, await self._signature(actor)))

    # -- helpers -------------------------------------------------------------------------------------------

    async def _signature(self, actor: Actor) -> str:
        if actor.staff_id is None:
            return ""
        member = await staff.by_id(self.db, actor.staff_id)
        return member.signature if member is not None else ""

    def _staff_message(self, actor: Actor, text: str, subject: str, files: Sequence[core.StoredFile],
                       ticket_id: int | None = None) -> core.NewMessage:
        # Our mail to the client carries this Message-ID, so the client's answer threads to it. (A new
        # ticket's first message gets its id from core.open_ticket, once the ticket's id is known.)
        mid = new_message_id(ticket_id, self.settings.mail.domain) if ticket_id is not None else ""
        return core.NewMessage(kind="staff_reply", author_email=actor.email, author_name=display_name(actor),
                               badge="Operator", body=text, body_html=bodies.to_html(text), subject=subject,
                               message_id=mid, direction="out", staff_id=actor.staff_id, files=files)


def _fits(text: str, limit: int, what: str) -> None:
    if len(text) > limit:
        raise Invalid(f"{what} is {len(text):,} characters long; at most {limit:,} are taken")


def display_name(actor: Actor) -> str:
    """What a client sees: the staff member's name, never the login name."""
    return actor.name.strip() or "Support"


def parse_priority(value: str) -> str:
    from maild.config import PRIORITIES

    for p in PRIORITIES:
        if p.lower() == value.strip().lower():
            return p
    raise Invalid(f"priority {value!r}: expected one of {', '.join(PRIORITIES)}")
