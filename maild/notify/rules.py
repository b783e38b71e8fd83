"""Who hears of what: one table, event → recipient groups. Read top to bottom; ``[notifications.rules]``
in ticketd.toml replaces a row. The rules only decide; :mod:`maild.notify.follow` resolves the groups to
addresses and writes the outbox.

Defaults follow the WHMCS matrix (seeds) and its notes: department members hear of client replies and
department changes only when no admin is flagged; notes reach only watchers and the admins they mention,
never a client; clients get a confirmation of their new ticket, every staff reply, and a closure notice.
Whoever acted never gets mail about their own action (applied in follow.py, whatever the table says).
"""

from __future__ import annotations

from collections.abc import Mapping

from maild.desk.events import EventKind as E

# Recipient groups. Staff side:
WATCHERS = "watchers"                          # admins watching the ticket
DEPARTMENT = "department"                      # the department's members who opted in (staff --notify)
DEPARTMENT_UNFLAGGED = "department_unflagged"  # the same, only while no admin is flagged
FLAGGED = "flagged"                            # the flagged admin (for `flagged`: the one just flagged)
ASSIGNED = "assigned"                          # the assigned admin (for `unassigned`: the one removed)
MENTIONED = "mentioned"                        # admins named as @username in a note
# Client side:
REQUESTER = "requester"                        # the address the ticket is for (its opener)
OWNER = "owner"                                # the owner of the ticket's client account
USERS = "users"                                # the account's authorised users
CONTACTS = "contacts"                          # the account's contacts (sub-accounts)
CC = "cc"                                      # the ticket's confirmed CC recipients

STAFF_GROUPS = (WATCHERS, DEPARTMENT, DEPARTMENT_UNFLAGGED, FLAGGED, ASSIGNED, MENTIONED)
CLIENT_GROUPS = (REQUESTER, OWNER, USERS, CONTACTS, CC)
GROUPS = STAFF_GROUPS + CLIENT_GROUPS

DEFAULT_RULES: Mapping[E, tuple[str, ...]] = {
    E.TICKET_OPENED:      (DEPARTMENT, REQUESTER, OWNER, CC),
    E.CLIENT_REPLY:       (WATCHERS, DEPARTMENT_UNFLAGGED, FLAGGED, ASSIGNED),
    E.ADMIN_REPLY:        (WATCHERS, REQUESTER, OWNER, CC),
    E.NOTE_ADDED:         (WATCHERS, MENTIONED),
    E.OPTIONS_CHANGED:    (WATCHERS,),
    E.DEPARTMENT_CHANGED: (WATCHERS, DEPARTMENT_UNFLAGGED, FLAGGED),
    E.ASSIGNED:           (WATCHERS, ASSIGNED),
    E.UNASSIGNED:         (WATCHERS, ASSIGNED),
    E.FLAGGED:            (FLAGGED,),
    E.CLOSED:             (WATCHERS, REQUESTER, CC),
    E.AUTO_CLOSED:        (REQUESTER, CC),
    E.ESCALATED:          (WATCHERS, ASSIGNED, FLAGGED, DEPARTMENT_UNFLAGGED, MENTIONED),   # mentioned: notify
    E.FEEDBACK_REQUEST:   (REQUESTER,),
}

# Notes are private: no override may send one to a client.
PRIVATE_EVENTS = frozenset({E.NOTE_ADDED})


def rules(overrides: Mapping[str, tuple[str, ...]] | None = None) -> dict[E, tuple[str, ...]]:
    """The effective table: the defaults with ``[notifications.rules]`` rows put in their place."""
    table = dict(DEFAULT_RULES)
    for name, groups in (overrides or {}).items():
        kind = E(name)
        table[kind] = tuple(g for g in groups if not (kind in PRIVATE_EVENTS and g in CLIENT_GROUPS))
    return table


def templates(table: dict[E, tuple[str, ...]]) -> list[tuple[str, str]]:
    """The (audience, event) templates a table needs: loaded at start, so a broken override fails there."""
    return sorted({("client" if g in CLIENT_GROUPS else "staff", kind.value) for kind, groups in table.items()
                   for g in groups})
