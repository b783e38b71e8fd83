"""Links in our mail, under ``web.public_url``: a client's signed link to their ticket's page, and the
staff desk's page of a ticket."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from maild.config import Settings
    from maild.notify.tokens import Signer


def client_link(settings: Settings, signer: Signer, tid: str) -> str:
    return f"{settings.web.public_url}/t/{tid}/{signer.view_key(tid)}"


def feedback_link(settings: Settings, signer: Signer, tid: str, token: str) -> str:
    """The client's signed link to rate a closed ticket (the feedback request's token at its end)."""
    return f"{client_link(settings, signer, tid)}/feedback/{token}"


def staff_link(settings: Settings, tid: str) -> str:
    """The ticket's page in the staff desk (``/desk/tickets/TID``, in mail sent before the web view came,
    redirects there)."""
    return f"{settings.web.public_url}/tickets/{tid}"
