"""The web application: its routes, and one access-log line per request in the daemon's log format."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from maild.store import imap, inbound, outbox
from maild.web.auth import client_address
from maild.web.metrics import observe

if TYPE_CHECKING:
    from maild.app import App

log = logging.getLogger("ticketd.web")
STATIC = Path(__file__).resolve().parent.parent.parent / "static"   # CSS: the CSP allows no inline style
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none';"
                                 b" frame-ancestors 'none'; form-action 'self'"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


class AccessLog:
    """One log line per request (method, path, status, milliseconds, client), and the site-wide security
    headers on every response."""

    def __init__(self, app: ASGIApp, trusted_proxies: Sequence[str] = (), max_body: int = 0) -> None:
        self.app = app
        self.trusted = tuple(trusted_proxies)
        self.max_body = max_body

    def _refused(self, scope: Scope) -> tuple[int, str] | None:
        """A body this site never takes: over the size limit, of unknown length (forms always say theirs),
        or in another charset than UTF-8 (its text could not be compared or shown safely)."""
        if scope["method"] in ("GET", "HEAD"):
            return None
        length = _header(scope, b"content-length")
        if length is None:
            if (_header(scope, b"transfer-encoding") or "").lower().strip() == "chunked":
                return 411, "a form must say its length (Content-Length)"
        elif not length.strip().isdigit() or (self.max_body and int(length) > self.max_body):
            return 413, f"request body over {self.max_body} bytes ([attachments] max_total_size)"
        kind = (_header(scope, b"content-type") or "").lower()
        params = [p.strip() for p in kind.split(";")[1:]]
        charset = next((p.split("=", 1)[1].strip(' "') for p in params if p.startswith("charset=")), "utf-8")
        if charset not in ("utf-8", "utf8", "us-ascii"):
            return 415, f"forms are taken in UTF-8, not {charset}"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500
        refused = self._refused(scope)
        if refused is not None:   # before anything reads the body
            status, text = refused
            await PlainTextResponse(text + "\n", status_code=status)(scope, receive, send)
            log.info("request", extra={"kv": {"method": scope["method"], "path": _logged(scope["path"]),
                                              "status": status}})
            return

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                given = list(message.get("headers", []))
                named = {k.lower() for k, _ in given}   # a response's own policy (a file's, a page's) stays
                message["headers"] = [*given, *((k, v) for k, v in SECURITY_HEADERS if k not in named)]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            observe(scope["path"], scope["method"], time.perf_counter() - began)
            log.info("request", extra={"kv": {
                "method": scope["method"], "path": _logged(scope["path"]), "status": status,
                "ms": round((time.perf_counter() - began) * 1000, 1),
                "client": client_address(Request(scope), self.trusted)}})


class IdConvertor(Convertor[int]):
    """A row id in a path: up to 18 digits (a longer number is no id of ours: 404, not an overflow)."""

    regex = "[0-9]{1,18}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("id", IdConvertor())


def build(app: App, worker_alive: Any = None) -> ASGIApp:
    """The application for ``app`` (its database, settings and desk). ``worker_alive``: a callable saying
    whether the pipeline worker runs (the daemon's), or None when there is none to ask about."""

    async def healthz(request: Request) -> JSONResponse:
        """For load balancers and monitoring: 200 when the database answers (and the worker runs), else
        503; with the spool and outbox backlogs and the IMAP mailboxes' state."""
        assert app.db is not None
        body: dict[str, Any] = {"status": "ok"}
        try:
            body["spool_pending"] = await inbound.count_pending(app.db)
            counts = await outbox.counts(app.db)
            body["outbox"] = {"queued": counts.get("queued", 0), "failed": counts.get("failed", 0)}
            body["imap"] = [{"account": r["account"], "state": r["state"]} for r in await imap.status_rows(app.db)]
            body["database"] = "ok"
        except Exception as exc:   # the database is away: say so, with a status a balancer acts on
            log.warning("health check: the database is unreachable", exc_info=True)
            body.update(status="fail", database=f"unreachable: {type(exc).__name__}")
        if worker_alive is not None:
            body["worker"] = "running" if worker_alive() else "stopped"
            if body["worker"] != "running":
                body["status"] = "fail"
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503,
                            headers={"cache-control": "no-store"})

    from maild.web.auth import Auth
    from maild.web.client import ClientArea
    from maild.web.importlog import ImportLog
    from maild.web.metrics import MetricsPage
    from maild.web.outbox import OutboxPage
    from maild.web.predefined import PredefinedPage
    from maild.web.render import Pages
    from maild.web.reports import ReportsPage
    from maild.web.ticket import TicketPage
    from maild.web.tickets import TicketList

    pages = Pages()
    auth = Auth(app, pages)
    client = ClientArea(app, pages)
    c = client.signed_in
    listing, ticket, mail_log = TicketList(app, auth), TicketPage(app, auth), ImportLog(app, auth)
    queue, replies, metrics = OutboxPage(app, auth), PredefinedPage(app, auth), MetricsPage(app, auth)
    reports = ReportsPage(app, auth)
    s = auth.signed_in
    routes = [
        Route("/healthz", healthz), Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
        Route("/login", auth.login_form, methods=["GET"]), Route("/login", auth.login, methods=["POST"]),
        Route("/logout", auth.logout, methods=["POST"]), Route("/", auth.home, methods=["GET"]),
        Route("/tickets", s(listing.page), methods=["GET"]),
        Route("/desk/tickets/{tid}", lambda request: RedirectResponse(f"/tickets/{request.path_params['tid']}",
                                                                      status_code=301), methods=["GET"]),
        Route("/tickets/close", s(listing.close_many), methods=["POST"]),
        Route("/tickets/merge", s(listing.merge_many), methods=["POST"]),
        Route("/tickets/delete", s(listing.delete_many), methods=["POST"]),
        Route("/tickets/new", s(ticket.new_form), methods=["GET"]),
        Route("/tickets/new", s(ticket.open), methods=["POST"]),
        Route("/tickets/{tid}", s(ticket.show), methods=["GET"]),
        Route("/tickets/{tid}/reply", s(ticket.reply), methods=["POST"]),
        Route("/tickets/{tid}/note", s(ticket.note), methods=["POST"]),
        Route("/tickets/{tid}/options", s(ticket.options), methods=["POST"]),
        Route("/tickets/{tid}/watch", s(ticket.watch), methods=["POST"]),
        Route("/tickets/{tid}/links/revoke", s(ticket.revoke_links), methods=["POST"]),
        Route("/tickets/{tid}/merge", s(ticket.merge), methods=["POST"]),
        Route("/tickets/{tid}/split", s(ticket.split), methods=["POST"]),
        Route("/tickets/{tid}/messages/{message_id:id}/edit", s(ticket.edit_message), methods=["POST"]),
        Route("/tickets/{tid}/messages/{message_id:id}/delete", s(ticket.delete_message), methods=["POST"]),
        Route("/tickets/{tid}/files/{file_id:id}", s(ticket.file), methods=["GET"]),
        Route("/import-log", s(mail_log.listing), methods=["GET"]),
        Route("/import-log/{log_id:id}", s(mail_log.entry), methods=["GET"]),
        Route("/import-log/{log_id:id}/import", s(mail_log.import_), methods=["POST"]),
        Route("/import-log/{log_id:id}/reprocess", s(mail_log.reprocess, admin=True), methods=["POST"]),
        Route("/outbox", s(queue.page, admin=True), methods=["GET"]),
        Route("/outbox/{outbox_id:id}/retry", s(queue.retry, admin=True), methods=["POST"]),
        Route("/predefined", s(replies.page), methods=["GET"]),
        Route("/predefined", s(replies.add), methods=["POST"]),
        Route("/predefined/{reply_id:id}", s(replies.update), methods=["POST"]),
        Route("/reports/ratings", s(reports.ratings), methods=["GET"]),
        Route("/metrics", metrics.metrics, methods=["GET"]),
        # The client's pages: the link in their mail starts a session (see maild/web/client.py).
        Route("/c/{key}", client.link, methods=["GET"]), Route("/c/{key}/{page}", client.link, methods=["GET"]),
        Route("/t/{rest:path}", client.old_link, methods=["GET"]),
        Route("/client/tickets", c(client.listing), methods=["GET"]),
        Route("/client/tickets/create", c(client.new_form), methods=["GET"]),
        Route("/client/tickets/create", c(client.create), methods=["POST"]),
        Route("/client/logout", c(client.logout), methods=["POST"]),
        Route("/client/tickets/{tid}", c(client.show), methods=["GET"]),
        Route("/client/tickets/{tid}/feedback", c(client.show), methods=["GET"]),
        Route("/client/tickets/{tid}/feedback", c(client.give_feedback), methods=["POST"]),
        Route("/client/tickets/{tid}/reply", c(client.reply), methods=["POST"]),
        Route("/client/tickets/{tid}/close", c(client.close), methods=["POST"]),
        Route("/client/tickets/{tid}/messages/{message_id:id}/rate", c(client.rate), methods=["POST"]),
        Route("/client/tickets/{tid}/files/{file_id:id}", c(client.file), methods=["GET"]),
    ]
    # The largest form: a reply with attachments up to the total allowed, and its text.
    limit = app.settings.attachments.max_total_size + 2 * 1024 * 1024
    return AccessLog(Starlette(routes=routes), app.settings.web.trusted_proxies, limit)


def _logged(path: str) -> str:
    """The path as the access log writes it: a client link's key never goes into a log."""
    if not path.startswith("/c/"):
        return path
    _, more, page = path[3:].partition("/")
    return "/c/[key]" + (f"/{page}" if more else "")


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", []):
        if name == wanted:
            return bytes(value).decode("latin-1")
    return None
