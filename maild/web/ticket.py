"""The ticket page (``/tickets/TID``): the thread with badges, staff names and private notes, the blocked
replies notice, attachments (downloads, thumbnails, ``cid:`` images in place), mail HTML made inert, the log;
forms to reply (markdown with a preview, predefined replies, merge fields, attachments, the status and page
after the reply), to add a note (``@username`` mentions), to change the options and to watch. Every change
goes through the desk, so it notifies exactly as one made by mail or from the CLI."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from markupsafe import Markup
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from maild.config import PRIORITIES
from maild.desk.core import StoredFile
from maild.desk.desk import WATCHED_FIELDS
from maild.desk.errors import Collision, Denied, DeskError, NotFound
from maild.desk.options import Options
from maild.jobs import targets
from maild.store import clientlinks, feedback, importlog, messages, people, predefined, ratings, staff, tickets
from maild.store.blobs import BlobSpec
from maild.store.tickets import Ticket
from maild.web import files as webfiles
from maild.web import mailview
from maild.web.auth import Auth, Section, Viewer
from maild.web.files import INLINE_TYPES

if TYPE_CHECKING:
    from maild.app import App

log = logging.getLogger("ticketd.web")
DONE = {"edited": "Message changed.", "message-deleted": "Message deleted.",
        "split": "The messages are on this new ticket now.", "merged": "Tickets merged.",
        "opened": "Ticket opened.", "imported": "Mail imported.",
        "replied": "Reply sent.", "noted": "Note added.",
        "saved": "Options saved.", "revoked": "Client links revoked.",
        "watching": "You are watching this ticket.", "unwatched": "You no longer watch this ticket."}
ROW_ID = re.compile(r"[0-9]{1,18}")        # a number in a query parameter (ASCII digits only: int() takes them)
# A reply or an options change is refused when any of the seed's attributes changed since the page was drawn
# (collision detection: department, subject, priority, client, assignee, flag, CC recipients, last reply time,
# status); the page then says what changed and by whom, and sending again confirms.
SEEN = WATCHED_FIELDS
AFTER_REPLY = {"ticket": "Stay on the ticket", "list": "Return to the ticket list"}
REMOTE_IMAGES_CSP = ("default-src 'self'; img-src 'self' data: https: http:; object-src 'none'; base-uri 'none';"
                     " frame-ancestors 'none'; form-action 'self'")


class TicketPage(Section):
    def __init__(self, app: App, auth: Auth) -> None:
        super().__init__(app, auth)
        self._blobs = BlobSpec.from_settings(app.settings)

    async def _ticket(self, viewer: Viewer, tid: str) -> Ticket | None:
        """The ticket the viewer may see (followed past merges), else None: another department's ticket is
        answered exactly like one that does not exist."""
        row = await tickets.by_tid(self.db, tid.strip().lstrip("#"))
        if row is None:
            return None
        row = await tickets.resolve_merged(self.db, row)
        return row if viewer.sees(row.department_id) else None

    # -- the page ------------------------------------------------------------------------------------------

    async def show(self, request: Request, viewer: Viewer) -> Response:
        ticket = await self._ticket(viewer, request.path_params["tid"])
        if ticket is None:
            return self.auth.not_found(viewer, "This ticket")
        if ticket.tid != request.path_params["tid"]:   # merged: its own address is the ticket it went into
            return RedirectResponse(f"/tickets/{ticket.tid}", status_code=303)
        draft = ""
        insert, quote = request.query_params.get("insert", ""), request.query_params.get("quote", "")
        if ROW_ID.fullmatch(insert):
            found = await predefined.get(self.db, int(insert))
            draft = found["body"] if found is not None else ""
        elif ROW_ID.fullmatch(quote):   # a message of this ticket, by its number in the thread
            thread = await messages.for_ticket(self.db, ticket.id)
            quoted = thread[int(quote) - 1] if 0 < int(quote) <= len(thread) else None
            if quoted is not None and quoted.kind != "note":   # a private note never goes into a client's mail
                draft = f"{quoted.author_name or quoted.author_email} wrote:\n\n" + "\n".join(
                    f"> {line}" if line else ">" for line in quoted.body.strip().splitlines()) + "\n\n"
        editing = request.query_params.get("edit", "")
        return await self._render(request, viewer, ticket, draft=draft,
                                  editing=int(editing) if ROW_ID.fullmatch(editing) else None)

    async def _render(self, request: Request, viewer: Viewer, ticket: Ticket, status: int = 200, error: str = "",
                      draft: str = "", note: str = "", preview: Markup | None = None, reply_status: str = "",
                      after: str = "ticket", done: str = "", warning: str = "",
                      reply_seen: dict[str, str] | None = None, editing: int | None = None,
                      conflict: dict[str, Any] | None = None, chosen: dict[str, str] | None = None) -> Response:
        db = self.db
        done = done or request.query_params.get("done", "")
        remote = request.query_params.get("images") == "1"
        files = await messages.attachments_for_ticket(db, ticket.id)
        base = f"/tickets/{ticket.tid}/files/"
        cids = {f.content_id.strip("<>"): f"{base}{f.id}?inline=1" for f in files
                if f.content_id and f.content_type in INLINE_TYPES}
        by_message: dict[int, list[Any]] = {}
        for f in files:
            by_message.setdefault(f.message_id, []).append(f)
        thread, blocked_images = [], 0
        for number, m in enumerate(await messages.for_ticket(db, ticket.id), start=1):
            shown = mailview.display(m.body_html, cids, remote) if m.body_html else None
            blocked_images += shown.remote_blocked if shown else 0
            thread.append({"number": number, "m": m, "html": shown.html if shown else None,
                           "files": [f for f in by_message.get(m.id, []) if not (f.inline and f.content_id
                                                                                 and f.content_type in INLINE_TYPES
                                                                                 and shown is not None)]})
        if self.app.settings.web.thread_order == "newest":
            thread.reverse()
        events = [{"at": e["at"], "actor": e["actor"], "event": e["event"], "detail": json.loads(e["detail"])}
                  for e in await tickets.events(db, ticket.id)]
        pq = request.query_params.get("pq", "")
        watchers = await staff.watchers(db, ticket.id)
        values = await self._seen_values(ticket)
        response = self.auth.page(
            "ticket.html", status, viewer=viewer, t=ticket, thread=thread, events=events, error=error,
            done=DONE.get(done, ""), warning=warning,
            cc=await people.cc_list(db, ticket.id), watchers=watchers,
            tags=[t for t in values["tags"].split(", ") if t],
            blocked=await importlog.blocked_for_ticket(db, ticket.id), inline_types=INLINE_TYPES,
            workers=await staff.working_in(db, [ticket.department_id]), priorities=PRIORITIES,
            statuses=tickets.STATUSES, departments=[n for n, i in self.app.departments.items() if viewer.sees(i)
                                                    or i == ticket.department_id],
            targets=targets.of(ticket, self.app.settings, self.app.clock.now()),
            replies=await predefined.listing(db, pq, 50), pq=pq, draft=draft, note=note, preview=preview,
            reply_status=reply_status or tickets.ANSWERED, after=after, after_choices=AFTER_REPLY,
            blocked_images=blocked_images, remote=remote, client=values["client_name"],
            seen=values, reply_seen={**values, **(reply_seen or {})}, rating=await feedback.for_ticket(db, ticket.id),
            watching=any(w.id == viewer.member.id for w in watchers), editing=editing, conflict=conflict,
            chosen=chosen or {}, seen_at=self.app.clock.stamp(), reply_fields=SEEN,
            rated=await ratings.for_ticket(db, ticket.id),
            links=await clientlinks.for_ticket(db, ticket.id, self.app.clock.stamp()))
        if remote:
            response.headers["content-security-policy"] = REMOTE_IMAGES_CSP
        return response

    # -- a new ticket (seed: Open New Ticket) ---------------------------------------------------------------

    async def new_form(self, request: Request, viewer: Viewer, status: int = 200, error: str = "",
                       given: dict[str, str] | None = None) -> Response:
        departments = [n for n, i in self.app.departments.items() if viewer.sees(i)]
        return self.auth.page("new_ticket.html", status, viewer=viewer, departments=departments, error=error,
                              priorities=PRIORITIES, default_priority=self.app.settings.mail.default_priority,
                              given=given or {})

    async def open(self, request: Request, viewer: Viewer) -> Response:
        """A ticket opened on behalf of a client (or any name and address): the first message is the staff
        member's, and the client gets it with the new-ticket mail unless "notify" is off."""
        form = request.state.form
        given = {k: str(form.get(k) or "") for k in ("department", "email", "name", "subject", "priority", "body",
                                                     "notify")}
        try:
            files = await self._files(form)
            result = await self.app.desk.open_ticket(
                viewer.actor, department=given["department"], email=given["email"], name=given["name"],
                subject=given["subject"], body=given["body"], files=files, priority=given["priority"] or None,
                notify=form.get("notify") == "1")
        except DeskError as exc:
            status = 404 if isinstance(exc, NotFound) else (403 if isinstance(exc, Denied) else 422)
            return await self.new_form(request, viewer, status, str(exc), given)
        log.info("open", extra={"kv": {"by": viewer.member.username, "ticket": result.tid}})
        return RedirectResponse(f"/tickets/{result.tid}?done=opened", status_code=303)

    # -- files ---------------------------------------------------------------------------------------------

    async def file(self, request: Request, viewer: Viewer) -> Response:
        ticket = await self._ticket(viewer, request.path_params["tid"])
        found = await messages.attachment(self.db, int(request.path_params["file_id"]))
        if ticket is None or found is None or found[1] != ticket.id:
            return self.auth.not_found(viewer, "This file")
        try:
            return await webfiles.download(self._blobs, found[0], request.query_params.get("inline") == "1")
        except webfiles.FileGone:
            return self.auth.page("error.html", 410, viewer=viewer, title="File gone",
                                  message=f"The bytes of {found[0].filename} are no longer stored.")

    # -- actions -------------------------------------------------------------------------------------------

    async def _files(self, form: FormData) -> list[StoredFile]:
        return await webfiles.uploaded(form, self.app.settings.attachments, self._blobs)

    async def _act(self, request: Request, viewer: Viewer) -> Ticket | Response:
        """The ticket an action is on, or the 404 to answer."""
        ticket = await self._ticket(viewer, request.path_params["tid"])
        return ticket if ticket is not None else self.auth.not_found(viewer, "This ticket")

    async def _refused(self, request: Request, viewer: Viewer, ticket: Ticket, exc: DeskError, **kept: Any
                       ) -> Response:
        """A refused action: another department's ticket is a 404 like everywhere; otherwise the page again,
        with the reason and what the staff member typed."""
        if isinstance(exc, Denied):
            return self.auth.not_found(viewer, "This ticket")
        fresh = await tickets.get(self.db, ticket.id) or ticket
        if isinstance(exc, Collision):
            # Drawn again as the ticket is now, with what changed and by whom, and what the staff member typed
            # or chose kept in the form: sending it again is the confirmation, made against what they saw now.
            kept.pop("reply_seen", None)
            since = str(request.state.form.get("seen_at") or "")
            by = sorted({e["actor"] for e in await tickets.events(self.db, ticket.id) if since and e["at"] > since
                         and e["actor"] != viewer.actor.label})
            conflict = {"changes": [(k.replace("_", " "), a, b) for k, (a, b) in exc.changes.items()], "by": by}
            return await self._render(request, viewer, fresh, 409, conflict=conflict, **kept)
        status = 404 if isinstance(exc, NotFound) else 422
        return await self._render(request, viewer, fresh, status, error=str(exc), **kept)

    @staticmethod
    def _seen(form: FormData) -> dict[str, str] | None:
        """What the staff member saw when the reply form was drawn (collision detection: the desk compares)."""
        seen = {k: str(form.get(f"seen_{k}")) for k in SEEN if form.get(f"seen_{k}") is not None}
        return seen or None

    async def reply(self, request: Request, viewer: Viewer) -> Response:
        ticket = await self._act(request, viewer)
        if not isinstance(ticket, Ticket):
            return ticket
        form = request.state.form
        body = str(form.get("body") or "")
        status = str(form.get("status") or tickets.ANSWERED)
        after = str(form.get("after") or "ticket")
        # A preview, or a refusal, draws the page again: the reply keeps the baseline it was written against.
        kept: dict[str, Any] = {"draft": body, "reply_status": status, "after": after, "reply_seen": self._seen(form)}
        if form.get("action") == "preview":
            html = await self.app.desk.preview(viewer.actor, ticket, body)
            return await self._render(request, viewer, ticket, preview=Markup(html), **kept)
        try:
            files = await self._files(form)
            result = await self.app.desk.reply(viewer.actor, ticket.tid, body, files, status=status,
                                               expected=self._seen(form))
        except DeskError as exc:
            return await self._refused(request, viewer, ticket, exc, **kept)
        log.info("reply", extra={"kv": {"by": viewer.member.username, "ticket": result.tid,
                                        "message": result.message_id, "files": len(files)}})
        if after == "list":
            return RedirectResponse(f"/tickets?done=replied-{result.tid}", status_code=303)
        return RedirectResponse(f"/tickets/{result.tid}?done=replied#thread", status_code=303)

    async def note(self, request: Request, viewer: Viewer) -> Response:
        ticket = await self._act(request, viewer)
        if not isinstance(ticket, Ticket):
            return ticket
        form = request.state.form
        body = str(form.get("body") or "")
        try:
            files = await self._files(form)
            result = await self.app.desk.note(viewer.actor, ticket.tid, body, files=files)
        except DeskError as exc:
            return await self._refused(request, viewer, ticket, exc, note=body)
        if result.notes:   # saved, with something to say (a mention that reached nobody): shown at once
            fresh = await tickets.get(self.db, result.ticket_id) or ticket
            return await self._render(request, viewer, fresh, done="noted", warning="; ".join(result.notes))
        return RedirectResponse(f"/tickets/{result.tid}?done=noted#thread", status_code=303)

    async def options(self, request: Request, viewer: Viewer) -> Response:
        """Only what the staff member changed on the form is changed (a field they left alone keeps what
        someone else may have set meanwhile); if anything collision detection watches changed since the page
        was drawn, nothing is applied and the page says what changed (sending again confirms)."""
        ticket = await self._act(request, viewer)
        if not isinstance(ticket, Ticket):
            return ticket
        form = request.state.form
        now = await self._seen_values(ticket)
        seen = {k: str(form.get(f"seen_{k}")) if form.get(f"seen_{k}") is not None else v for k, v in now.items()}

        def changed(field: str, key: str | None = None) -> str | None:
            """The form's value of ``field`` when the staff member changed it, else None."""
            value = form.get(field)
            if value is None:
                return None
            text = str(value).strip()
            return text if text != seen[key or field].strip() else None

        subject, department = changed("subject"), changed("department")
        status, priority = changed("status"), changed("priority")
        assign, flag = changed("assign", "assigned"), changed("flag", "flagged")
        client, service = changed("client", "client_name"), changed("service")
        shown_tags = {tickets.clean_tag(t) for t in _words(seen["tags"], ",")} - {""}
        tags_given = {tickets.clean_tag(t) for t in _words(str(form.get("tags") or ""), ",\n")} - {""}
        if "tags" not in form:
            tags_given = shown_tags
        cc_now = {r["address"]: r["state"] for r in await people.cc_list(self.db, ticket.id)}
        confirm = [str(a) for a in form.getlist("cc_confirm") if cc_now.get(str(a)) == "pending"]
        opts = Options(
            subject=subject, department=department, status=status, priority=priority,
            assign=assign or None, unassign=assign == "", flag=flag or None, unflag=flag == "",
            client=client, service=service, cc_add=[*_words(str(form.get("cc_add") or ""), ",; \n"), *confirm],
            cc_remove=[str(a) for a in form.getlist("cc_remove")],
            tags_add=sorted(tags_given - shown_tags), tags_remove=sorted(shown_tags - tags_given))
        expected = {k: seen[k] for k in SEEN}
        try:
            result = await self.app.desk.set_options(viewer.actor, ticket.tid, opts, expected=expected or None)
        except DeskError as exc:   # the page again, with the choices made on the form kept
            chosen = {k: v for k, v in {"subject": subject, "department": department, "status": status,
                                        "priority": priority, "assign": assign, "flag": flag, "client": client,
                                        "service": service}.items() if v is not None}
            if "tags" in form:   # what they added and removed, on the tags as they are now
                current = {t for t in _words(now["tags"], ",")}
                chosen["tags"] = ", ".join(sorted((current | set(opts.tags_add)) - set(opts.tags_remove)))
            return await self._refused(request, viewer, ticket, exc, chosen=chosen)
        if not viewer.sees((await tickets.get(self.db, result.ticket_id) or ticket).department_id):
            return RedirectResponse(f"/tickets?done=moved-{result.tid}", status_code=303)
        return RedirectResponse(f"/tickets/{result.tid}?done=saved#options", status_code=303)

    async def _seen_values(self, ticket: Ticket) -> dict[str, str]:
        """What the page shows of the ticket, as text: the desk's collision fields, and the tags, related
        service and client account's name (the options form sends them back as ``seen_*``)."""
        shown = await self.app.desk.snapshot(ticket)
        shown["tags"] = ", ".join((await tickets.tags_of(self.db, [ticket.id])).get(ticket.id, []))
        shown["service"] = ticket.related_service
        shown["client_name"] = await people.client_name(self.db, ticket.client_id)
        return shown

    async def _do(self, request: Request, viewer: Viewer,
                  work: Callable[[Ticket, FormData], Awaitable[str]]) -> Response:
        """An action on the ticket of the URL: ``work`` (through the desk) returns where to go next; a refusal
        draws the page again with the reason."""
        ticket = await self._act(request, viewer)
        if not isinstance(ticket, Ticket):
            return ticket
        try:
            return RedirectResponse(await work(ticket, request.state.form), status_code=303)
        except DeskError as exc:
            return await self._refused(request, viewer, ticket, exc)

    async def merge(self, request: Request, viewer: Viewer) -> Response:
        """Merge other tickets with this one (seed: the Options tab); the oldest of them all lives on."""
        async def work(ticket: Ticket, form: FormData) -> str:
            others = _words(str(form.get("others") or "").replace("#", " "), ", \n")
            try:
                result = await self.app.desk.merge(viewer.actor, [ticket.tid, *others])
            except (Denied, NotFound):
                raise NotFound(f"no ticket among {', '.join('#' + o for o in others)} that you can merge") from None
            return f"/tickets/{result.tid}?done=merged#thread"

        return await self._do(request, viewer, work)

    async def split(self, request: Request, viewer: Viewer) -> Response:
        """Split the selected messages off into a new ticket (seed: Split Selected Replies)."""
        async def work(ticket: Ticket, form: FormData) -> str:
            result = await self.app.desk.split(
                viewer.actor, ticket.tid, [int(str(v)) for v in form.getlist("message") if ROW_ID.fullmatch(str(v))],
                department=str(form.get("department") or "") or None, priority=str(form.get("priority") or "") or None,
                subject=str(form.get("subject") or "") or None, notify=form.get("notify") == "1")
            return f"/tickets/{result.tid}?done=split#thread"

        return await self._do(request, viewer, work)

    async def edit_message(self, request: Request, viewer: Viewer) -> Response:
        """Save a message's new text (seed: Edit a Reply)."""
        async def work(ticket: Ticket, form: FormData) -> str:
            await self.app.desk.edit_message(viewer.actor, ticket.tid, int(request.path_params["message_id"]),
                                             str(form.get("body") or ""))
            return f"/tickets/{ticket.tid}?done=edited#thread"

        return await self._do(request, viewer, work)

    async def delete_message(self, request: Request, viewer: Viewer) -> Response:
        """Delete a message after a confirmation (seed: Delete a Reply); the first one takes the ticket."""
        message_id = int(request.path_params["message_id"])

        async def work(ticket: Ticket, form: FormData) -> str:
            result = await self.app.desk.delete_message(viewer.actor, ticket.tid, message_id)
            if result.notes:   # the ticket went with its first message
                return f"/tickets?done=deleted-{ticket.tid}"
            return f"/tickets/{ticket.tid}?done=message-deleted#thread"

        if request.state.form.get("confirm") == "1":
            return await self._do(request, viewer, work)
        ticket = await self._act(request, viewer)
        if not isinstance(ticket, Ticket):
            return ticket
        thread = await messages.for_ticket(self.db, ticket.id)
        whole = bool(thread) and thread[0].id == message_id
        return self.auth.page(
            "confirm.html", viewer=viewer, title="Delete the whole ticket?" if whole else "Delete this message?",
            message=(f"This is the first message of #{ticket.tid}: deleting it deletes the ticket, with all its"
                     " messages and attachments." if whole else "The message and its attachments are deleted;"
                     " the ticket's log keeps its text."),
            action=request.url.path, fields=[], button="Delete", back=f"/tickets/{ticket.tid}")

    async def revoke_links(self, request: Request, viewer: Viewer) -> Response:
        """Revoke the client links of one recipient (or all) of this ticket."""
        async def work(ticket: Ticket, form: FormData) -> str:
            await self.app.desk.revoke_links(viewer.actor, ticket.tid, str(form.get("recipient") or "") or None)
            return f"/tickets/{ticket.tid}?done=revoked#links"

        return await self._do(request, viewer, work)

    async def watch(self, request: Request, viewer: Viewer) -> Response:
        async def work(ticket: Ticket, form: FormData) -> str:
            on = form.get("on") == "1"
            await self.app.desk.watch(viewer.actor, ticket.tid, on=on)
            return f"/tickets/{ticket.tid}?done={'watching' if on else 'unwatched'}"

        return await self._do(request, viewer, work)

def _words(text: str, separators: str) -> list[str]:
    for sep in separators[1:]:
        text = text.replace(sep, separators[0])
    return [w.strip() for w in text.split(separators[0]) if w.strip()]
