"""IMAP import throughput and memory of ticketd against a real Dovecot (run by hand or ``make bench``).

Setup (not timed, but its duration is printed): a Dovecot from ``tests.dovecot`` on a free loopback port,
one user, and ``--messages`` (5,000) APPENDed to its INBOX over one connection: four in five are ~4 KB
text mails built with ``EmailMessage``, every fifth a message of the shared corpus (files over 1 MB
skipped) whose Message-ID is replaced by a unique one, so that nothing is deduplicated.

Figures, each printed with its target and PASS/MISS (``--json`` for a JSON object instead):

(a) ``ticketd imap sync --once --json`` on a fresh state directory: N / wall clock from the start of the
    process to its exit (import, then processing into tickets); it must report N spooled and N outcomes
    with no ``failed``;
(b) the peak RSS of that process and its descendants: the ``ru_maxrss`` of the largest single process
    among ticketd and the descendants it reaped (like RUSAGE_CHILDREN), measured by GNU time, which
    starts ticketd (see ``Tracked``); without /usr/bin/time, the largest VmHWM sampled from /proc. The
    peak sum over its process group, sampled from /proc every 100 ms, is printed beside it;
(c) ``ticketd serve`` with the same account on another fresh state directory: N / the time from its
    start until the import_log holds N rows (the initial catch-up sync, messages already in the mailbox);
    then one more message is APPENDed while it IDLEs and the time until it is logged is printed; then
    SIGTERM, which must end it with status 0.

Everything listens on 127.0.0.1, every wait is bounded, and the Dovecot and temporary directories are
removed even on error.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from _common import (
    CORPUS,
    ROOT,
    BenchError,
    Instance,
    count_rows,
    machine_info,
    query,
    run_report,
    say,
    verdict,
    wait_listening,
)
from ingest import with_message_id

USER = "bench"
PASSWORD = "bench-secret"
ACCOUNT = "bench-inbox"
TEXT_BYTES = 4096
CORPUS_EVERY = 5                  # every fifth message comes from the corpus
CORPUS_MAX_BYTES = 1024 * 1024
TARGET_PER_S = 200.0              # (a) msg/s
TARGET_RSS_MB = 300.0             # (b) MB
SAMPLE_SECONDS = 0.1              # /proc sampling and database polling interval
GNU_TIME = Path("/usr/bin/time")  # Debian package "time"

LINES = [
    "The printer on the third floor jams on every second page since the firmware update.",
    "Our invoice for March lists the same licence twice; could you correct it please?",
    "I cannot log in to the portal any more: it says my password expired yesterday.",
    "The VPN drops every twenty minutes when I work from home over the mobile hotspot.",
    "Please add two more seats to our team plan and send the quote to accounting.",
    "Since this morning the shared calendar shows every meeting one hour late.",
]



def dovecot_class() -> Any:
    """``tests.dovecot.Dovecot``, importable once the repository root is on sys.path."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.dovecot import Dovecot

    return Dovecot


