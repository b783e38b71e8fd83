"""Staff sign-in: sessions kept in the database (a random token in an HttpOnly, SameSite=Lax cookie,
Secure when ``web.public_url`` is https; only its hash is stored), CSRF tokens carried in every form (the
sign-in form's checked against a cookie of its own, the others against the session's), failed sign-ins
limited per account and per address, and a clear answer for an account that is turned off."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from maild import passwords
from maild.clock import iso
from maild.store import staff, websessions
from maild.store.websessions import Session

if TYPE_CHECKING:
    from maild.app import App

TEMPLATES = Path(__file__).resolve().parent.parent.parent / "templates" / "web"
SESSION_COOKIE = "ticketd_session"
LOGIN_COOKIE = "ticketd_login"
SESSION_HOURS = 12
WINDOW_MINUTES = 15
ACCOUNT_LIMIT = 5      # failed sign-ins per account per window, then 429
ADDRESS_LIMIT = 20     # ... per client address
# A hash to check a password against when the username is unknown, so that both cost the same time.
_DUMMY = passwords.hash_password("not a password of anyone's")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Auth:
    def __init__(self, app: App) -> None:
        self.app = app
        self.secure = app.settings.web.public_url.startswith("https://")
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                                      undefined=jinja2.StrictUndefined)

    def page(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.env.get_template(name).render(**context), status_code=status,
                            headers={"cache-control": "no-store"})

    def _cookie(self, response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="lax", secure=self.secure,
                            path="/")

    async def current(self, request: Request) -> Session | None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        assert self.app.db is not None
        return await websessions.get(self.app.db, token_hash(token), self.app.clock.stamp())

    def _login_page(self, request: Request, status: int = 200, error: str = "", username: str = "") -> HTMLResponse:
        csrf = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        response = self.page("login.html", status, csrf=csrf, error=error, username=username)
        self._cookie(response, LOGIN_COOKIE, csrf, None)
        return response

    async def login_form(self, request: Request) -> Response:
        if await self.current(request) is not None:
            return RedirectResponse("/", status_code=303)
        return self._login_page(request)

    async def login(self, request: Request) -> Response:
        assert self.app.db is not None
        db, now = self.app.db, self.app.clock.now()
        form = await request.form()
        sent, expected = str(form.get("csrf") or ""), request.cookies.get(LOGIN_COOKIE) or ""
        if not sent or not expected or not hmac.compare_digest(sent, expected):
            return self._login_page(request, 403, "The form had expired. Please sign in again.")
        username = str(form.get("username") or "").strip()[:200]
        password = str(form.get("password") or "")
        address = request.client.host if request.client else "-"
        keys = [f"user:{username.lower()}", f"addr:{address}"]
        since = iso(now - timedelta(minutes=WINDOW_MINUTES))
        if (await websessions.failures(db, keys[0], since) >= ACCOUNT_LIMIT
                or await websessions.failures(db, keys[1], since) >= ADDRESS_LIMIT):
            return self._login_page(request, 429, f"Too many failed attempts. Try again in {WINDOW_MINUTES} minutes.",
                                    username)
        found = await staff.login_record(db, username) if username else None
        stored = found[1] if found is not None else ""
        good = passwords.verify(stored or _DUMMY, password) and bool(stored)
        if found is None or not good:
            await websessions.failed(db, keys, iso(now))
            return self._login_page(request, 401, "Wrong username or password.", username)
        member, _, disabled = found
        if disabled:
            return self._login_page(request, 403, "This account is turned off. An admin can turn it on again"
                                                  " (ticketd staff passwd USERNAME --enable).", username)
        if passwords.needs_rehash(stored):
            async with db.transaction():
                await staff.set_password(db, member.id, passwords.hash_password(password))
        token = secrets.token_urlsafe(32)
        await websessions.create(db, token_hash(token), member.id, secrets.token_urlsafe(24), iso(now),
                                 iso(now + timedelta(hours=SESSION_HOURS)))
        await websessions.succeeded(db, keys[0], since)
        response = RedirectResponse("/", status_code=303)
        self._cookie(response, SESSION_COOKIE, token, SESSION_HOURS * 3600)
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    async def logout(self, request: Request) -> Response:
        session = await self.current(request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        form = await request.form()
        if not hmac.compare_digest(str(form.get("csrf") or ""), session.csrf):
            return self.page("home.html", 403, member=session.member, csrf=session.csrf)
        assert self.app.db is not None
        await websessions.end(self.app.db, token_hash(request.cookies.get(SESSION_COOKIE, "")))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def home(self, request: Request) -> Response:
        session = await self.current(request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        return self.page("home.html", member=session.member, csrf=session.csrf)
