"""Why a desk action was refused. Each front end turns these into its own answer (the CLI's exit codes,
a web page's message, a mail back to a staff member)."""

from __future__ import annotations

from typing import Any


class DeskError(Exception):
    """A desk action that cannot be done; the message says why and what to do."""


class NotFound(DeskError):
    """No such ticket, staff member, department or user."""


class Denied(DeskError):
    """The actor may not do this (not an admin, not in the ticket's department)."""


class Invalid(DeskError):
    """A value that is not allowed (an unknown status, an empty reply, a bad address)."""


class Collision(DeskError):
    """The ticket changed since the actor looked at it (seed: collision detection). ``changes`` is
    field → (what the actor saw, what it is now)."""

    def __init__(self, changes: dict[str, tuple[Any, Any]]) -> None:
        self.changes = changes
        what = "; ".join(f"{k}: {a!r} → {b!r}" for k, a, b in ((k, *v) for k, v in changes.items()))
        super().__init__(f"the ticket changed since you looked at it ({what}); look again and retry")
