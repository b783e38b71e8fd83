"""A real Dovecot IMAP server for tests: its own temp dir, config, users, maildirs and loopback port.

    server = Dovecot.start(users={"alice": "secret"})   # answering "* OK" when it returns
    try:
        server.append("alice", raw_bytes)
        with server.client("alice") as imap: ...         # a logged-in imapclient.IMAPClient
    finally:
        server.cleanup()                                 # no process left, temp dir removed

The master runs in the foreground (``dovecot -F``) as the leader of its own process group, so ``stop()`` can
find and kill every process it forked. Mail lives in maildirs under the temp dir: ``restart()`` keeps it and
the port. Instances are independent; a test may run several.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path
from typing import NamedTuple

from imapclient import IMAPClient

DOVECOT = Path("/usr/sbin/dovecot")
DOVEADM = Path("/usr/bin/doveadm")
HOST = "127.0.0.1"
START_TIMEOUT = 10.0   # seconds until the greeting; it usually takes 40-80 ms
STOP_TIMEOUT = 5.0     # seconds for SIGTERM before SIGKILL; the master takes about 1 s to exit on SIGTERM

# The recipe verified on this machine (shared/notes/recipes.md), with one passwd-file per user (see add_user),
# plus auth_verbose (logs "Password mismatch"), and unless ``auth_penalty`` is asked for, no 2 s
# auth_failure_delay and no anvil auth penalty (which after a failure delays logins from 127.0.0.1 by 2 s and
# more, up to 15 s), so that wrong-password tests stay fast. A failed login is still answered after about
# 0.5 s: the auth process flushes failures on a 500 ms timer.
CONFIG = """\
instance_name = test-{port}
protocols = imap
listen = {host}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
default_internal_user = {id.internal_user}
default_internal_group = {id.internal_group}
default_login_user = {id.login_user}
first_valid_uid = {id.uid}
first_valid_gid = {id.gid}
mail_location = maildir:{d}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users/%u
}}
userdb {{
  driver = static
  args = uid={id.uid} gid={id.gid} home={d}/mail/%u
}}
service imap-login {{
  chroot = {id.chroot}
  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot = {id.chroot}
}}
service stats {{
  unix_listener stats-reader {{
    user = {id.internal_user}
    group = {id.internal_group}
    mode = 0660
  }}
  unix_listener stats-writer {{
    user = {id.internal_user}
    group = {id.internal_group}
    mode = 0660
  }}
}}
"""

NO_AUTH_DELAYS = """\
auth_failure_delay = 0
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
"""


class Identity(NamedTuple):
    internal_user: str
    internal_group: str
    login_user: str
    chroot: str
    uid: int
    gid: int


def identity() -> Identity:
    """Who Dovecot runs as. It refuses to access mail as root, so as root mail belongs to nobody/nogroup."""
    if os.geteuid() == 0:
        return Identity("dovecot", "dovecot", "dovenull", "login",
                        pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid)
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    return Identity(user, group, user, "", os.getuid(), os.getgid())


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1).close()
    except OSError:
        return False
    return True


def group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` (zombies left to init are not counted)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so split after the last ")".
        state, _ppid, pgrp = stat[stat.rindex(")") + 2:].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            pids.append(int(entry))
    return pids


class Dovecot:
    """One Dovecot instance; make it with ``Dovecot.start(...)`` and always ``cleanup()`` it."""

    def __init__(self, users: dict[str, str] | None = None, port: int | None = None, *,
                 auth_penalty: bool = False, extra_config: str = "") -> None:
        """Write the temp dir, config and users; start nothing (see ``start`` and ``launch``).

        ``auth_penalty=True`` keeps Dovecot's defaults for failed logins: a 2 s delay, and a penalty of up to
        15 s for every later login from the same IP."""
        if not DOVECOT.exists():
            raise AssertionError(f"{DOVECOT} is missing: run `make test`, which installs dovecot-imapd")
        self.users: dict[str, str] = dict(users or {})
        self.port = port or free_port()
        self.id = identity()
        self.dir = Path(tempfile.mkdtemp(prefix="ticketd-dovecot-", dir="/tmp"))
        os.chmod(self.dir, 0o711)  # the mail uid and the chrooted login processes must be able to enter it
        self.config = self.dir / "dovecot.conf"
        self.users_dir = self.dir / "users"
        self.mail_dir = self.dir / "mail"
        self.proc: subprocess.Popen | None = None
        config = CONFIG.format(d=self.dir, port=self.port, host=HOST, id=self.id)
        self.config.write_text((config if auth_penalty else config + NO_AUTH_DELAYS) + extra_config)
        self.users_dir.mkdir(mode=0o755)  # read by the auth process, which runs as the internal user
        for name, password in self.users.items():
            self.write_user(name, password)
        self.mail_dir.mkdir(mode=0o700)
        os.chown(self.mail_dir, self.id.uid, self.id.gid)

    # -- life cycle ---------------------------------------------------------------------------------------

    @classmethod
    def start(cls, users: dict[str, str] | None = None, port: int | None = None, *,
              auth_penalty: bool = False, extra_config: str = "") -> Dovecot:
        """A new running instance answering ``* OK`` on ``port`` (a free loopback port by default);
        ``extra_config`` is appended to dovecot.conf."""
        server = cls(users, port, auth_penalty=auth_penalty, extra_config=extra_config)
        try:
            server.launch()
        except BaseException:
            server.cleanup()
            raise
        return server

    def launch(self) -> None:
        """Start the master in a new session (its own process group); return once it greets with ``* OK``."""
        assert self.proc is None, "dovecot is running already"
        if port_open(self.port):
            raise AssertionError(f"port {self.port} is taken by another process")
        with open(self.dir / "stdout.log", "ab") as out:
            self.proc = subprocess.Popen([str(DOVECOT), "-F", "-c", str(self.config)], stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.kill_group(kill=True)
                raise AssertionError(f"dovecot exited with {code} at start:\n{self.log()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=1) as sock:
                    greeting = sock.recv(1024)
                if greeting.startswith(b"* OK"):
                    return
                problem = f"greeting {greeting!r}"
            except OSError as e:
                problem = repr(e)
            if time.monotonic() > deadline:
                self.kill_group(kill=True)
                raise AssertionError(f"dovecot did not greet on {HOST}:{self.port} within {START_TIMEOUT} s "
                                     f"({problem}):\n{self.log()}")
            time.sleep(0.01)

    def stop(self, kill: bool = False) -> None:
        """SIGTERM the master (it stops its children; about 1 s) or SIGKILL the whole group (about 10 ms);
        return when no process of this instance is left and the port refuses connections."""
        if self.proc is None:
            return
        self.kill_group(kill)
        deadline = time.monotonic() + STOP_TIMEOUT
        while port_open(self.port):  # none of ours holds it any more: only another program could
            if time.monotonic() > deadline:
                raise AssertionError(f"port {self.port} still accepts connections after dovecot stopped")
            time.sleep(0.01)

    def kill_group(self, kill: bool = False) -> None:
        """Stop the master and return once no process of its group is left."""
        assert self.proc is not None
        pgid = self.proc.pid  # start_new_session: the master leads its group and its children stay in it
        with suppress(ProcessLookupError):
            if kill:
                os.killpg(pgid, signal.SIGKILL)
            else:
                self.proc.terminate()
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT)
        self.proc = None
        # Children still exiting (an imap process with a client lingers about 10 s after the master has gone),
        # or orphaned by a SIGKILLed master: they may hold the listening socket or mailbox locks. Kill what is
        # left of the group until nothing is (zombies, which init reaps in its own time, hold nothing).
        deadline = time.monotonic() + STOP_TIMEOUT
        while left := group_members(pgid):
            if time.monotonic() > deadline:
                raise AssertionError(f"dovecot processes {left} survive SIGKILL")
            with suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            time.sleep(0.01)
        # A SIGKILLed master leaves its pid file behind; should that pid be reused, the next start would refuse
        # to run ("Dovecot is already running").
        with suppress(FileNotFoundError):
            (self.dir / "run" / "master.pid").unlink()

    def restart(self, kill: bool = False) -> None:
        """Stop (SIGTERM, or SIGKILL with ``kill``) and start again on the same port with the same mail.
        Connected clients lose their connection, as with a real server restart."""
        self.stop(kill=kill)
        self.launch()

    def cleanup(self) -> None:
        """Stop (SIGKILL: nothing to keep) and remove the temp dir."""
        try:
            self.stop(kill=True)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pids(self) -> list[int]:
        """The live processes of this instance: the master and what it forked."""
        return [] if self.proc is None else group_members(self.proc.pid)

    def log(self) -> str:
        """Dovecot's log, after anything the master printed before its logging was set up."""
        return "".join(path.read_text(errors="replace")
                       for path in (self.dir / "stdout.log", self.dir / "dovecot.log") if path.exists())

    # -- users and files ----------------------------------------------------------------------------------

    def add_user(self, name: str, password: str) -> None:
        """Add a login, usable at once (no reload).

        Each user has a passwd-file of their own (``users/NAME``, ``NAME:{PLAIN}password``) because Dovecot
        stats a passwd-file at most once per second: a line appended to one shared file in the same second as
        an earlier login stays unknown until the next second. A new file is read at the first lookup."""
        if name in self.users:
            raise ValueError(f"IMAP user {name!r} exists already")
        self.write_user(name, password)
        self.users[name] = password

    def write_user(self, name: str, password: str) -> None:
        if not re.fullmatch(r"[\w.@+-]+", name) or name.startswith("."):
            raise ValueError(f"unsuitable IMAP user name for a file name: {name!r}")
        tmp = self.users_dir / f".{name}.tmp"
        tmp.write_text(f"{name}:{{PLAIN}}{password}\n")
        tmp.chmod(0o644)
        tmp.rename(self.users_dir / name)  # atomic: the auth process never reads half a file

    def maildir(self, user: str, folder: str = "INBOX") -> Path:
        """A folder's maildir (Maildir++, hierarchy separator "."): INBOX is the user's root, ``A.B`` is ``.A.B``."""
        root = self.mail_dir / user
        return root if folder.upper() == "INBOX" else root / f".{folder}"

    # -- IMAP -----------------------------------------------------------------------------------------------

    def client(self, user: str, password: str | None = None, timeout: float = 10) -> IMAPClient:
        """A logged-in IMAPClient (plain IMAP on loopback); ``with`` it to log out. The password defaults to
        the user's; a wrong one raises ``imapclient.exceptions.LoginError``."""
        client = IMAPClient(HOST, port=self.port, ssl=False, timeout=timeout)
        try:
            client.login(user, self.users[user] if password is None else password)
        except BaseException:
            with suppress(Exception):
                client.shutdown()
            raise
        return client

    def append(self, user: str, raw: bytes, folder: str = "INBOX", flags: Iterable[bytes | str] = ()) -> int:
        """APPEND ``raw`` over a short-lived connection; return its UID (Dovecot answers with APPENDUID)."""
        with self.client(user) as imap:
            response = imap.append(folder, raw, flags=tuple(flags))
        match = re.search(rb"\[APPENDUID \d+ (\d+)\]", response)
        assert match, f"no APPENDUID in {response!r}"
        return int(match.group(1))

    def uids(self, user: str, folder: str = "INBOX") -> list[int]:
        with self.client(user) as imap:
            imap.select_folder(folder, readonly=True)
            return sorted(imap.search(["ALL"]))

    def flags(self, user: str, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
        """Flags by UID, read without changing them (``\\Recent`` shows on messages no session has seen)."""
        with self.client(user) as imap:
            imap.select_folder(folder, readonly=True)
            uids = imap.search(["ALL"])
            return dict(imap.get_flags(uids)) if uids else {}

    def messages(self, user: str, folder: str = "INBOX") -> dict[int, bytes]:
        """Raw messages by UID, fetched with ``BODY.PEEK[]`` so that no ``\\Seen`` flag is set."""
        with self.client(user) as imap:
            imap.select_folder(folder, readonly=True)
            uids = imap.search(["ALL"])
            data = imap.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
        return {uid: item[b"BODY[]"] for uid, item in sorted(data.items())}

    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        with self.client(user) as imap:
            return imap.select_folder(folder, readonly=True)[b"UIDVALIDITY"]

    def create_folder(self, user: str, name: str) -> None:
        with self.client(user) as imap:
            imap.create_folder(name)

    def folder_exists(self, user: str, name: str) -> bool:
        with self.client(user) as imap:
            return imap.folder_exists(name)

    def reset_uidvalidity(self, user: str, folder: str = "INBOX", *, restart: bool = False) -> int:
        """Give ``folder`` a new UIDVALIDITY, as a server does when a mailbox is recreated; keep its messages
        and their flags. Returns the new UIDVALIDITY.

        By default the server keeps running (``doveadm mailbox update --uid-validity``, old value + 1); the
        messages keep their UIDs, and Dovecot disconnects any session that has the folder selected.
        With ``restart=True`` Dovecot is killed, the folder's ``dovecot-uidlist`` and index files are
        deleted and it starts again: it then numbers the messages from UID 1 under a UIDVALIDITY of its
        choosing (every client loses its connection)."""
        before = self.uidvalidity(user, folder)
        if restart:
            self.stop(kill=True)  # 10 ms instead of 1 s; the lock and index files it might leave go anyway
            maildir = self.maildir(user, folder)
            for path in maildir.iterdir():
                if path.name.startswith(("dovecot-uidlist", "dovecot.index")):
                    path.unlink()
            self.launch()
        # Dovecot picks the value for a rebuilt mailbox from the clock and the user's dovecot-uidvalidity file,
        # which knows nothing of values set with doveadm: after an earlier online reset it may pick the same.
        if not restart or self.uidvalidity(user, folder) == before:
            self.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(before + 1), folder)
        after = self.uidvalidity(user, folder)
        assert after != before, f"UIDVALIDITY of {user}/{folder} is still {before}"
        return after

    def doveadm(self, *args: str) -> str:
        """Run ``doveadm`` against this instance; return its output, or fail with its error."""
        proc = subprocess.run([str(DOVEADM), "-c", str(self.config), *args], capture_output=True, text=True,
                              timeout=30)
        if proc.returncode != 0:
            raise AssertionError(f"doveadm {' '.join(args)} exited with {proc.returncode}: {proc.stderr}")
        return proc.stdout
