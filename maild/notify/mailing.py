"""One event's mail for one ticket: the template context, the threading headers and the outbox rows.

Client mail is rendered once per client recipient: each copy carries that recipient's own link to the
ticket's page (a new random key, kept hashed in ``client_links`` with an expiry, revocable by staff), and
otherwise the same message (same Message-ID, headers and attachments). Staff mail is rendered per staff
member, because its Reply-To carries that member's own token (staff by email). Staff notifications never
carry attachments (seed rule); client mail carries a reply's attachments up to ``outbound.attach_max`` and
names the rest.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from maild.addressbook import loop_marker, subject_token
from maild.desk.events import Event, EventKind
from maild.notify import headers, links
from maild.notify.compose import Attachment, Outgoing, Part, ascii_address, body, compose
from maild.notify.render import Rendered
from maild.notify.tokens import with_tag
from maild.store import clientlinks, messages, outbox
from maild.store.db import StorageError
from maild.store.tickets import Ticket

if TYPE_CHECKING:
    from maild.notify.follow import Notifier
    from maild.notify.lookups import Lookups

# References: the root and the newest ids within this budget, so that the whole header block of a mail on a
# 200-message ticket stays under 4 KB (some mail clients and filters choke on more).
REFERENCES_BYTES = 2000


@dataclass
class Batch:
    """What expanding events writes, sent to the database together: outbox rows, the Message-IDs of our new
    mails per ticket (so replies to them thread), and ticket-log rows (ticket id, event, details: a mail
    skipped, a notification that failed)."""

    mails: list[outbox.OutboxMail] = field(default_factory=list)
    mail_ids: dict[int, list[str]] = field(default_factory=dict)
    logs: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    links: list[clientlinks.NewLink] = field(default_factory=list)   # the client links in the mail

    def automatic_to(self, recipient: str) -> int:
        return sum(1 for m in self.mails if m.automatic and m.recipient == recipient)


@dataclass(frozen=True)
class Recipient:
    email: str
    name: str
    audience: str                  # client | staff
    staff_id: int | None = None
    role: str = ""                 # for client mail: requester | owner | user | contact | cc


class Mailing:
    def __init__(self, notifier: Notifier, event: Event, ticket: Ticket, batch: Batch,
                 found: Lookups) -> None:
        self.n, self.event, self.ticket, self.batch, self.found = notifier, event, ticket, batch, found
        self._staff_out: dict[str, tuple[Rendered, Part | None]] = {}
        settings = notifier.settings
        self.domain = settings.mail.domain
        dept = settings.department(ticket.department) or settings.departments[0]
        self.dept_name, self.sender = dept.name, dept.addresses[0]
        self._base: dict[str, Any] | None = None
        self._message: messages.Message | None = None
        self._files: list[messages.Attachment] = []

    # -- shared ----------------------------------------------------------------------------------------------

    def _context(self) -> dict[str, Any]:
        if self._base is not None:
            return self._base
        t, ev = self.ticket, self.event
        if ev.message_id is not None:
            self._message = self.found.messages.get(ev.message_id)
            self._files = self.found.files.get(ev.message_id, [])
        m = self._message
        self._base = {
            "event": ev.kind.value,
            "ticket": {"tid": t.tid, "subject": headers.clean_subject(t.subject, self.n.token_re),
                       "status": t.status, "priority": t.priority, "department": t.department,
                       "client_name": t.client_name, "client_email": t.client_email,
                       "assigned": t.assigned_name or t.assigned_username or "",
                       "flagged": t.flagged_name or t.flagged_username or ""},
            "actor": ev.actor.name or ev.actor.username or ("the system" if ev.actor.kind == "system" else ""),
            "changes": [{"field": k, "before": _show(a), "after": _show(b)} for k, (a, b) in ev.changes.items()],
            "message": None if m is None else {
                "body": m.body, "html": Markup(m.body_html) if m.body_html else None,
                "author": m.author_name or m.author_email, "author_email": m.author_email,
                "attachments": [{"filename": f.filename, "size": f.size} for f in self._files]},
            "company": self.dept_name,
        }
        return self._base

    def _threading(self, own_id: str) -> dict[str, Any]:
        chain, last_client = self.found.threads.get(self.ticket.id, ([], ""))
        chain = [mid for mid in chain if mid != own_id]
        root = self.ticket.root_message_id or (chain[0] if chain else "")
        return {"in_reply_to": (last_client if last_client != own_id else "") or (chain[-1] if chain else ""),
                "references": headers.references(chain, root, REFERENCES_BYTES) if (chain or root) else []}

    def _new_id(self) -> str:
        message_id = headers.new_message_id(self.ticket.id, self.domain)
        self.batch.mail_ids.setdefault(self.ticket.id, []).append(message_id)
        return message_id

    @functools.cached_property
    def _thread_subject(self) -> str:
        token = subject_token(self.n.settings, self.ticket.tid)
        return headers.thread_subject(self.ticket.subject, token, self.n.token_re,
                                      reply=self.event.kind is not EventKind.TICKET_OPENED)

    def _queue(self, audience: str, rcpt: Recipient, message_id: str, subject: str, raw: bytes,
               automatic: bool, event: str | None = None) -> None:
        self.batch.mails.append(outbox.OutboxMail(
            ticket_id=self.ticket.id, event=event or self.event.kind.value, audience=audience, automatic=automatic,
            sender=self.sender, recipient=_ascii(rcpt.email), message_id=message_id, subject=subject, raw=raw))

    # -- client mail -------------------------------------------------------------------------------------------

    def to_clients(self, rcpts: list[Recipient], automatic: bool) -> int:
        t, ev = self.ticket, self.event
        self._context()
        personal = self._message is not None and self._message.kind == "staff_reply"
        if personal and self._message is not None:
            message_id = self._message.message_id   # the reply's own id: the client's answer threads to it
        else:
            message_id = self._new_id()
        attachments, linked = self._attachments() if personal else ([], [])
        # Every copy is addressed to the ticket's requester (CC recipients see who the ticket is for, never the
        # account's owner or users, who get theirs without being named), greeted by the requester's name.
        requester = Recipient(t.client_email, t.client_name, "client", role="requester")
        feedback = ev.kind is EventKind.FEEDBACK_REQUEST and bool(ev.changes.get("feedback_token", (None, None))[1])
        thread = self._threading(message_id)
        index = headers.extend_thread_index(t.thread_index, self.n.clock.now()) if t.thread_index else None
        from_name = (ev.actor.name if personal and ev.actor.name else "") or self._from_name()
        now = self.n.clock.now()   # one Date and one expiry for every copy
        for rcpt in rcpts:
            key = links.new_key()
            self.batch.links.append(clientlinks.NewLink(t.id, rcpt.email, links.key_hash(key),
                                                        links.expiry(self.n.settings, now)))
            ctx = dict(self._context())
            ctx.update(thread_subject=self._thread_subject,
                       link=links.client_link(self.n.settings, key, "feedback" if feedback else ""),
                       recipient={"name": requester.name, "email": requester.email},
                       linked_attachments=linked)
            out = self.n.renderer.render("client", ev.kind.value, ctx)
            raw = compose(Outgoing(
                from_name=from_name, from_addr=self.sender,
                # A requester whose address cannot be written in ASCII (it is skipped) leaves To an empty group.
                to=[(requester.name, a) for a in [ascii_address(requester.email)] if a],
                cc=[(r.name, _ascii(r.email)) for r in rcpts if r.role == "cc"],
                reply_to=with_tag(self.sender, self.n.signer.reply_tag(t.tid)),
                subject=out.subject, text=out.text, html=out.html, message_id=message_id, date=now,
                thread_index=index, thread_topic=ctx["ticket"]["subject"], automatic=automatic,
                auto_replied=automatic and ev.kind is EventKind.TICKET_OPENED and ev.actor.kind == "client",
                loop_marker=loop_marker(self.domain), attachments=attachments, **thread))
            self._queue("client", rcpt, message_id, out.subject, raw, automatic)
        return len(rcpts)

    def _attachments(self) -> tuple[list[Attachment], list[dict[str, Any]]]:
        budget = self.n.settings.outbound.attach_max
        carried: list[Attachment] = []
        linked: list[dict[str, Any]] = []
        for f in self._files:
            if f.size <= budget:
                try:
                    data = self.n.files.read(f.sha256)
                except (OSError, StorageError):   # gone, or its store is unreachable: linked instead
                    data = None
                if data is not None:
                    carried.append(Attachment(f.filename, f.content_type, data))
                    budget -= f.size
                    continue
            linked.append({"filename": f.filename, "size": f.size})
        return carried, linked

    def _from_name(self) -> str:
        return self.n.settings.outbound.from_name or self.dept_name

    # -- staff mail ------------------------------------------------------------------------------------------

    def to_staff(self, rcpt: Recipient, template: str | None = None, **extra: Any) -> int:
        """One staff member's mail about the event (or ``template``, e.g. command_error, with ``extra``). A
        template that does not name its recipient is rendered once for all of them; only the headers differ."""
        t = self.ticket
        name = template or self.event.kind.value
        message_id = self._new_id()
        cached = self._staff_out.get(name)
        if cached is None or self.n.renderer.personal("staff", name):
            ctx = dict(self._context())
            ctx.update(thread_subject=self._thread_subject, link=links.staff_link(self.n.settings, t.tid),
                       recipient={"name": rcpt.name, "email": rcpt.email}, linked_attachments=[], **extra)
            out = self.n.renderer.render("staff", name, ctx)
            cached = self._staff_out[name] = (out, None)
        out, prepared = cached
        mail = Outgoing(
            from_name=self._from_name(), from_addr=self.sender, to=[(rcpt.name, rcpt.email)],
            reply_to=with_tag(self.sender, self.n.signer.reply_tag(t.tid, rcpt.staff_id)),
            subject=out.subject, text=out.text, html=out.html, message_id=message_id, date=self.n.clock.now(),
            automatic=True, loop_marker=loop_marker(self.domain), **self._threading(message_id))
        if prepared is None:
            prepared = body(mail)
            self._staff_out[name] = (out, prepared)
        self._queue("staff", rcpt, message_id, out.subject, compose(mail, prepared), True, event=name)
        return 1


def _ascii(address: str) -> str:
    """The recipient's address with an IDNA domain (follow.py dropped those that cannot be made ASCII)."""
    return ascii_address(address) or address


def _show(value: Any) -> str:
    if value is None or value == "":
        return "(none)"
    return str(value)
