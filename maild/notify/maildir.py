"""The ``maildir`` transport, the embedded default: outbound mail lands in ``<state dir>/sent`` instead of
going to a relay, so ``make run`` works on a laptop and a test can read what would have been sent.

Contract: each mail is one file, written to ``tmp/`` and fsynced, then renamed into ``new/`` and the
directory fsynced (a crash leaves either no file or a complete one). Its name depends only on the
envelope's ``key`` (the outbox id and Message-ID), so a resend after a crash rewrites the same file
instead of adding a second one. The file starts with ``Return-Path: <envelope sender>`` and
``Delivered-To: recipient``, as a local delivery agent would write them, followed by the mail's bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from pathlib import Path

from maild.notify.transport import SENT, WRITE, Delivery, Envelope, failure

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def file_name(key: str) -> str:
    """A Maildir-safe file name that depends only on ``key`` (no ``/``, no ``:``, not hidden)."""
    readable = _UNSAFE.sub("_", key)[:40].lstrip(".") or "mail"
    return f"{readable}.{hashlib.sha256(key.encode()).hexdigest()[:16]}.ticketd"


class MaildirTransport:
    name = "maildir"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def session(self) -> MaildirSession:
        return MaildirSession(self.root)

    def describe(self) -> str:
        return f"maildir {self.root}"


class MaildirSession:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._last_used: float | None = None

    @property
    def idle_since(self) -> float | None:
        return None  # nothing to close

    async def close(self) -> None:
        return None

    async def send(self, envelope: Envelope) -> Delivery:
        try:
            path = await asyncio.to_thread(deliver, self.root, envelope)
        except OSError as exc:
            return failure(WRITE, None, f"cannot write to {self.root}: {exc}")
        self._last_used = time.monotonic()
        return Delivery(SENT, where=str(path), transcript=(f"wrote {path}",))


def deliver(root: Path, envelope: Envelope) -> Path:
    """Write ``envelope`` into the Maildir at ``root`` (created if missing); return the file in ``new/``."""
    for sub in ("tmp", "new", "cur"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    name = file_name(envelope.key)
    eol = b"\r\n" if b"\r\n" in envelope.raw[:2000] else b"\n"  # keep the message's own line ends
    head = (f"Return-Path: <{envelope.sender}>".encode() + eol
            + f"Delivered-To: {envelope.recipient}".encode() + eol)
    tmp = root / "tmp" / f"{name}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o640)
    try:
        with os.fdopen(fd, "wb", closefd=False) as fh:
            fh.write(head)
            fh.write(envelope.raw)
            fh.flush()
            os.fsync(fd)
    finally:
        os.close(fd)
    final = root / "new" / name
    os.replace(tmp, final)
    dfd = os.open(root / "new", os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return final
