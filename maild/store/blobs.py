"""Attachment bytes behind one interface, content-addressed by sha256: files under the state directory
(:class:`maild.store.files.FileStore`, the default) or the database's ``blobs`` table (for nodes without a
shared filesystem; ``[attachments] store = "database"``). Both are synchronous: the parser processes store
what they judged worth keeping before the message's transaction, and keep no event loop.

Housekeeping (:func:`collect_orphans`) removes what no attachment row references, on either store.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from maild.clock import Clock
from maild.store.db import Database, DatabaseURL, SyncConnection, connect_sync
from maild.store.errors import NotFound
from maild.store.files import FileStore, check_sha

if TYPE_CHECKING:
    from maild.config import Settings

CHUNK = 1024 * 1024
DATABASE = "database"


class Blobs(Protocol):
    def put(self, data: bytes) -> str:
        """Store ``data`` durably and return its sha256; the same bytes twice are stored once."""

    def read(self, sha256: str) -> bytes:
        """The bytes (:class:`NotFound` when there are none)."""

    def delete(self, sha256: str, unless_after: str | None = None) -> None:
        """Remove the blob; ``unless_after``: not if it was stored (or stored again) after that stamp."""

    def stored_before(self, stamp: str) -> Iterator[str]:
        """The blobs (whole or left half-written by a crash) stored before ``stamp``: housekeeping's candidates."""


@dataclass(frozen=True)
class BlobSpec:
    """Where the blobs are, in a form a parser process can be handed (and open for itself)."""

    kind: str
    root: Path
    url: DatabaseURL | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> BlobSpec:
        kind = settings.attachments.store
        return cls(kind, settings.attachments_dir, settings.database_url if kind == DATABASE else None)

    def open(self) -> Blobs:
        """This process's store (one connection per process for the database kind)."""
        with _lock:
            found = _open.get(self)
            if found is None:
                if self.kind == DATABASE:
                    assert self.url is not None
                    found = DatabaseBlobs(connect_sync(self.url))
                else:
                    found = FileStore(self.root)
                _open[self] = found
            return found


_open: dict[BlobSpec, Blobs] = {}
_lock = threading.Lock()


class DatabaseBlobs:
    """Blobs as 1 MiB chunks in the ``blobs`` table; chunk 0 is written last and makes the blob whole."""

    def __init__(self, conn: SyncConnection, clock: Clock | None = None) -> None:
        self.conn = conn
        self.clock = clock or Clock()
        self._lock = threading.Lock()   # the parse threads of one process share the connection

    def put(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        with self._lock:
            stamp = self.clock.stamp()
            # Stored already: made young again, so that housekeeping never takes bytes a message in
            # flight is about to reference.
            if self.conn.execute("UPDATE blobs SET created_at = ? WHERE sha256 = ? AND chunk = 0", (stamp, sha)):
                return sha
            pieces = [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)] or [b""]
            for n in range(1, len(pieces)):
                self.conn.execute("INSERT INTO blobs (sha256, chunk, data, created_at) VALUES (?, ?, ?, ?)"
                                  " ON CONFLICT DO NOTHING", (sha, n, pieces[n], stamp))
            self.conn.execute("INSERT INTO blobs (sha256, chunk, data, size, chunks, created_at)"
                              " VALUES (?, 0, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                              (sha, pieces[0], len(data), len(pieces), stamp))
        return sha

    def read(self, sha256: str) -> bytes:
        with self._lock:
            rows = self.conn.fetchall("SELECT chunk, data, size, chunks FROM blobs WHERE sha256 = ? ORDER BY chunk",
                                      (check_sha(sha256),))
        if not rows or rows[0]["chunk"] != 0 or len(rows) != rows[0]["chunks"]:
            raise NotFound(f"no stored attachment {sha256}")
        data = b"".join(bytes(r["data"]) for r in rows)
        if len(data) != rows[0]["size"]:
            raise NotFound(f"stored attachment {sha256} is {len(data)} bytes, not {rows[0]['size']}")
        return data

    def delete(self, sha256: str, unless_after: str | None = None) -> None:
        """All its chunks at once, unless an attachment references it by now or (``unless_after``) it was
        stored again since (both checked in the same statement)."""
        # Chunk 0 first, judged on its own row: a put() that made it young again and committed meanwhile is
        # seen (PostgreSQL re-checks a row updated under it), and one that comes later waits for this
        # transaction, finds no chunk 0 and writes the blob again. The other chunks go only with it.
        young = " AND created_at < ?" if unless_after else ""
        with self._lock:
            self.conn.execute_together([
                ("DELETE FROM blobs WHERE sha256 = ? AND chunk = 0 AND NOT EXISTS"
                 " (SELECT 1 FROM attachments a WHERE a.sha256 = ?)" + young,
                 (check_sha(sha256), sha256, *((unless_after,) if unless_after else ()))),
                ("DELETE FROM blobs WHERE sha256 = ? AND chunk > 0 AND NOT EXISTS"
                 " (SELECT 1 FROM blobs z WHERE z.sha256 = ? AND z.chunk = 0)", (sha256, sha256))])

    def stored_before(self, stamp: str) -> Iterator[str]:
        with self._lock:
            rows = self.conn.fetchall("SELECT DISTINCT sha256 FROM blobs WHERE created_at < ?", (stamp,))
        return iter([r["sha256"] for r in rows])


async def collect_orphans(db: Database, blobs: Blobs, before: str) -> int:
    """Delete the blobs stored before ``before`` that no attachment references (the files of mail that was
    blocked or a duplicate, of a rolled-back batch, of a crash mid-write); their number. ``before`` leaves
    the blobs of messages still being processed alone: give it hours, not seconds."""
    import asyncio

    # The store's own calls (a directory walk, or the synchronous connection) run off the event loop.
    candidates = await asyncio.to_thread(lambda: sorted(set(blobs.stored_before(before))))
    referenced: set[str] = set()
    for i in range(0, len(candidates), 500):
        chunk = candidates[i:i + 500]
        rows = await db.fetchall(f"SELECT DISTINCT sha256 FROM attachments WHERE sha256 IN"
                                 f" ({','.join('?' * len(chunk))})", chunk)
        referenced.update(r["sha256"] for r in rows)
    gone = [sha for sha in candidates if sha not in referenced]
    for sha in gone:   # stored again since it was listed (a new message's attachment): it stays
        await asyncio.to_thread(blobs.delete, sha, before)
    return len(gone)
