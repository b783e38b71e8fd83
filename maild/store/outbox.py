"""The outbox table: every outbound mail, one row per mail and recipient. All of its SQL lives here.

Contract:

* The change that causes mail queues its events (:func:`queue_events`) in its own transaction, so they
  exist exactly when it committed. Expanding them (notify/follow.py) writes the mail with
  :func:`enqueue_many` and takes the events with :func:`take_events` in one transaction (neither opens
  one). A mail starts ``queued``, due at once.
* A row is ``queued`` until the sender marks it ``sent`` (the relay said 250) or ``failed`` (a permanent
  answer, or the retry deadline passed); a temporary failure only moves ``next_attempt_at`` on.
* Timestamps are :mod:`maild.clock` ISO strings and are compared as text (they sort as time).
* The writers (:func:`mark_sent`, :func:`defer`, :func:`fail`, :func:`retry`, :func:`mark_bounced`) run
  inside the caller's ``Database.transaction()``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from maild.store.db import NO_LIMIT, Database, Row

QUEUED = "queued"
SENT = "sent"
FAILED = "failed"
STATES = (QUEUED, SENT, FAILED)

_COLUMNS = ("id, ticket_id, event, audience, automatic, sender, recipient, message_id, subject, state, attempts,"
            " created_at, next_attempt_at, sent_at, last_error, bounced_at, length(raw) AS size")


@dataclass(frozen=True)
class OutboxMail:
    """A rendered mail for one recipient, as the notification code hands it to :func:`enqueue`."""

    ticket_id: int | None
    event: str
    audience: str          # client | staff
    automatic: bool        # carries Auto-Submitted; counts toward the per-address cap
    sender: str            # the department address (the base of the VERP envelope sender)
    recipient: str
    message_id: str
    subject: str
    raw: bytes


@dataclass(frozen=True)
class OutboxRow:
    """One outbox row. ``raw`` is empty in :func:`listing` (``size`` still says how big it is)."""

    id: int
    ticket_id: int | None
    event: str
    audience: str
    automatic: bool
    sender: str
    recipient: str
    message_id: str
    subject: str
    state: str
    attempts: int
    created_at: str
    next_attempt_at: str
    sent_at: str | None
    last_error: str
    bounced_at: str | None
    size: int
    raw: bytes = b""


def _row(r: Row, with_raw: bool) -> OutboxRow:
    return OutboxRow(
        id=r["id"], ticket_id=r["ticket_id"], event=r["event"], audience=r["audience"],
        automatic=bool(r["automatic"]), sender=r["sender"], recipient=r["recipient"],
        message_id=r["message_id"], subject=r["subject"], state=r["state"], attempts=r["attempts"],
        created_at=r["created_at"], next_attempt_at=r["next_attempt_at"], sent_at=r["sent_at"],
        last_error=r["last_error"], bounced_at=r["bounced_at"], size=r["size"] or 0,
        raw=bytes(r["raw"]) if with_raw else b"",
    )


async def enqueue(db: Database, mail: OutboxMail, stamp: str) -> int:
    """Queue ``mail`` (due at ``stamp``); return its outbox id. Runs in the caller's transaction."""
    return await db.insert(
        "INSERT INTO outbox (ticket_id, event, audience, automatic, sender, recipient, message_id, subject, raw,"
        " state, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (mail.ticket_id, mail.event, mail.audience, int(mail.automatic), mail.sender, mail.recipient,
         mail.message_id, mail.subject, mail.raw, QUEUED, stamp, stamp),
    )


async def enqueue_many(db: Database, mails: Sequence[OutboxMail], stamp: str) -> None:
    """Queue ``mails`` in one statement (a notification's rows). Runs in the caller's transaction."""
    await db.executemany(
        "INSERT INTO outbox (ticket_id, event, audience, automatic, sender, recipient, message_id, subject, raw,"
        " state, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(m.ticket_id, m.event, m.audience, int(m.automatic), m.sender, m.recipient, m.message_id, m.subject,
          m.raw, QUEUED, stamp, stamp) for m in mails])


async def queue_events(db: Database, events: Sequence[tuple[int, str]], stamp: str) -> None:
    """Queue (ticket id, event JSON) pairs for notification, in the caller's transaction (one statement)."""
    await db.executemany("INSERT INTO notify_queue (ticket_id, created_at, event) VALUES (?, ?, ?)",
                         [(ticket_id, stamp, event) for ticket_id, event in events])


async def queued_events(db: Database, limit: int, node: str = "", now: str = "", until: str = ""
                        ) -> list[tuple[int, int | None, str]]:
    """The oldest queued events as (queue id, ticket id, event JSON), claimed for ``node`` until ``until``
    (another node's expander leaves them alone meanwhile: each plans its own)."""
    rows = await db.claim_rows("notify_queue", "id, ticket_id, event", "1 = 1", (), "id", limit, node, now,
                               until or now)
    return sorted((r["id"], r["ticket_id"], r["event"]) for r in rows)


async def take_events(db: Database, ids: Sequence[int]) -> int:
    """Take queued events out (in the transaction that writes their mail); how many were still there, so
    that a second expander of the same events can tell and roll back instead of doubling the mail."""
    if not ids:
        return 0
    return await db.execute(f"DELETE FROM notify_queue WHERE id IN ({','.join('?' * len(ids))})", list(ids))


