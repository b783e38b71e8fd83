"""Links in our mail, under ``web.public_url``: a client's own link to their ticket's pages, and the staff
desk's page of a ticket.

A client link is ``/c/KEY``: KEY is random (192 bits), made for one recipient of one mail; only its SHA-256
is stored (``client_links``), with the recipient, the ticket and an expiry (``web.client_link_days``).
Visiting it starts that recipient's session on the client pages; staff can revoke it."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from maild.clock import iso

if TYPE_CHECKING:
    from maild.config import Settings

KEY_BYTES = 24
# A client link's key in a URL, plain or percent-encoded (a mail client's "safe links" wrapper): quoted back
# to us in a reply, it would hand that recipient's access to everyone who reads the ticket.
_KEY_IN_URL = re.compile(r"((?:/|%2f)c(?:/|%2f))[A-Za-z0-9_-]{32}(?![A-Za-z0-9_-])", re.IGNORECASE)
REMOVED = "link-removed"


def new_key() -> str:
    return secrets.token_urlsafe(KEY_BYTES)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def scrub(text: str) -> str:
    """``text`` with the key of every client link in it taken out (mail quoting ours, before it is kept or
    shown)."""
    return _KEY_IN_URL.sub(rf"\g<1>{REMOVED}", text) if text else text


def expiry(settings: Settings, now: datetime) -> str:
    return iso(now + timedelta(days=settings.web.client_link_days))


def client_link(settings: Settings, key: str, page: str = "") -> str:
    """The recipient's link (``page``: "feedback" opens the ticket's feedback form)."""
    return f"{settings.web.public_url}/c/{key}" + (f"/{page}" if page else "")


def staff_link(settings: Settings, tid: str) -> str:
    """The ticket's page in the staff desk (``/desk/tickets/TID``, in mail sent before the web view came,
    redirects there)."""
    return f"{settings.web.public_url}/tickets/{tid}"
