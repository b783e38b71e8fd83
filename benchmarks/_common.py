"""Shared pieces of the benchmarks: a ticketd configuration on free loopback ports, the daemon as a
subprocess, read-only database queries, percentiles and CPU time of a process.

Benchmarks are run by ``make bench``, never by the test suite; they only use loopback addresses and
bound every wait with a timeout.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
STAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

# One configuration template for the test suite and the benchmarks (tests/helpers.py).
sys.path.insert(0, str(ROOT))
from tests.helpers import CONFIG, free_port, query, wait_listening  # noqa: E402

MAX_SIZE = 25 * 1024 * 1024


SMTP_SOURCE = "/usr/sbin/smtp-source"   # Debian's postfix package


def say(text: str) -> None:
    """Progress, on stderr (stdout carries the results)."""
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def smtp_source_path() -> str | None:
    return shutil.which("smtp-source") or (SMTP_SOURCE if os.access(SMTP_SOURCE, os.X_OK) else None)


def run_report(measure: Callable[[Path], dict[str, Any]], prefix: str, keep: bool, as_json: bool,
               print_text: Callable[[dict[str, Any]], None]) -> int:
    """A benchmark's run: ``measure`` in a fresh temporary directory (removed after unless ``keep``), its
    report printed (as JSON with ``as_json``); exit status 1 when it recorded errors, 130 on Ctrl-C."""
    top = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        report = measure(top)
    except KeyboardInterrupt:
        say("interrupted: everything started was stopped")
        return 130
    finally:
        if keep:
            say(f"kept {top}")
        else:
            shutil.rmtree(top, ignore_errors=True)
    if as_json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_text(report)
    return 1 if report["errors"] else 0


class BenchError(Exception):
    """A benchmark could not be measured (a process failed, a wait timed out)."""


def ticketd_command() -> list[str]:
    """The venv's ``ticketd`` console script, next to this interpreter; else ``python -m maild``."""
    script = Path(sys.executable).parent / "ticketd"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "maild"]


class Instance:
    """A configuration file and a fresh state directory under ``root``; optionally a running daemon."""

    def __init__(self, root: Path, extra_config: str = "") -> None:
        self.root = root
        self.state = root / "var"
        self.config = root / "ticketd.toml"
        self.smtp_port = free_port()
        self.lmtp_port = free_port()
        while self.lmtp_port == self.smtp_port:
            self.lmtp_port = free_port()
        # rate_limit=0: the load comes from one address
        self.config.write_text(CONFIG.format(state=self.state, smtp=self.smtp_port, lmtp=self.lmtp_port,
                                             max_size=MAX_SIZE, rate_limit=0, mail_extra="", database="")
                               + extra_config)  # more TOML tables after the template's ([outbound], ...)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "daemon.log"
        self._log: IO[bytes] | None = None

    @property
    def db_path(self) -> Path:
        return self.state / "ticketd.sqlite3"

    def command(self, *args: str) -> list[str]:
        return [*ticketd_command(), "--config", str(self.config), *args]

    def start(self, timeout: float = 30) -> None:
        """Start ``ticketd serve``; return once both listeners accept connections."""
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command("serve"), cwd=ROOT, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log)
        deadline = time.monotonic() + timeout
        for port in (self.smtp_port, self.lmtp_port):
            wait_port(port, self.proc, deadline, lambda: self.log_tail())

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then wait; SIGKILL if it does not exit in time. Returns the exit status."""
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
                raise BenchError(f"ticketd serve did not exit within {timeout:.0f} s of SIGTERM") from None
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def log_tail(self, chars: int = 2000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return query(self.db_path, sql, params)


def wait_port(port: int, proc: subprocess.Popen[bytes], deadline: float, log: Any = None) -> None:
    """Wait until 127.0.0.1:``port`` accepts a connection, failing if ``proc`` exits first."""
    if problem := wait_listening(port, proc.poll, deadline):
        raise BenchError(f"{proc.args!r} {problem}" + (f": {log()}" if log else ""))


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def count_rows(db_path: Path, table: str) -> int:
    if not db_path.exists():
        return 0
    try:
        return int(query(db_path, f"SELECT count(*) FROM {table}")[0][0])
    except sqlite3.OperationalError:  # not created yet, or busy
        return 0


def parse_stamp(text: str) -> datetime:
    return datetime.strptime(text, STAMP_FORMAT).replace(tzinfo=UTC)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between closest ranks."""
    if not values:
        return float("nan")
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def _stat(pid: int) -> list[str]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2:].split()   # fields from the 3rd on: state, ppid, ...


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a live process and its live descendants (Linux /proc; a daemon may
    parse in a pool of worker processes), or None when unknown."""
    try:
        _stat(pid)
    except (OSError, ValueError):
        return None
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    ticks = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            fields = _stat(current)
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
        todo.extend(children.get(current, ()))
    return ticks / os.sysconf("SC_CLK_TCK")


def verdict(value: float | None, target: float, higher_is_better: bool = True) -> str:
    if value is None or value != value:  # None or NaN
        return "MISS"
    ok = value >= target if higher_is_better else value <= target
    return "PASS" if ok else "MISS"
