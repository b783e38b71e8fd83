"""Job ``housekeeping``: the raw mail of processed messages is emptied after ``[housekeeping] raw_days``
(blocked-and-not-imported and failed ones after ``raw_days_kept``, so an admin can still import or
reprocess them meanwhile); attachment bytes that no attachment refers to (blocked or duplicate mail, a
rolled-back batch, a crash mid-write) are removed after ``orphan_hours``; expired web sessions and failed
sign-ins older than the rate limit's window are forgotten; the database engine does its upkeep (SQLite:
``PRAGMA optimize`` and a WAL checkpoint).

Outbox retries and IMAP polling are not jobs here: the outbox sender retries each deferred mail when it is
due, and each IMAP mailbox without IDLE is polled every ``poll_seconds``, in their own loops."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from maild.clock import iso, utcnow
from maild.store import blobs, clientlinks, inbound, websessions
from maild.store.blobs import BlobSpec

if TYPE_CHECKING:
    from maild.app import App

FOREVER = "0000"   # a cutoff before every stamp: keep
LOGIN_WINDOW_MINUTES = 15   # failed sign-ins count for this long (maild/web/auth.py's window)


async def run(app: App, now: datetime) -> dict[str, int]:
    assert app.db is not None
    s = app.settings.housekeeping
    done_before = iso(now - timedelta(days=s.raw_days)) if s.raw_days else FOREVER
    kept_before = iso(now - timedelta(days=s.raw_days_kept)) if s.raw_days_kept else FOREVER
    purged = 0
    while n := await inbound.purge_raw(app.db, done_before, kept_before):
        purged += n
    # Bytes are dated by when they were written (a file's time on disk): their age is the wall clock's, not
    # the run's "as of" time, so that a run as if in the future never takes the bytes of mail in flight.
    orphans = await blobs.collect_orphans(app.db, BlobSpec.from_settings(app.settings).open(),
                                          iso(utcnow() - timedelta(hours=s.orphan_hours)))
    sign_ins = await websessions.purge(app.db, iso(now), iso(now - timedelta(minutes=LOGIN_WINDOW_MINUTES)))
    client_links = await clientlinks.purge(app.db, iso(now))   # expired links and their sessions
    upkeep = await app.db.maintain()
    return {"raw_purged": purged, "orphans_removed": orphans, "sign_in_rows_purged": sign_ins,
            "client_link_rows_purged": client_links, **upkeep}
