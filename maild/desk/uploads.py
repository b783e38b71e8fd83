"""A staff member's files for a reply or a note (from the CLI or a web form): any type (seed), names made
safe, typed by content, bytes stored content-addressed before the action that refers to them."""

from __future__ import annotations

from collections.abc import Sequence

from maild.desk.core import StoredFile
from maild.store.blobs import Blobs


def store(blobs: Blobs, named: Sequence[tuple[str, bytes]]) -> list[StoredFile]:
    """``(name as given, bytes)`` pairs → the files a desk action takes. Blocking (disk or database): call it
    off the event loop."""
    from maild.pipeline.attachments import safe_filename, sniff

    files = []
    for i, (name, data) in enumerate(named, start=1):
        ctype = sniff(data) or "application/octet-stream"
        files.append(StoredFile(filename=safe_filename(name, i, ctype), content_type=ctype, size=len(data),
                                sha256=blobs.put(data)))
    return files
