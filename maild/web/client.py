"""The client's pages, reached by the link in their mail (no password): ``/c/KEY`` starts a session for
that recipient and opens the ticket; ``/client/tickets`` lists the tickets they are one of the people of
(their account's, as owner or authorised user; those they opened or are copied on), ``/client/tickets/create``
opens one, and a ticket's page shows the thread without private notes, with staff display names and
downloadable attachments, and forms to reply (with a file), close, rate staff replies and answer the
feedback request. Every change goes through the desk as the recipient.

Every page says ``Referrer-Policy: no-referrer``, so neither the link nor a ticket's address leaks through a
clicked URL; the session cookie is HttpOnly and SameSite=Lax, and every form carries the session's CSRF
token. A revoked or expired link ends its sessions at once."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import wraps
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from maild.clock import iso
from maild.desk.desk import CLIENT_COMMENT_MAX, CLIENT_SUBJECT_MAX, CLIENT_TEXT_MAX
from maild.desk.errors import Denied, DeskError, NotFound
from maild.desk.events import Actor
from maild.notify import links
from maild.store import clientlinks, feedback, messages, ratings, senders, tickets
from maild.store.blobs import BlobSpec
from maild.store.clientlinks import ClientSession
from maild.store.tickets import Ticket
from maild.web import files as webfiles
from maild.web import mailview
from maild.web.auth import same, token_hash
from maild.web.render import Pages

if TYPE_CHECKING:
    from maild.app import App
    from maild.store.db import Database

log = logging.getLogger("ticketd.web")
CLIENT_COOKIE = "ticketd_client"
SESSION_HOURS = 12
LIST_MAX = 200   # tickets on the client's list (the latest replies first)
NO_REFERRER = {"referrer-policy": "no-referrer"}
# What the client reads for a status (seed: the client's badges).
SHOWN_STATUS = {"Customer-Reply": "Client Reply"}
DONE = {"replied": "Your reply was sent. We will answer as soon as we can.", "closed": "The ticket is closed.",
        "rated": "Thank you for rating our reply.", "feedback": "Thank you for your feedback.",
        "opened": "Your ticket is open. A confirmation is on its way by mail."}
LINK_GONE = ("This link is not valid any more: it has expired or was withdrawn. Our mail about your ticket"
             " still reaches you, and replying to it reaches us; each new mail brings a new link.")

ClientHandler = Callable[[Request, ClientSession], Awaitable[Response]]


class ClientArea:
    def __init__(self, app: App, pages: Pages) -> None:
        self.app, self.pages = app, pages
        self.secure = app.settings.web.public_url.startswith("https://")
        self._blobs = BlobSpec.from_settings(app.settings)

    @property
    def db(self) -> Database:
        assert self.app.db is not None
        return self.app.db

    def page(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("client", None)
        return self.pages.render(name, status, headers=NO_REFERRER, shown_status=SHOWN_STATUS, **context)

    def gone(self, client: ClientSession | None, title: str = "Not found",
             message: str = "This page does not exist, or is not one of your tickets.", status: int = 404
             ) -> HTMLResponse:
        return self.page("client_error.html", status, client=client, title=title, message=message)

    @staticmethod
    def actor(client: ClientSession) -> Actor:
        return Actor(kind="client", email=client.recipient)

    # -- the link and the session --------------------------------------------------------------------------

    async def link(self, request: Request) -> Response:
        """``/c/KEY`` (and ``/c/KEY/feedback``): a live link starts its recipient's session and opens the
        ticket it was sent about (or the one that ticket was merged into)."""
        now = self.app.clock.now()
        found = await clientlinks.live(self.db, links.key_hash(request.path_params["key"]), iso(now))
        ticket = await self._visible(found.recipient, found.ticket_id) if found is not None else None
        if found is None or ticket is None:
            log.info("client link refused", extra={"kv": {"reason": "unknown, expired or revoked" if found is None
                                                          else "not one of the ticket's people"}})
            return self.gone(None, "Link not valid", LINK_GONE)
        token = secrets.token_urlsafe(32)
        await clientlinks.start_session(self.db, found, token_hash(token), secrets.token_urlsafe(24), iso(now),
                                        iso(now + timedelta(hours=SESSION_HOURS)))
        log.info("client link used", extra={"kv": {"ticket": ticket.tid, "recipient": found.recipient}})
        page = "/feedback" if request.path_params.get("page") == "feedback" else ""
        response = RedirectResponse(f"/client/tickets/{ticket.tid}{page}", status_code=303, headers=NO_REFERRER)
        response.set_cookie(CLIENT_COOKIE, token, max_age=SESSION_HOURS * 3600, httponly=True, samesite="lax",
                            secure=self.secure, path="/")
        return response

    async def old_link(self, request: Request) -> Response:
        """``/t/...``: the per-ticket links of mail sent before client links were per recipient."""
        return self.gone(None, "Link not valid", "This link comes from an older mail and no longer opens the"
                         " ticket. The link in our next mail about it will; replying to the mail reaches us now.")

    async def current(self, request: Request) -> ClientSession | None:
        token = request.cookies.get(CLIENT_COOKIE)
        if not token:
            return None
        return await clientlinks.session(self.db, token_hash(token), self.app.clock.stamp())

    def signed_in(self, handler: ClientHandler) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` for a recipient with a live session; a POST's form must carry the session's CSRF
        token."""

        @wraps(handler)
        async def run(request: Request) -> Response:
            client = await self.current(request)
            if client is None:
                return self.gone(None, "Link needed", "Open the link in one of our mails about your ticket to see"
                                 " it here. A link stops working once it has expired or was withdrawn; each new"
                                 " mail brings a new one.", 401)
            if await senders.banned(self.db, [client.recipient]) is not None:
                return self.gone(client, "Not available", "This address may not use these pages.", 403)
            if request.method != "POST":
                return await handler(request, client)
            form = await request.form(max_files=5, max_fields=20)
            try:   # the upload's temporary file is closed however the handler ends
                request.state.form = form
                if not same(form.get("csrf"), client.csrf):
                    return self.gone(client, "Form expired", "The form was missing its security token or had an"
                                     " old one. Go back, reload the page and try again.", 403)
                return await handler(request, client)
            finally:
                await form.close()

        return run

    async def logout(self, request: Request, client: ClientSession) -> Response:
        await clientlinks.end_session(self.db, token_hash(request.cookies.get(CLIENT_COOKIE, "")))
        response = self.gone(None, "Signed out", "You have left your ticket pages. The link in our mail opens them"
                             " again.", 200)
        response.delete_cookie(CLIENT_COOKIE, path="/")
        return response

    async def _visible(self, recipient: str, ticket_id: int) -> Ticket | None:
        row = await tickets.get(self.db, ticket_id)
        if row is None:
            return None
        row = await tickets.resolve_merged(self.db, row)
        return row if await clientlinks.may_see(self.db, recipient, row.id) else None

    async def _ticket(self, client: ClientSession, tid: str) -> Ticket | None:
        """The ticket (followed past merges) if the session's recipient is one of its people, else None."""
        row = await tickets.by_tid(self.db, tid)
        return await self._visible(client.recipient, row.id) if row is not None else None

    # -- pages ---------------------------------------------------------------------------------------------

    async def listing(self, request: Request, client: ClientSession) -> Response:
        rows = await clientlinks.tickets_of(self.db, client.recipient, LIST_MAX + 1)
        return self.page("client_tickets.html", client=client, rows=rows[:LIST_MAX], more=len(rows) > LIST_MAX)

    async def new_form(self, request: Request, client: ClientSession, status: int = 200, error: str = "",
                       given: dict[str, str] | None = None) -> Response:
        return self.page("client_new.html", status, client=client, departments=list(self.app.departments),
                         error=error, given=given or {}, limits=self.app.settings.attachments,
                         subject_max=CLIENT_SUBJECT_MAX, text_max=CLIENT_TEXT_MAX)

    async def create(self, request: Request, client: ClientSession) -> Response:
        form = request.state.form
        given = {k: str(form.get(k) or "") for k in ("department", "subject", "body")}
        try:
            stored = await webfiles.uploaded(form, self.app.settings.attachments, self._blobs, "file")
            result = await self.app.desk.client_open(self.actor(client), department=given["department"],
                                                     subject=given["subject"], body=given["body"], files=stored)
        except DeskError as exc:
            return await self.new_form(request, client, _status(exc), str(exc), given)
        log.info("client opened", extra={"kv": {"ticket": result.tid, "recipient": client.recipient}})
        return RedirectResponse(f"/client/tickets/{result.tid}?done=opened", status_code=303, headers=NO_REFERRER)

    async def show(self, request: Request, client: ClientSession, status: int = 200, error: str = "",
                   draft: str = "", asked_feedback: bool = False) -> Response:
        tid = request.path_params["tid"]
        ticket = await self._ticket(client, tid)
        if ticket is None:
            return self.gone(client)
        if ticket.tid != tid:   # merged: its address is the ticket it went into
            return RedirectResponse(f"/client/tickets/{ticket.tid}", status_code=303, headers=NO_REFERRER)
        files = await messages.attachments_for_ticket(self.db, ticket.id)
        base = f"/client/tickets/{ticket.tid}/files/"
        cids = {f.content_id.strip("<>"): f"{base}{f.id}?inline=1" for f in files
                if f.content_id and f.content_type in webfiles.INLINE_TYPES}
        by_message: dict[int, list[Any]] = {}
        for f in files:
            by_message.setdefault(f.message_id, []).append(f)
        rated = await ratings.for_ticket(self.db, ticket.id)
        thread = []
        for m in await messages.for_ticket(self.db, ticket.id):
            if m.kind == "note":   # private notes are never shown to a client (seed)
                continue
            shown = mailview.display(m.body_html, cids) if m.body_html else None
            thread.append({"m": m, "html": shown.html if shown else None, "files": by_message.get(m.id, []),
                           "staff": m.kind == "staff_reply", "rating": rated.get(m.id)})
        asked = await feedback.for_ticket(self.db, ticket.id)
        done = request.query_params.get("done", "")
        return self.page("client_ticket.html", status, client=client, t=ticket, thread=thread, error=error,
                         draft=draft, done=DONE.get(done, ""), ratings_on=self.app.settings.feedback.reply_ratings,
                         feedback=asked, feedback_open=asked_feedback or request.url.path.endswith("/feedback"),
                         text_max=CLIENT_TEXT_MAX, comment_max=CLIENT_COMMENT_MAX,
                         closed=ticket.status == tickets.CLOSED)

    async def file(self, request: Request, client: ClientSession) -> Response:
        ticket = await self._ticket(client, request.path_params["tid"])
        found = await messages.attachment(self.db, int(request.path_params["file_id"]))
        if ticket is None or found is None or found[1] != ticket.id:
            return self.gone(client, message="This file does not exist, or is not on one of your tickets.")
        message = await messages.get(self.db, found[0].message_id)
        if message is None or message.kind == "note":   # a note's file is as private as the note
            return self.gone(client, message="This file does not exist, or is not on one of your tickets.")
        try:
            response = await webfiles.download(self._blobs, found[0], request.query_params.get("inline") == "1")
        except webfiles.FileGone:
            return self.gone(client, "File gone", f"The file {found[0].filename} is no longer kept.", 410)
        response.headers.update(NO_REFERRER)
        return response

    # -- actions -------------------------------------------------------------------------------------------

    async def _act(self, request: Request, client: ClientSession, work: Callable[[Ticket], Awaitable[Any]],
                   done: str, **kept: Any) -> Response:
        ticket = await self._ticket(client, request.path_params["tid"])
        if ticket is None:
            return self.gone(client)
        try:
            await work(ticket)
        except DeskError as exc:
            if isinstance(exc, NotFound):
                return self.gone(client)
            return await self.show(request, client, _status(exc), str(exc), **kept)
        return RedirectResponse(f"/client/tickets/{ticket.tid}?done={done}", status_code=303, headers=NO_REFERRER)

    async def reply(self, request: Request, client: ClientSession) -> Response:
        form = request.state.form
        body = str(form.get("body") or "")

        async def work(ticket: Ticket) -> None:
            stored = await webfiles.uploaded(form, self.app.settings.attachments, self._blobs, "file")
            result = await self.app.desk.client_reply(self.actor(client), ticket.tid, body, stored)
            log.info("client reply", extra={"kv": {"ticket": result.tid, "recipient": client.recipient,
                                                   "files": len(stored)}})

        return await self._act(request, client, work, "replied", draft=body)

    async def close(self, request: Request, client: ClientSession) -> Response:
        async def work(ticket: Ticket) -> None:
            await self.app.desk.client_close(self.actor(client), ticket.tid)

        return await self._act(request, client, work, "closed")

    async def rate(self, request: Request, client: ClientSession) -> Response:
        form = request.state.form
        value = str(form.get("rating") or "")

        async def work(ticket: Ticket) -> None:
            await self.app.desk.rate_reply(self.actor(client), ticket.tid, int(request.path_params["message_id"]),
                                           int(value) if value.isdigit() and len(value) == 1 else 0)

        return await self._act(request, client, work, "rated")

    async def give_feedback(self, request: Request, client: ClientSession) -> Response:
        form = request.state.form
        value = str(form.get("rating") or "")

        async def work(ticket: Ticket) -> None:
            await self.app.desk.give_feedback(self.actor(client), ticket.tid,
                                              int(value) if value.isdigit() and len(value) <= 2 else 0,
                                              str(form.get("comment") or ""))

        return await self._act(request, client, work, "feedback", asked_feedback=True)


def _status(exc: DeskError) -> int:
    return 404 if isinstance(exc, NotFound) else (403 if isinstance(exc, Denied) else 422)