def dovecot_version() -> str:
    from tests.dovecot import DOVECOT

    try:
        out = subprocess.run([str(DOVECOT), "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return out.stdout.strip() or out.stderr.strip()


# --- the mailbox ----------------------------------------------------------------------------------------

def text_mail(n: int) -> bytes:
    """A ~4 KB plain-text mail with its own Message-ID, sender, subject and body."""
    msg = EmailMessage()
    msg["From"] = f"Client {n % 97} <client{n % 97}@customer{n % 13}.example>"
    msg["To"] = "support@helpdesk.example"
    msg["Subject"] = f"IMAP benchmark request {n}: {LINES[n % len(LINES)][:40]}"
    msg["Date"] = "Mon, 03 Mar 2025 09:15:00 +0000"
    msg["Message-ID"] = f"<imapbench.text.{n}@bench.example>"
    body = [f"Hello helpdesk (request {n}),", ""]
    i = n
    while sum(len(line) + 1 for line in body) < TEXT_BYTES - 600:
        body.append(LINES[i % len(LINES)])
        i += 7
    body += ["", "Regards,", f"Client {n % 97}"]
    msg.set_content("\n".join(body) + "\n")
    return msg.as_bytes()


def corpus_raws() -> list[tuple[str, bytes]]:
    files = sorted(p for p in CORPUS.rglob("*.eml") if p.stat().st_size <= CORPUS_MAX_BYTES)
    if not files:
        raise BenchError(f"no .eml files of at most {CORPUS_MAX_BYTES} bytes under {CORPUS}")
    return [(str(p.relative_to(CORPUS)), p.read_bytes()) for p in files]


def build_messages(count: int) -> tuple[list[bytes], int]:
    """The messages to append, and how many of them come from the corpus."""
    corpus = corpus_raws()
    out: list[bytes] = []
    from_corpus = 0
    for n in range(count):
        if n % CORPUS_EVERY == CORPUS_EVERY - 1:
            _, raw = corpus[from_corpus % len(corpus)]
            out.append(with_message_id(raw, f"imapbench.corpus.{n}@bench.example"))
            from_corpus += 1
        else:
            out.append(text_mail(n))
    return out, from_corpus


def fill_mailbox(server: Any, messages: list[bytes]) -> float:
    """APPEND every message over one connection; return the seconds it took."""
    started = time.perf_counter()
    with server.client(USER, timeout=30) as imap:
        for n, raw in enumerate(messages, 1):
            imap.append("INBOX", raw)
            if n % 1000 == 0:
                say(f"appended {n} of {len(messages)} ({n / (time.perf_counter() - started):.0f}/s)")
        seconds = time.perf_counter() - started
        exists = int(imap.select_folder("INBOX", readonly=True)[b"EXISTS"])
    if exists != len(messages):
        raise BenchError(f"INBOX holds {exists} messages after appending {len(messages)}")
    return seconds


# --- processes -------------------------------------------------------------------------------------------

def imap_config(port: int) -> str:
    settings = {"name": ACCOUNT, "host": "127.0.0.1", "port": port, "security": "none", "username": USER,
                "password": PASSWORD, "department": "Technical Support"}
    return "\n[[imap]]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items()) + "\n"


def new_instance(top: Path, prefix: str, port: int) -> Instance:
    inst = Instance(Path(tempfile.mkdtemp(prefix=prefix, dir=top)))
    with inst.config.open("a") as f:
        f.write(imap_config(port))
    return inst


def ticketd(inst: Instance, *args: str) -> list[str]:
    return [sys.executable, "-m", "maild", "--config", str(inst.config), *args]


def group_rss(pgid: int, exclude: int | None = None) -> tuple[int, int, list[int]]:
    """(sum of VmRSS, largest VmHWM, pids) in KB over the live processes of process group ``pgid``
    other than ``exclude``."""
    total = hwm = 0
    pids: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == exclude:
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) != pgid or fields[0] == "Z":
                continue
            status = Path(f"/proc/{entry}/status").read_text()
        except (OSError, ValueError, IndexError):
            continue
        pids.append(int(entry))
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = max(hwm, int(line.split()[1]))
    return total, hwm, pids


def child_of(parent: int) -> int | None:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat[stat.rindex(")") + 2:].split()[1]) == parent:
                    return int(entry)
            except (OSError, ValueError, IndexError):
                continue
    return None


