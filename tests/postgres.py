"""A throwaway PostgreSQL server for tests: its own temp dir, cluster and loopback port.

    server = PostgresServer()
    server.start()                 # initdb, pg_ctl start, template database ticketd_template
    url = server.new_database()    # postgresql://ticketd@127.0.0.1:PORT/t1_PID, a copy of the template
    server.stop()                  # pg_ctl -m fast stop, temp dir removed

PostgreSQL refuses to run as root, so as root initdb and pg_ctl run as the ``postgres`` user (``su``) and
the temp dir belongs to that user; otherwise they run as ourselves. Admin SQL goes through ``psql``, so no
Python driver is needed. A server left running at exit (or on SIGTERM) is stopped then.
"""

from __future__ import annotations

import atexit
import itertools
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

HOST = "127.0.0.1"
USER = "ticketd"
TEMPLATE = "ticketd_template"
INSTALL_HINT = "run `make test`, which installs it, or `apt-get install postgresql`"
_live: set[PostgresServer] = set()
_busy = 0  # server programs running now (see _on_sigterm)
_term_pending = False


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` holding initdb and pg_ctl, else ``pg_config --bindir``."""
    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(p) for p in path.parent.name.split(".") if p.isdigit())

    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout
        if out.strip():
            candidates.append(Path(out.strip()))
    return next((d for d in candidates if (d / "initdb").is_file() and (d / "pg_ctl").is_file()), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _stop_all() -> None:
    for server in list(_live):
        server.stop()


def _on_sigterm(signum: int, frame: object) -> None:
    """Stop our servers, then die of SIGTERM as we would have without this handler. While a server program
    runs (initdb, pg_ctl) this waits for it: stopping mid-start could leave a postmaster behind."""
    global _term_pending
    if _busy:
        _term_pending = True  # _run calls us again when its program has finished
        return
    _stop_all()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


class PostgresServer:
    """One cluster on a free loopback port; ``start()`` it, ``new_database()`` per test, always ``stop()``."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        """``settings``: server settings given at start (``-c NAME=VALUE``), for those that need a restart."""
        self.settings = dict(settings or {})
        self.bin_dir = find_bin_dir()
        self.dir: Path | None = None
        self.port = 0
        self._names = itertools.count(1)

    def start(self) -> None:
        if self.bin_dir is None:
            raise RuntimeError(f"PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL_HINT}")
        assert self.dir is None, "already started"
        self.dir = Path(tempfile.mkdtemp(prefix="ticketd-postgres-", dir="/tmp"))
        self.dir.chmod(0o755)  # /tmp itself is 1777: the postgres user can enter it
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(f"running as root and there is no `postgres` user: {INSTALL_HINT}") from None
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)  # data dir, socket and log go in here
        _live.add(self)
        if len(_live) == 1 and threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            initdb = ["initdb", "-D", "data", "-A", "trust", "-U", USER, "--no-sync", "-E", "UTF8"]
            if self._run(*initdb, "--locale=C.UTF-8", check=False):
                shutil.rmtree(self.dir / "data", ignore_errors=True)
                self._run(*initdb, "--no-locale")  # no C.UTF-8 locale on this system
            for attempt in range(3):  # another program may take the free port before the postmaster binds it
                self.port = free_port()
                options = f"-k {self.dir} -c listen_addresses={HOST} -p {self.port} -c max_connections=200"
                options += "".join(f" -c {name}={value}" for name, value in self.settings.items())
                if self._run("pg_ctl", "-D", "data", "-o", options, "-l", "log", "-t", "60", "-w", "start",
                             check=False) == 0:
                    break
                if attempt == 2 or "could not bind" not in self.log():
                    raise RuntimeError(f"PostgreSQL did not start:\n{self.log()}")
            self.psql(f"CREATE DATABASE {TEMPLATE} IS_TEMPLATE = true")
        except BaseException:
            self.stop()
            raise

    def new_database(self) -> str:
        """A new, empty database made from the template; returns its URL."""
        name = f"t{next(self._names)}_{os.getpid()}"
        self.psql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return self.url(name)

    def url(self, name: str = "postgres") -> str:
        return f"postgresql://{USER}@{HOST}:{self.port}/{name}"

    def psql(self, sql: str, url: str | None = None) -> str:
        """Run ``sql`` with psql (in the ``postgres`` database by default); returns its output."""
        assert self.bin_dir is not None
        cmd = [str(self.bin_dir / "psql"), "-v", "ON_ERROR_STOP=1", "-X", "-q", "-d", url or self.url(), "-c", sql]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=60, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"psql -c {sql!r} exited with {proc.returncode}: {proc.stderr}")
        return proc.stdout

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are cut off) and remove the temp dir. Idempotent."""
        try:
            if self.dir is not None and (self.dir / "data" / "postmaster.pid").exists():
                if self._run("pg_ctl", "-D", "data", "-m", "fast", "-t", "30", "-w", "stop", check=False):
                    self._run("pg_ctl", "-D", "data", "-m", "immediate", "-w", "stop", check=False)
        finally:
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
            _live.discard(self)  # last: a SIGTERM arriving before this still finds the server

    def log(self) -> str:
        path = self.dir / "log" if self.dir else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def _run(self, program: str, *args: str, check: bool = True) -> int:
        """Run a server program in the temp dir (as the postgres user when we are root); return its status.
        On Ctrl-C it is left to finish: killing ``su`` would not stop initdb or pg_ctl, nor a late postmaster."""
        global _busy
        assert self.bin_dir is not None and self.dir is not None
        cmd = [str(self.bin_dir / program), *args]
        if os.geteuid() == 0:
            cmd = ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(cmd)]
        _busy += 1
        try:
            with subprocess.Popen(cmd, cwd=self.dir, env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) as proc:
                try:
                    out = proc.communicate(timeout=120)[0]
                except subprocess.TimeoutExpired:
                    proc.kill()
                    raise
                except BaseException:
                    proc.communicate(timeout=120)
                    raise
        finally:
            _busy -= 1
            if _term_pending and not _busy:
                _on_sigterm(signal.SIGTERM, None)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{program} exited with {proc.returncode}:\n{out}")
        return proc.returncode


def _env() -> dict[str, str]:
    """Our environment without PG* variables (PGHOST, PGDATA...), which would override what we pass."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


atexit.register(_stop_all)
