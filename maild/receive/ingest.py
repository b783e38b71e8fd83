"""Messages from files, for migrations and tests: ``.eml`` files, mbox files, Maildir folders and
folders of ``.eml`` files, in the order given. Reading is lazy, so a big mbox runs in bounded memory."""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from pathlib import Path


class SourceError(Exception):
    """A path that is not a message, mbox, Maildir or folder."""


def _is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() and (path / "new").is_dir()


def _is_mbox(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(5) == b"From "


def iter_messages(paths: list[str]) -> Iterator[tuple[bytes, str]]:
    """(raw bytes, where it came from) for every message under ``paths``."""
    for name in paths:
        path = Path(name)
        if not path.exists():
            raise SourceError(f"{name}: no such file or folder")
        if path.is_dir() and _is_maildir(path):
            maildir = mailbox.Maildir(path, factory=None, create=False)
            for key in sorted(maildir.keys()):
                yield maildir.get_bytes(key), f"{path}#{key}"
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".eml")
            for file in files:
                yield file.read_bytes(), str(file)
        elif _is_mbox(path):
            box = mailbox.mbox(path, factory=None, create=False)
            try:
                for i, key in enumerate(box.iterkeys()):
                    # With its ``From `` line: the envelope sender, for mail that has no usable From.
                    yield box.get_bytes(key, from_=True), f"{path}#{i + 1}"
            finally:
                box.close()
        else:
            yield path.read_bytes(), str(path)


def count_messages(paths: list[str]) -> int | None:
    """How many messages, when that is cheap to know (for the progress line); None otherwise."""
    total = 0
    for name in paths:
        path = Path(name)
        if path.is_dir() and _is_maildir(path):
            total += sum(1 for sub in ("cur", "new") for p in (path / sub).iterdir() if p.is_file())
        elif path.is_dir():
            total += sum(1 for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".eml")
        elif path.is_file() and not _is_mbox(path):
            total += 1
        else:
            return None
    return total