async def recipients_of(db: Database, message_ids: Sequence[str]) -> dict[str, list[str]]:
    """Message-ID → the recipients our mail with that id went to (one outbox row each)."""
    wanted = list(dict.fromkeys(message_ids))[-100:]
    if not wanted:
        return {}
    found: dict[str, list[str]] = {}
    for r in await db.fetchall(f"SELECT message_id, recipient FROM outbox WHERE message_id IN"
                               f" ({','.join('?' * len(wanted))}) ORDER BY id", wanted):
        found.setdefault(r["message_id"], []).append(r["recipient"].lower())
    return found


async def automatic_counts(db: Database, recipients: Sequence[str], since: str) -> dict[str, int]:
    """How many automatic mails went, or are queued, to each of ``recipients`` (as stored) since ``since``
    (failed ones do not count): the per-address cap, in one query."""
    if not recipients:
        return {}
    rows = await db.fetchall(
        f"SELECT recipient, count(*) AS n FROM outbox WHERE recipient IN ({','.join('?' * len(recipients))})"
        " AND created_at >= ? AND automatic = 1 AND state != ? GROUP BY recipient", (*recipients, since, FAILED))
    return {r["recipient"]: r["n"] for r in rows}


async def due(db: Database, now: str, limit: int, exclude: Collection[int] = (), node: str = "",
              until: str = "") -> list[OutboxRow]:
    """Queued rows whose time has come (``next_attempt_at <= now``), the longest-waiting first, with their
    bytes; ``exclude`` leaves out the ids the caller already has in hand. Rows another node's sender has in
    hand are left out, and those returned are claimed for ``node`` until ``until``."""
    skip = sorted(exclude)
    marks = f" AND id NOT IN ({','.join('?' * len(skip))})" if skip else ""
    rows = await db.claim_rows("outbox", f"{_COLUMNS}, raw", f"state = ? AND next_attempt_at <= ?{marks}",
                               (QUEUED, now, *skip), "next_attempt_at, id", limit, node, now, until or now)
    return sorted((_row(r, True) for r in rows), key=lambda r: (r.next_attempt_at, r.id))


async def get(db: Database, outbox_id: int) -> OutboxRow | None:
    row = await db.fetchone(f"SELECT {_COLUMNS}, raw FROM outbox WHERE id = ?", (outbox_id,))
    return _row(row, True) if row is not None else None


async def listing(db: Database, state: str | None = None, limit: int | None = 50, offset: int = 0) -> list[OutboxRow]:
    """The newest rows first (without their bytes), optionally only those in ``state``; ``limit`` None: all."""
    where, params = ("WHERE state = ?", [state]) if state else ("", [])
    rows = await db.fetchall(f"SELECT {_COLUMNS} FROM outbox {where} ORDER BY id DESC LIMIT ? OFFSET ?",
                             (*params, NO_LIMIT if limit is None else limit, offset))
    return [_row(r, False) for r in rows]


async def counts(db: Database) -> dict[str, int]:
    """Rows per state (every state present, zero when none)."""
    found = {r["state"]: r["n"] for r in await db.fetchall("SELECT state, count(*) AS n FROM outbox GROUP BY state")}
    return {state: int(found.get(state, 0)) for state in STATES}


async def mark_sent(db: Database, outbox_ids: Sequence[int], stamp: str) -> None:
    """The relay accepted these mails (one group commit may carry several)."""
    if outbox_ids:
        await db.execute(
            f"UPDATE outbox SET state = ?, sent_at = ?, attempts = attempts + 1, last_error = ''"
            f" WHERE state = ? AND id IN ({','.join('?' * len(outbox_ids))})",
            (SENT, stamp, QUEUED, *outbox_ids),
        )


async def still_mine(db: Database, outbox_id: int, node: str, until: str) -> bool:
    """Right before sending: the row is still this node's (renewed until ``until``), not taken over by
    another node while it waited in this sender's queue."""
    return await db.renew_claim("outbox", outbox_id, node, until)


async def defer(db: Database, outbox_id: int, error: str, next_attempt_at: str) -> None:
    """A temporary failure: count the attempt, keep the answer, try again at ``next_attempt_at``."""
    await db.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, claimed_by = NULL,"
        " claimed_until = NULL WHERE id = ? AND state = ?",
        (error, next_attempt_at, outbox_id, QUEUED),
    )


async def fail(db: Database, outbox_id: int, error: str) -> None:
    """A permanent failure (or the retry deadline passed): the mail will not be sent."""
    await db.execute(
        "UPDATE outbox SET state = ?, attempts = attempts + 1, last_error = ? WHERE id = ? AND state = ?",
        (FAILED, error, outbox_id, QUEUED),
    )


async def retry(db: Database, outbox_id: int, stamp: str) -> str | None:
    """Queue a failed (or queued) row again, due at ``stamp`` with its attempts reset; return the state it
    had (``sent`` rows are left alone), or None when there is no such row.

    ``created_at`` is set to ``stamp`` too: the retry deadline counts from it, and a mail queued again by
    hand deserves a whole retry period (the schema has no separate "queued at")."""
    state = await db.scalar("SELECT state FROM outbox WHERE id = ?", (outbox_id,))
    if state is None or state == SENT:
        return None if state is None else SENT
    await db.execute(
        "UPDATE outbox SET state = ?, attempts = 0, next_attempt_at = ?, created_at = ? WHERE id = ?",
        (QUEUED, stamp, stamp, outbox_id),
    )
    return str(state)


async def mark_bounced(db: Database, outbox_id: int, stamp: str) -> bool:
    """A bounce came back for this mail (found by its VERP address); False for an unknown id."""
    return await db.execute(
        "UPDATE outbox SET bounced_at = coalesce(bounced_at, ?) WHERE id = ?", (stamp, outbox_id)) > 0
