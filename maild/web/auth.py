"""Staff sign-in: sessions kept in the database (a random token in an HttpOnly, SameSite=Lax cookie,
Secure when ``web.public_url`` is https; only its hash is stored), CSRF tokens carried in every form (the
sign-in form's checked against a cookie of its own, the others against the session's), failed sign-ins
limited per account and per address, and a clear answer for an account that is turned off."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from maild import passwords
from maild.clock import iso
from maild.desk.desk import actor_of
from maild.desk.events import Actor
from maild.jobs.housekeeping import LOGIN_WINDOW_MINUTES
from maild.store import staff, websessions
from maild.store.staff import StaffMember
from maild.store.websessions import Session
from maild.web.render import Pages

if TYPE_CHECKING:
    from maild.app import App
    from maild.store.db import Database

SESSION_COOKIE = "ticketd_session"
LOGIN_COOKIE = "ticketd_login"
SESSION_HOURS = 12
WINDOW_MINUTES = LOGIN_WINDOW_MINUTES   # failed sign-ins count this long (housekeeping forgets older ones)
ACCOUNT_LIMIT = 5      # failed sign-ins per account per window, then 429
ADDRESS_LIMIT = 20     # ... per client address
# A hash to check a password against when the username is unknown, so that both cost the same time.
@functools.cache
def _dummy() -> str:
    return passwords.hash_password("not a password of anyone's")   # once, at the first unknown username


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same(sent: object, expected: str) -> bool:
    """A token as sent equals the expected one (in constant time; any text, never an exception)."""
    return isinstance(sent, str) and bool(sent) and bool(expected) and hmac.compare_digest(
        sent.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def client_address(request: Request, trusted: Sequence[str]) -> str:
    """Who sent the request: the socket's peer, or, when that peer is one of ``trusted`` (networks: a reverse
    proxy in front of ticketd), the nearest address in X-Forwarded-For that is not a trusted proxy."""
    peer = request.client.host if request.client else "-"
    if not trusted or not within(peer, trusted):
        return peer
    forwarded = ",".join(request.headers.getlist("x-forwarded-for"))   # every line of it: a proxy may add its own
    for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
        if not within(hop, trusted):
            return hop
    return peer


def within(address: str, networks: Sequence[str]) -> bool:
    """``address`` is in one of ``networks`` (False for anything that is not an IP address)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n) for n in networks)


@dataclass(frozen=True)
class Viewer:
    """The signed-in staff member of a request: who they are, the CSRF token their forms carry, and the
    departments they may see (None: all, an admin)."""

    member: StaffMember
    csrf: str
    scope: tuple[int, ...] | None

    @property
    def actor(self) -> Actor:
        return actor_of(self.member)

    def sees(self, department_id: int | None) -> bool:
        return self.scope is None or department_id in self.scope


Handler = Callable[[Request, Viewer], Awaitable[Response]]


class Section:
    """A part of the site (the list, a ticket, the import log...): the application and its sign-in."""

    def __init__(self, app: App, auth: Auth) -> None:
        self.app, self.auth = app, auth

    @property
    def db(self) -> Database:
        assert self.app.db is not None
        return self.app.db


