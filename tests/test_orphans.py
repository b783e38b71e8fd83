"""No orphans: when the daemon dies, even by SIGKILL with its parser processes busy, every process it
started exits by itself within seconds (the worker, the sender, the forkserver, the parsers, the resource
tracker)."""

from __future__ import annotations

import os
import signal
import smtplib
import threading
import time
from pathlib import Path

from tests.helpers import Instance


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of a process, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), fields[0], int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """pid → start time of every process below ``root``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            children.setdefault(st[0], []).append(int(entry))
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if (st := _stat(child)) is not None:
                found[child] = st[2]
                todo.append(child)
    return found


def alive(procs: dict[int, int]) -> list[str]:
    """The processes of ``procs`` still running (a zombie has exited; a reused pid is someone else)."""
    left = []
    for pid, start in procs.items():
        st = _stat(pid)
        if st is not None and st[2] == start and st[1] != "Z":
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            left.append(f"{pid} {cmd[:120]}")
    return left


def parsing(procs: dict[int, int]) -> bool:
    """Whether one of ``procs`` is a parser process at work (running, not waiting for a chunk)."""
    for pid in procs:
        st = _stat(pid)
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if st is not None and st[1] == "R" and b"forkserver" in cmd and st[0] != 1 and _stat(st[0]) is not None \
                and b"forkserver" in Path(f"/proc/{st[0]}/cmdline").read_bytes():
            return True
    return False


def big_mail(i: int) -> bytes:
    """About 700 kB that takes a parser about a second (20,000 MIME parts)."""
    return (b"From: a@client.example\r\nTo: support@helpdesk.example\r\nSubject: large %d\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n" % i
            + b"".join(b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(20000)) + b"--B--\r\n")


def test_sigkill_with_busy_parsers_leaves_no_process_behind(tmp_path: Path):
    inst = Instance(tmp_path, max_size=8 * 1024 * 1024)
    inst.mail_extra = ""
    inst.extra_config = "\n[worker]\nprocess = true\nparsers = 2\nbatch = 20\n"
    inst.write_config()
    inst.start()
    assert inst.proc is not None
    mails = [big_mail(i) for i in range(12)]
    stop = threading.Event()

    def send_backlog() -> None:
        try:
            with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as smtp:
                while not stop.is_set():
                    for raw in mails:
                        smtp.sendmail("alice@client.example", ["support@helpdesk.example"],
                                      raw.replace(b"Subject: large", b"Subject: large %d" % time.monotonic_ns()))
                        if stop.is_set():
                            return
        except (OSError, smtplib.SMTPException):
            pass  # the daemon was killed under it

    sender = threading.Thread(target=send_backlog)
    sender.start()
    try:
        # Wait until the parser pool is up (the worker's grandchildren) with mail in hand.
        deadline = time.monotonic() + 60
        procs: dict[int, int] = {}
        while True:
            procs = descendants(inst.proc.pid)
            if len(procs) >= 6 and parsing(procs):
                break
            assert time.monotonic() < deadline, (procs, inst.daemon_log()[-3000:])
            time.sleep(0.05)
        procs = descendants(inst.proc.pid)
        inst.stop(signal.SIGKILL)
    finally:
        stop.set()
        sender.join(timeout=60)
        if inst.proc is not None:
            inst.stop(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (left := alive(procs)) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert not left, f"still running 10 s after the daemon's SIGKILL: {left}"
    finally:
        for line in left:
            os.kill(int(line.split()[0]), signal.SIGKILL)


def test_a_killed_worker_takes_its_parsers_along_and_is_restarted(tmp_path: Path):
    """The worker SIGKILLed (say by the OOM killer) while its parsers are busy: they die with it, the daemon
    starts a new worker after a second, and the backlog is processed."""
    inst = Instance(tmp_path, max_size=8 * 1024 * 1024)
    inst.extra_config = "\n[worker]\nprocess = true\nparsers = 2\nbatch = 4\n"
    inst.write_config()
    inst.start()
    assert inst.proc is not None
    try:
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as smtp:
            for i in range(8):
                smtp.sendmail("alice@client.example", ["support@helpdesk.example"], big_mail(i))
        deadline = time.monotonic() + 60
        while True:
            worker = [pid for pid in descendants(inst.proc.pid)
                      if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
                      and len(descendants(pid)) >= 3]  # forkserver and two parsers
            if worker and parsing(descendants(worker[0])):
                break
            assert time.monotonic() < deadline, inst.daemon_log()[-3000:]
            time.sleep(0.05)
        procs = descendants(worker[0])
        procs[worker[0]] = _stat(worker[0])[2]  # type: ignore[index]
        os.kill(worker[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (left := alive(procs)) and time.monotonic() < deadline:
            time.sleep(0.1)
        for line in left:  # not to leave them to the rest of the suite
            os.kill(int(line.split()[0]), signal.SIGKILL)
        assert not left, f"still running 10 s after the worker's SIGKILL: {left}"
        rows = inst.wait_outcomes(8, timeout=120)
        assert {r["outcome"] for r in rows} == {"new_ticket"}
    finally:
        assert inst.stop() == 0
    assert 'worker process died; restarting it exitcode=-9 retry_in=1.0s' in inst.daemon_log()