class Tracked:
    """A ticketd subprocess in its own process group, its group's memory sampled from /proc on every ``poll``.

    The kernel's ru_maxrss of a process we fork and exec starts at our own RSS at the fork (exec keeps
    the old image's high-water mark), and so does RUSAGE_CHILDREN, so ``ticketd`` is started by GNU time
    (about 1 MB): its ``%M`` is the ru_maxrss of ticketd and the descendants it reaped, unpolluted."""

    def __init__(self, cmd: list[str], out: Path, err: Path) -> None:
        self.err_path = err
        self.rss_path = err.with_suffix(".maxrss")
        self.wrapped = GNU_TIME.exists()
        if self.wrapped:
            cmd = [str(GNU_TIME), "-f", "%M", "-o", str(self.rss_path), *cmd]
        self.args = cmd
        with out.open("wb") as o, err.open("wb") as e:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=o, stderr=e,
                                         start_new_session=True)
        self.started = time.perf_counter()
        self.pgid = self.proc.pid
        self.exit_code: int | None = None
        self.seconds = 0.0
        self.maxrss_kb: int | None = None  # GNU time's %M: ticketd and the descendants it reaped
        self.peak_sum_kb = 0        # sampled: all live processes of the group at once
        self.peak_hwm_kb = 0        # sampled: the largest VmHWM of a live process of the group
        self.max_processes = 0
        self._main: int | None = None if self.wrapped else self.proc.pid

    @property
    def main_pid(self) -> int | None:
        """ticketd's pid (GNU time's child when wrapped)."""
        if self._main is None and self.exit_code is None:
            self._main = child_of(self.proc.pid)
        return self._main

    def poll(self) -> int | None:
        if self.exit_code is not None:
            return self.exit_code
        total, hwm, pids = group_rss(self.pgid, exclude=self.proc.pid if self.wrapped else None)
        self.peak_sum_kb = max(self.peak_sum_kb, total)
        self.peak_hwm_kb = max(self.peak_hwm_kb, hwm)
        self.max_processes = max(self.max_processes, len(pids))
        pid, status = os.waitpid(self.proc.pid, os.WNOHANG)
        if pid == 0:
            return None
        self._reaped(status)
        return self.exit_code

    def _reaped(self, status: int) -> None:
        self.seconds = time.perf_counter() - self.started
        self.exit_code = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.exit_code  # reaped here: Popen must not wait for it again
        if self.wrapped:  # "Command exited with non-zero status N" may come first
            with suppress(OSError, ValueError, IndexError):
                self.maxrss_kb = int(self.rss_path.read_text().split()[-1])

    def terminate(self) -> None:
        pid = self.main_pid
        if pid is None:
            raise BenchError("cannot find the ticketd process to send SIGTERM to")
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        """Wait for the exit, sampling memory meanwhile; a pidfd wakes us at the exit itself, so the wall
        time is not rounded up to the sampling interval."""
        deadline = time.monotonic() + timeout
        pidfd = None
        with suppress(OSError, AttributeError):
            pidfd = os.pidfd_open(self.proc.pid)
        try:
            while (code := self.poll()) is None:
                if time.monotonic() > deadline:
                    self.kill()
                    raise BenchError(f"{' '.join(self.args[-4:])} did not exit within {timeout:.0f} s:"
                                     f" {self.log_tail()}")
                if pidfd is None:
                    time.sleep(SAMPLE_SECONDS)
                else:
                    select.select([pidfd], [], [], SAMPLE_SECONDS)
        finally:
            if pidfd is not None:
                os.close(pidfd)
        return code

    def leftovers(self) -> list[int]:
        """Processes of the group still alive after ticketd exited (orphaned parser or worker processes)."""
        deadline = time.monotonic() + 5
        while (pids := group_rss(self.pgid)[2]) and time.monotonic() < deadline:
            time.sleep(0.1)
        return pids

    def kill(self) -> None:
        """SIGKILL the whole group (ours: started with its own session) and reap its leader."""
        with suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        if self.exit_code is None:
            with suppress(ChildProcessError):
                self._reaped(os.waitpid(self.proc.pid, 0)[1])

    def log_tail(self, chars: int = 800) -> str:
        return self.err_path.read_text(errors="replace")[-chars:] if self.err_path.exists() else ""


def rss_figures(job: Tracked) -> dict[str, Any]:
    """The peak RSS figures of a finished job, in MB; ``peak_rss_mb`` is the one judged."""
    sampled = job.peak_hwm_kb / 1024
    exact = job.maxrss_kb / 1024 if job.maxrss_kb is not None else None
    return {
        "peak_rss_mb": exact if exact is not None else sampled,
        "peak_rss_method": "GNU time ru_maxrss" if exact is not None else "largest sampled VmHWM",
        "maxrss_mb": exact,
        "sampled_peak_hwm_mb": sampled,
        "sampled_peak_sum_mb": job.peak_sum_kb / 1024,
        "max_processes": job.max_processes,
    }


def progress_rates(log: Path) -> list[dict[str, str]]:
    """The ``imap import progress`` lines of a daemon log, as key=value dicts (with the time stamp)."""
    rows = []
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        if " imap import progress " not in line:
            continue
        row = {"at": line.split(" ", 1)[0]}
        for part in line.split(" imap import progress ", 1)[1].split():
            key, _, value = part.partition("=")
            row[key] = value
        rows.append(row)
    return rows


