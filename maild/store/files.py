"""Attachment bytes on disk, content-addressed by sha256, inside the state directory only (the default
:class:`maild.store.blobs.Blobs`).

Names on disk are hashes, never names from mail, so no attachment name can reach the file system.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from maild.clock import parse
from maild.store.errors import NotFound


def check_sha(sha256: str) -> str:
    """A sha256 hex digest, or ValueError: no other name reaches a path or a query."""
    if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return sha256


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        return self.root / check_sha(sha256)[:2] / sha256

    def put(self, data: bytes) -> str:
        """Store ``data`` durably (fsync'd) and return its sha256; storing the same bytes twice is free."""
        sha = hashlib.sha256(data).hexdigest()
        final = self.path_for(sha)
        try:
            if final.stat().st_size == len(data):
                os.utime(final)   # young again: housekeeping never takes bytes a message in flight references
                return sha
        except FileNotFoundError:   # not there, or taken by housekeeping just now: written again below
            pass
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{sha}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return sha

    def read(self, sha256: str) -> bytes:
        try:
            return self.path_for(sha256).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no stored attachment {sha256}") from None

    def delete(self, sha256: str, unless_after: str | None = None) -> None:
        """Remove the file; ``unless_after``: not if it was written (or made young again) after that stamp.
        The file is first moved aside (atomic), then judged: a put() that made it young before the move is
        seen and the file put back; one that comes after finds no file and writes it again."""
        path = self.path_for(sha256)
        if unless_after is None:
            path.unlink(missing_ok=True)
            return
        aside = path.with_name(f".{sha256}.{os.getpid()}.del")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return
        if aside.stat().st_mtime >= parse(unless_after).timestamp():
            os.replace(aside, path)   # written again since it was listed: in use (same bytes either way)
        else:
            aside.unlink(missing_ok=True)

    def stored_before(self, stamp: str) -> Iterator[str]:
        """Files last written before ``stamp``; a temporary file left by a crash mid-write goes at once."""
        cutoff = parse(stamp).timestamp()
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            if len(folder.name) != 2 or not folder.is_dir():
                continue
            for path in folder.iterdir():
                try:
                    old = path.stat().st_mtime < cutoff
                except FileNotFoundError:
                    continue
                if path.name.endswith((".tmp", ".del")) and old:   # a crash mid-write, or mid-delete
                    path.unlink(missing_ok=True)
                elif old and len(path.name) == 64:
                    yield path.name