class Auth:
    def __init__(self, app: App, pages: Pages) -> None:
        self.app = app
        self.pages = pages
        self.secure = app.settings.web.public_url.startswith("https://")
        self._hashing = asyncio.Semaphore(2)   # at most two argon2 computations (64 MiB each) at a time

    def page(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return self.pages.render(name, status, **context)

    async def viewer(self, request: Request) -> Viewer | None:
        session = await self.current(request)
        if session is None:
            return None
        scope: tuple[int, ...] | None = None
        if not session.member.is_admin:
            assert self.app.db is not None
            member, _ = await staff.departments_of(self.app.db, session.member.id)
            scope = tuple(sorted(member))
        return Viewer(session.member, session.csrf, scope)

    def signed_in(self, handler: Handler, admin: bool = False) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` for a signed-in staff member (others go to the sign-in page, and come back); a POST's
        form must carry the session's CSRF token (403 otherwise); ``admin``: admins only (404 for others,
        as for anything a staff member may not see)."""

        @wraps(handler)
        async def run(request: Request) -> Response:
            viewer = await self.viewer(request)
            if viewer is None:
                if request.method != "GET":
                    return self.page("error.html", 403, viewer=None, title="Signed out",
                                     message="Your session has ended. Sign in again, then repeat what you did.")
                back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(back, safe='')}", status_code=303)
            if admin and viewer.scope is not None:
                return self.not_found(viewer)
            if request.method != "POST":
                return await handler(request, viewer)
            form = await request.form(max_files=20, max_fields=200)
            try:   # the uploads' temporary files are closed however the handler ends
                request.state.form = form
                if not self.csrf_ok(form, viewer):
                    return self.page("error.html", 403, viewer=viewer, title="Form expired",
                                     message="The form was missing its security token or had an old one."
                                             " Go back, reload the page and try again.")
                return await handler(request, viewer)
            finally:
                await form.close()

        return run

    @staticmethod
    def csrf_ok(form: FormData, viewer: Viewer) -> bool:
        return same(form.get("csrf"), viewer.csrf)

    def address(self, request: Request) -> str:
        return client_address(request, self.app.settings.web.trusted_proxies)

    def not_found(self, viewer: Viewer | None, what: str = "This page") -> HTMLResponse:
        return self.page("error.html", 404, viewer=viewer, title="Not found",
                         message=f"{what} does not exist, or is in a department you do not work in.")

    def _cookie(self, response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="lax", secure=self.secure,
                            path="/")

    async def current(self, request: Request) -> Session | None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        assert self.app.db is not None
        return await websessions.get(self.app.db, token_hash(token), self.app.clock.stamp())

    def _login_page(self, request: Request, status: int = 200, error: str = "", username: str = "",
                    next_url: str = "/tickets") -> HTMLResponse:
        csrf = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        response = self.page("login.html", status, viewer=None, csrf=csrf, error=error, username=username,
                             next_url=next_url)
        self._cookie(response, LOGIN_COOKIE, csrf, None)
        return response

    @staticmethod
    def _next(value: object) -> str:
        """Where to go after signing in: a path of this site only (never another host)."""
        text = value if isinstance(value, str) else ""
        if not text.startswith("/") or text.startswith("//") or "\\" in text:
            return "/tickets"
        return text

    async def login_form(self, request: Request) -> Response:
        if await self.current(request) is not None:
            return RedirectResponse(self._next(request.query_params.get("next")), status_code=303)
        return self._login_page(request, next_url=self._next(request.query_params.get("next")))

    async def login(self, request: Request) -> Response:
        assert self.app.db is not None
        db, now = self.app.db, self.app.clock.now()
        form = await request.form(max_files=0, max_fields=10)   # anyone may post here: no uploads
        next_url = self._next(form.get("next"))
        if not same(form.get("csrf"), request.cookies.get(LOGIN_COOKIE) or ""):
            return self._login_page(request, 403, "The form had expired. Please sign in again.")
        username = str(form.get("username") or "").strip()[:200]
        password = str(form.get("password") or "")[:1024]
        keys = [f"user:{username.lower()}", f"addr:{self.address(request)}"]
        since = iso(now - timedelta(minutes=WINDOW_MINUTES))
        # The attempt is counted (committed) before anything is checked, and the limit is read with it in:
        # of parallel guesses, each sees those that came before, so no more than the limit get through. A
        # good password takes its attempt back.
        attempt = await websessions.failed(db, keys, iso(now))
        if (await websessions.failures(db, keys[0], since) > ACCOUNT_LIMIT
                or await websessions.failures(db, keys[1], since) > ADDRESS_LIMIT):
            return self._login_page(request, 429, f"Too many failed attempts. Try again in {WINDOW_MINUTES} minutes.",
                                    username, next_url)
        found = await staff.login_record(db, username) if username else None
        stored = found[1] if found is not None else ""
        async with self._hashing:   # argon2 (64 MiB, tens of ms) in a thread: the receivers share this event loop
            good = await asyncio.to_thread(lambda: passwords.verify(stored or _dummy(), password)) and bool(stored)
        if found is None or not good:
            return self._login_page(request, 401, "Wrong username or password.", username, next_url)
        await websessions.forget(db, attempt)
        member, _, disabled = found
        if disabled:
            return self._login_page(request, 403, "This account is turned off. An admin can turn it on again"
                                                  " (ticketd staff passwd USERNAME --enable).", username, next_url)
        if passwords.needs_rehash(stored):
            async with self._hashing:
                fresh = await asyncio.to_thread(passwords.hash_password, password)
            async with db.transaction():
                await staff.set_password(db, member.id, fresh)
        token = secrets.token_urlsafe(32)
        await websessions.create(db, token_hash(token), member.id, secrets.token_urlsafe(24), iso(now),
                                 iso(now + timedelta(hours=SESSION_HOURS)))
        await websessions.succeeded(db, keys[0], since)
        response = RedirectResponse(next_url, status_code=303)
        self._cookie(response, SESSION_COOKIE, token, SESSION_HOURS * 3600)
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    async def logout(self, request: Request) -> Response:
        session = await self.current(request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        form = await request.form(max_files=0, max_fields=10)
        if not same(form.get("csrf"), session.csrf):
            return self.page("error.html", 403, viewer=None, title="Form expired",
                             message="The sign-out form had an old security token. Reload the page and try again.")
        assert self.app.db is not None
        await websessions.end(self.app.db, token_hash(request.cookies.get(SESSION_COOKIE, "")))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/tickets", status_code=303)