def log_problems(log: Path) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        parts = line.split(" ", 3)
        if len(parts) > 2 and parts[1] in ("ERROR", "WARNING", "CRITICAL"):
            counts[parts[1]] = counts.get(parts[1], 0) + 1
            counts.setdefault("first", line[:300])
    return counts


def db_outcomes(inst: Instance) -> dict[str, int]:
    """import_log outcomes as ``ticketd`` labels them (``blocked:REASON``)."""
    rows = inst.query("SELECT CASE WHEN outcome = 'blocked' AND reason != '' THEN 'blocked:' || reason"
                      " ELSE outcome END AS label, count(*) AS n FROM import_log GROUP BY label ORDER BY label")
    return {r["label"]: int(r["n"]) for r in rows}


def check_outcomes(outcomes: dict[str, int], messages: int, what: str) -> list[str]:
    problems = []
    if sum(outcomes.values()) != messages:
        problems.append(f"{what}: outcomes add up to {sum(outcomes.values())}, not {messages}")
    if outcomes.get("failed"):
        problems.append(f"{what}: {outcomes['failed']} messages failed")
    return problems


def failed_detail(inst: Instance) -> str:
    try:
        rows = inst.query("SELECT message_id, detail FROM import_log WHERE outcome = 'failed' LIMIT 1")
    except sqlite3.Error:
        return ""
    return f"{rows[0]['message_id']}: {rows[0]['detail'][-1500:]}" if rows else ""


# --- (a)/(b): imap sync --once ------------------------------------------------------------------------

def run_sync(top: Path, port: int, messages: int, timeout: float) -> dict[str, Any]:
    inst = new_instance(top, "sync-", port)
    say(f"ticketd imap sync --once --json ({messages} messages)")
    err = inst.root / "sync.log"
    job = Tracked(ticketd(inst, "imap", "sync", "--once", "--json"), inst.root / "sync.json", err)
    try:
        code = job.wait(timeout)
        leftovers = job.leftovers()
    finally:
        job.kill()  # whatever is left of its group; nothing if it all exited
    stdout = (inst.root / "sync.json").read_text(errors="replace")
    if code != 0:
        raise BenchError(f"ticketd imap sync exited {code}: {stdout[-500:]} {job.log_tail()}")
    report = json.loads(stdout)
    entry = report["accounts"][ACCOUNT]
    outcomes = report["outcomes"]
    problems = []
    if entry["error"]:
        problems.append(f"(a): the account reported an error: {entry['error']}")
    if entry["spooled"] != messages:
        problems.append(f"(a): spooled {entry['spooled']} of {messages}")
    problems += check_outcomes(outcomes, messages, "(a)")
    if outcomes.get("failed"):
        problems.append(f"(a): first failure: {failed_detail(inst)}")
    if leftovers:
        problems.append(f"(a): processes {leftovers} of ticketd's group were alive after it exited")
    result = {
        "messages": messages,
        "seconds": round(job.seconds, 3),
        "per_s": messages / job.seconds,
        "spooled": entry["spooled"],
        "outcomes": outcomes,
        "db_outcomes": db_outcomes(inst),
        **rss_figures(job),
        "progress": progress_rates(err),
        "log_problems": log_problems(err),
        "problems": problems,
    }
    return result


# --- (c): ticketd serve -------------------------------------------------------------------------------------

