"""The installation's secret: the HMAC key that signs reply tokens and bounce addresses.

Contract of :func:`load_or_create_secret`:

* The secret is 32 random bytes stored hex-encoded (64 hex digits, an optional trailing newline) in one
  file, normally ``<state dir>/secret.key``, mode 0600.
* The first call creates it; every later call, in this or any other process, returns the same bytes.
  Concurrent first calls from several processes agree on one secret: the file only ever appears under
  its final name complete and fsynced, and exactly one creator wins.
* A file readable or writable by group/others is tightened to 0600 with a warning, then used.
* A file whose content is not 64 hex digits raises :class:`ValueError` naming the path. We never
  overwrite it ourselves: replacing the secret invalidates every reply token and bounce address already
  sent out, so that is left to the administrator (remove the file and a new secret is made).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import stat
from pathlib import Path

log = logging.getLogger("ticketd")

SECRET_BYTES = 32
_HEX = re.compile(r"[0-9a-fA-F]{64}")  # 2 * SECRET_BYTES
# A valid file is 65 bytes; reading a little more is enough to tell "too long" from "right".
_READ_LIMIT = 4096


def load_or_create_secret(path: Path) -> bytes:
    """Return the secret stored at ``path``, creating it (mode 0600) if it does not exist yet."""
    path = Path(path)
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    return _create(path)


def _read(path: Path) -> bytes:
    # Open once and work on the descriptor, so the permission check, the chmod and the read all
    # concern the same file even if someone renames things under us.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o077:
            log.warning("secret file %s had mode %03o (readable by others); changed to 0600", path, mode)
            os.fchmod(fd, 0o600)
        raw = os.read(fd, _READ_LIMIT)
    finally:
        os.close(fd)
    text = raw.decode("ascii", errors="replace").strip()
    if not _HEX.fullmatch(text):
        raise ValueError(
            f"{path}: not a ticketd secret (expected {2 * SECRET_BYTES} hex digits). Remove the file to have "
            "a new one generated at the next start; note that this invalidates every reply token and bounce "
            "address already sent out."
        )
    return bytes.fromhex(text)


def _create(path: Path) -> bytes:
    secret = secrets.token_bytes(SECRET_BYTES)
    # The temp file lives in the same directory so os.link stays on one filesystem. Its name is unique
    # per attempt (pid + random), and O_EXCL guarantees we never write into someone else's file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        try:
            # The umask may only have removed bits, but a umask like 0o277 would leave us unable to read
            # our own secret back: set exactly 0600.
            os.fchmod(fd, 0o600)
            data = (secret.hex() + "\n").encode("ascii")
            while data:
                data = data[os.write(fd, data):]
            # Durable before it becomes visible: nobody may ever read a half-written secret.
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            # link(), unlike rename(), refuses to replace an existing file: if another process created
            # the secret meanwhile, theirs stays and we use it, so all processes agree.
            os.link(tmp, path)
        except FileExistsError:
            return _read(path)
        _fsync_dir(path.parent)
        return secret
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    # Make the new directory entry survive a crash; best effort where directories cannot be opened.
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