def wait_rows(inst: Instance, job: Tracked, table: str, count: int, deadline: float) -> float:
    """Poll until ``table`` has ``count`` rows; return the seconds since ``job`` started."""
    while (done := count_rows(inst.db_path, table)) < count:
        if job.poll() is not None:
            raise BenchError(f"ticketd serve exited {job.exit_code} with {done} of {count} {table} rows:"
                             f" {job.log_tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"only {done} of {count} {table} rows after the timeout: {job.log_tail()}")
        time.sleep(SAMPLE_SECONDS / 2)
    return time.perf_counter() - job.started


def imap_state(inst: Instance) -> str:
    try:
        rows = query(inst.db_path, "SELECT state FROM imap_status WHERE account = ?", (ACCOUNT,))
    except sqlite3.Error:
        return ""
    return rows[0]["state"] if rows else ""


def run_serve(top: Path, server: Any, messages: int, timeout: float) -> dict[str, Any]:
    inst = new_instance(top, "serve-", server.port)
    say(f"ticketd serve: catch-up import of {messages} messages")
    err = inst.root / "daemon.log"
    job = Tracked(ticketd(inst, "serve"), inst.root / "serve.out", err)
    problems: list[str] = []
    result: dict[str, Any] = {"messages": messages}
    try:
        if problem := wait_listening(inst.smtp_port, job.poll, time.monotonic() + 30):  # job.poll reaps
            raise BenchError(f"ticketd serve {problem}: {job.log_tail()}")
        deadline = time.monotonic() + timeout
        result["spooled_seconds"] = round(wait_rows(inst, job, "inbound", messages, deadline), 3)
        seconds = wait_rows(inst, job, "import_log", messages, deadline)
        result.update(seconds=round(seconds, 3), per_s=messages / seconds)
        outcomes = db_outcomes(inst)
        result["outcomes"] = outcomes
        problems += check_outcomes(outcomes, messages, "(c)")
        if outcomes.get("failed"):
            problems.append(f"(c): first failure: {failed_detail(inst)}")
        # One more message while it IDLEs: how soon it is pushed and logged.
        idle_deadline = time.monotonic() + 30
        while imap_state(inst) != "idle":
            if time.monotonic() > idle_deadline or job.poll() is not None:
                raise BenchError(f"the account never went idle (state {imap_state(inst)!r}): {job.log_tail()}")
            time.sleep(SAMPLE_SECONDS / 2)
        appended = time.perf_counter()
        server.append(USER, text_mail(messages))  # Message-ID imapbench.text.N: new
        wait_rows(inst, job, "import_log", messages + 1, time.monotonic() + 30)
        result["idle_push_ms"] = (time.perf_counter() - appended) * 1000
        # Stop: SIGTERM must end it with status 0.
        stop_started = time.perf_counter()
        job.terminate()
        code = job.wait(60)
        result["stop_seconds"] = round(time.perf_counter() - stop_started, 3)
        result["exit_code"] = code
        if code != 0:
            problems.append(f"(c): ticketd serve exited {code} after SIGTERM: {job.log_tail()}")
        leftovers = job.leftovers()
        if leftovers:
            problems.append(f"(c): processes {leftovers} of ticketd's group were alive after it exited")
    finally:
        job.kill()
    result.update(rss_figures(job), progress=progress_rates(err), log_problems=log_problems(err),
                  problems=problems)
    return result


# --- the whole run ----------------------------------------------------------------------------------------

def measure(args: argparse.Namespace, top: Path) -> dict[str, Any]:
    started = time.monotonic()
    report: dict[str, Any] = {
        "machine": machine_info(),
        "errors": [],
    }
    errors: list[str] = report["errors"]
    Dovecot = dovecot_class()
    report["dovecot"] = dovecot_version()
    built = time.perf_counter()
    messages, from_corpus = build_messages(args.messages)
    build_seconds = time.perf_counter() - built
    server = Dovecot.start(users={USER: PASSWORD})
    try:
        say(f"Dovecot {report['dovecot']} on 127.0.0.1:{server.port}; appending {len(messages)} messages")
        append_seconds = fill_mailbox(server, messages)
        report["setup"] = {
            "messages": len(messages),
            "from_corpus": from_corpus,
            "bytes": sum(map(len, messages)),
            "build_seconds": round(build_seconds, 3),
            "append_seconds": round(append_seconds, 3),
            "append_per_s": len(messages) / append_seconds,
        }
        del messages
        for key, fn in (("sync", lambda: run_sync(top, server.port, args.messages, args.timeout)),
                        ("serve", lambda: run_serve(top, server, args.messages, args.timeout))):
            try:
                got = fn()
            except (BenchError, OSError, ValueError, KeyError, sqlite3.Error) as exc:
                errors.append(f"{key}: {exc}")
                say(f"{key} FAILED: {exc}")
                continue
            report[key] = got
            errors.extend(got.pop("problems"))
            if got["log_problems"]:
                say(f"{key}: daemon log {got['log_problems']}")
    finally:
        server.cleanup()
    sync = report.get("sync")
    if sync:
        sync.update(target_per_s=TARGET_PER_S, verdict=verdict(sync["per_s"], TARGET_PER_S),
                    target_rss_mb=TARGET_RSS_MB,
                    rss_verdict=verdict(sync["peak_rss_mb"], TARGET_RSS_MB, higher_is_better=False))
    report["total_seconds"] = round(time.monotonic() - started, 1)
    return report


def rates(progress: list[dict[str, str]]) -> str:
    """The importer's own per_second figures, a few of them."""
    if not progress:
        return "no progress lines"
    picks = progress if len(progress) <= 6 else [progress[i * (len(progress) - 1) // 5] for i in range(6)]
    return ", ".join(f"{p.get('done')}: {p.get('per_second')}/s" for p in picks)


def print_text(report: dict[str, Any]) -> None:
    m = report["machine"]
    load = " ".join(f"{x:.2f}" for x in m["load_average_at_start"])
    print(f"ticketd IMAP import benchmark: {m['cpus']} CPUs (load average {load} at start), Python {m['python']},"
          f" Dovecot {report['dovecot']}")
    setup = report.get("setup")
    if setup:
        print(f"setup: {setup['messages']} messages ({setup['from_corpus']} from the corpus,"
              f" {setup['bytes'] / 1e6:.1f} MB) built in {setup['build_seconds']:.1f} s, APPENDed over one"
              f" connection in {setup['append_seconds']:.1f} s ({setup['append_per_s']:.0f}/s)")
    sync = report.get("sync")
    if sync:
        print(f"(a) imap sync --once            {sync['per_s']:8.0f} msg/s   target >= {TARGET_PER_S:.0f}"
              f"   {sync['verdict']}   ({sync['messages']} msgs in {sync['seconds']:.2f} s wall;"
              f" spooled {sync['spooled']})")
        print(f"    outcomes: {', '.join(f'{k} {v}' for k, v in sync['outcomes'].items())}")
        print(f"    importer progress (done: per_second): {rates(sync['progress'])}")
        print(f"(b) peak RSS                    {sync['peak_rss_mb']:8.0f} MB      target <= {TARGET_RSS_MB:.0f}"
              f"   {sync['rss_verdict']}   ({sync['peak_rss_method']}: the largest single process among"
              f" ticketd and its descendants)")
        print(f"    sampled every {SAMPLE_SECONDS * 1000:.0f} ms: peak sum over the process group"
              f" {sync['sampled_peak_sum_mb']:.0f} MB, largest VmHWM {sync['sampled_peak_hwm_mb']:.0f} MB,"
              f" up to {sync['max_processes']} processes")
        if sync["log_problems"]:
            print(f"    daemon log {sync['log_problems']}")
    else:
        print("(a)/(b) not measured")
    serve = report.get("serve")
    if serve and "per_s" in serve:
        print(f"(c) serve, catch-up import      {serve['per_s']:8.0f} msg/s   (no target; {serve['messages']}"
              f" msgs logged {serve['seconds']:.2f} s after start, all spooled at {serve['spooled_seconds']:.2f} s)")
        print(f"    outcomes: {', '.join(f'{k} {v}' for k, v in serve['outcomes'].items())}")
        print(f"    importer progress (done: per_second): {rates(serve['progress'])}")
        if "idle_push_ms" in serve:
            print(f"    IDLE: one more message APPENDed -> logged in {serve['idle_push_ms']:.0f} ms")
        if "exit_code" in serve:
            print(f"    SIGTERM -> exit {serve['exit_code']} in {serve['stop_seconds']:.2f} s;"
                  f" peak RSS {serve['peak_rss_mb']:.0f} MB, sampled peak sum {serve['sampled_peak_sum_mb']:.0f} MB"
                  f" over up to {serve['max_processes']} processes")
        if serve["log_problems"]:
            print(f"    daemon log {serve['log_problems']}")
    else:
        print("(c) not measured")
    for err in report["errors"]:
        print(f"ERROR {err}")
    print(f"total {report['total_seconds']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--messages", type=int, default=5000, help="messages in the mailbox (5000)")
    parser.add_argument("--timeout", type=float, default=300,
                        help="seconds allowed for each import, sync and serve (300)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (not Dovecot's)")
    args = parser.parse_args(argv)
    if args.messages < 1:
        parser.error("--messages must be at least 1")
    return run_report(lambda top: measure(args, top), "ticketd-bench-imap-", args.keep, args.json, print_text)


if __name__ == "__main__":
    raise SystemExit(main())
