"""Outbound mail throughput of the outbox sender (run by ``make bench``, not by the test suite).

Postfix's ``smtp-sink`` (a fast C SMTP server that accepts and discards) plays the relay on a free
loopback port. For each ``--connections`` value, on a fresh state directory: ``--messages`` (5,000)
notifications of about 3 KB are queued with ``store.outbox.enqueue`` (not timed), then
``OutboxSender.run_until_empty()`` delivers them through the ``smtp`` transport (one SMTP transaction
per mail, connections reused, each mail marked sent in a group commit right after its 250). The figure
is mails / wall clock of that run; every row must end ``sent`` and smtp-sink must have taken every mail.

Target: >= 500 mails/s with the default ``[outbound] connections``; ``--connections 1,2,4,8`` measures
each (the default run measures the default, then 1/2/4/8 as well if the default misses). ``--profile``
prints the top of a cProfile of one run. ``--json`` for a JSON object instead of text.

Then what notifications cost the inbound pipeline: benchmarks/ingest.py's end-to-end SMTP figure with
notifications on and off. Target: on >= 0.8 x off.

* The figure is ingest.py's (b), measured by its own ``run_ticketd_smtp``: ``smtp-source -s 8 -m N
  -l 4096`` (N = ``--e2e-messages``, 3,000 as in ingest.py) against a fresh ``ticketd serve``, and
  end to end = N / (last import_log processed_at - first spool received_at). That run saturates the
  daemon (the receivers accept faster than the pipeline processes), so the figure is the pipeline's
  capacity, and the mail written per ticket shows up in it. The paced run (b2) is not used: at its
  offered 300 msg/s a pipeline that keeps up scores about 300 msg/s whatever its cost per message, so
  on/off would compare the offered load with itself until one of them falls behind.
* "on", as in production: two staff members added with ``ticketd staff add ... --notify "Technical
  Support"`` (the department smtp-source mails, support@helpdesk.example, goes to), so each new ticket
  queues its event in the pipeline's transaction, and the daemon's outbox sender (a niced process of its
  own) expands it into the client's confirmation and two staff notifications and delivers them
  (``[outbound]`` transport "smtp" to an smtp-sink on a free loopback port, security "none") while the run
  goes on. Once every message has its import_log row the benchmark waits (bounded) for the outbox to empty
  (events not yet expanded count as queued) and prints its rows by state:
  about 3 x N sent, none queued or failed.
* "off": the same instance, staff and relay, with ``[notifications.rules]`` mapping every event to
  ``[]``: nothing is queued (checked: the outbox stays empty).
* Both set ``[notifications] auto_per_hour = 0``: every smtp-source mail comes from one address
  (a@client.example), so the default cap of 10 automatic mails per address and hour would drop all
  but 10 confirmations, and a cap high enough not to bite would count that one address's thousands of
  rows per message, neither of which happens with real clients, one ticket or a few each.
* on and off alternate (on first), each a fresh instance and sink; the figure of each is the median of
  up to ``--e2e-runs`` (3) runs, fewer when another pair would overrun ``--e2e-budget`` seconds. The
  daemon's CPU per message (receiver, pipeline process and sender, up to the last import_log row) comes
  from ingest.py; for "on" also up to the outbox's last delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ingest
from _common import (
    ROOT,
    BenchError,
    Instance,
    count_rows,
    cpu_seconds,
    free_port,
    machine_info,
    say,
    verdict,
    wait_port,
)

from maild import config
from maild.clock import Clock
from maild.desk.events import EVENT_NAMES
from maild.keys import load_or_create_secret
from maild.notify.send import OutboxSender
from maild.notify.tokens import Signer
from maild.store import outbox
from maild.store.db import Database, open_database
from maild.store.outbox import OutboxMail

SMTP_SINK = "/usr/sbin/smtp-sink"
TARGET_PER_S = 500.0
MESSAGE_BYTES = 3 * 1024
QUEUE_BATCH = 500                 # rows per enqueue transaction (setup only)
SENDER = "support@helpdesk.example"

TARGET_E2E_RATIO = 0.8            # end to end with notifications on / off
E2E_DEPARTMENT = "Technical Support"  # where smtp-source's mail (to support@helpdesk.example) goes
E2E_STAFF = (("alice@helpdesk.example", "Alice Agent"), ("bob@helpdesk.example", "Bob Agent"))
OUTBOX_DRAIN_TIMEOUT = 120.0      # seconds for the "on" outbox to empty after the pipeline drained



def smtp_sink_path() -> str | None:
    return shutil.which("smtp-sink") or (SMTP_SINK if os.access(SMTP_SINK, os.X_OK) else None)


def notification(n: int) -> bytes:
    """A ticket notification of about MESSAGE_BYTES, CRLF line ends, as the renderer would write it."""
    head = (f"From: Technical Support <{SENDER}>\r\nTo: client{n}@client.example\r\n"
            f"Subject: [Ticket #{n:06d}] Re: Printer on fire\r\nMessage-ID: <t{n}.bench{n}@helpdesk.example>\r\n"
            f"Date: Thu, 01 Jan 2026 12:00:00 +0000\r\nAuto-Submitted: auto-generated\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
    line = "Our technician has looked at the printer on the third floor and ordered a new fuser unit.\r\n"
    body = line * ((MESSAGE_BYTES - len(head)) // len(line) + 1)
    return (head + body).encode()[:MESSAGE_BYTES - 2] + b"\r\n"


def start_sink(binary: str, port: int) -> subprocess.Popen[bytes]:
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    proc = subprocess.Popen([binary, *user, "-c", f"127.0.0.1:{port}", "1000"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_port(port, proc, time.monotonic() + 10)
    return proc


async def fill(db: Database, messages: int, clock: Clock) -> None:
    for start in range(0, messages, QUEUE_BATCH):
        async with db.transaction():
            for n in range(start, min(messages, start + QUEUE_BATCH)):
                await outbox.enqueue(db, OutboxMail(None, "admin_reply", "client", True, SENDER,
                                                    f"client{n}@client.example", f"<t{n}.bench{n}@helpdesk.example>",
                                                    "Re: Printer on fire", notification(n)), clock.stamp())


async def deliver(settings: config.Settings, messages: int, profile: bool) -> dict[str, Any]:
    clock = Clock()
    db = await open_database(settings.database_url, inline=True)   # as in ticketd serve's sender process
    try:
        await fill(db, messages, clock)
        sender = OutboxSender(db, settings, clock, Signer(load_or_create_secret(settings.secret_path)))
        profiler = cProfile.Profile() if profile else None
        cpu0, started = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        attempts = await sender.run_until_empty()
        if profiler:
            profiler.disable()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu0
        counts = await outbox.counts(db)
    finally:
        await db.close()
    outcomes: dict[str, int] = {}
    for a in attempts:
        outcomes[a.outcome] = outcomes.get(a.outcome, 0) + 1
    result: dict[str, Any] = {"seconds": round(seconds, 3), "per_s": messages / seconds,
                              "sender_cpu_ms_per_mail": round(cpu * 1000 / messages, 3),
                              "commits": sender.commits, "outcomes": outcomes, "states": counts}
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
        result["profile"] = out.getvalue()
    return result


def run_one(binary: str, connections: int, messages: int, top: Path, profile: bool) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"outbox-c{connections}-", dir=top))
    port = free_port()
    inst = Instance(work)
    with open(inst.config, "a") as fh:
        fh.write(f'\n[outbound]\ntransport = "smtp"\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
                 f"connections = {connections}\n")
    settings = config.load(inst.config)
    say(f"connections={connections}: {messages} mails of {MESSAGE_BYTES} bytes -> smtp-sink 127.0.0.1:{port}")
    sink = start_sink(binary, port)
    try:
        sink_cpu0 = cpu_seconds(sink.pid)
        result = asyncio.run(deliver(settings, messages, profile))
        sink_cpu1 = cpu_seconds(sink.pid)
    finally:
        sink.terminate()
        sink.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    if result["states"].get("sent") != messages:
        raise BenchError(f"connections={connections}: {result['states']} after the run (outcomes"
                         f" {result['outcomes']}); expected {messages} sent")
    if sink_cpu0 is not None and sink_cpu1 is not None:
        result["sink_cpu_ms_per_mail"] = round((sink_cpu1 - sink_cpu0) * 1000 / messages, 3)
    result["connections"] = connections
    return result


# --- end to end with notifications on and off: ingest.py's saturating run (b) ---------------------------

def e2e_config(notify: bool, sink_port: int) -> str:
    """TOML appended to the instance's configuration: the relay (both modes) and, for off, no rules."""
    text = (f'\n[outbound]\ntransport = "smtp"\nhost = "127.0.0.1"\nport = {sink_port}\nsecurity = "none"\n'
            f"\n[notifications]\nauto_per_hour = 0\n")
    if not notify:
        text += "\n[notifications.rules]\n" + "".join(f"{event} = []\n" for event in EVENT_NAMES)
    return text


def add_staff(inst: Instance) -> None:
    """Two staff members who get the department's new-ticket mail (before the daemon starts)."""
    for email, name in E2E_STAFF:
        cmd = inst.command("staff", "add", email, "--name", name, "--notify", E2E_DEPARTMENT)
        try:
            proc = subprocess.run(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        except subprocess.TimeoutExpired:
            raise BenchError(f"ticketd staff add {email} did not exit within 60 s") from None
        if proc.returncode != 0:
            raise BenchError(f"ticketd staff add {email} exited {proc.returncode}:"
                             f" {proc.stderr.decode(errors='replace')[-1000:]}")


def outbox_states(inst: Instance) -> dict[str, int]:
    """The outbox's rows by state; events not yet expanded into mail count as queued."""
    events = count_rows(inst.db_path, "notify_queue")
    if count_rows(inst.db_path, "outbox") == 0:
        return {**{state: 0 for state in outbox.STATES}, outbox.QUEUED: events}
    found = {r[0]: int(r[1]) for r in inst.query("SELECT state, count(*) FROM outbox GROUP BY state")}
    states = {**{state: 0 for state in outbox.STATES}, **found}
    states[outbox.QUEUED] += events
    return states


def outbox_drained(inst: Instance, timeout: float) -> dict[str, Any]:
    """``before_stop`` of run_ticketd_smtp: wait (bounded) until nothing is queued; the outbox by state."""
    assert inst.proc is not None
    pid = inst.proc.pid
    cpu0, started = cpu_seconds(pid), time.monotonic()
    deadline = started + timeout
    while (states := outbox_states(inst))[outbox.QUEUED] and time.monotonic() < deadline:
        if inst.proc.poll() is not None:
            raise BenchError(f"ticketd serve exited {inst.proc.returncode}: {inst.log_tail()}")
        time.sleep(0.05)
    cpu1 = cpu_seconds(pid)
    result: dict[str, Any] = {"outbox_states": states, "outbox_tail_s": round(time.monotonic() - started, 3)}
    if states[outbox.SENT]:  # stamps compare as text; how much went out before the pipeline's last row
        result["outbox_sent_during_run"] = int(inst.query(
            "SELECT count(*) FROM outbox WHERE state = ? AND sent_at <= (SELECT max(processed_at) FROM import_log)",
            (outbox.SENT,))[0][0])
    if states[outbox.QUEUED]:
        result["error"] = f"outbox still holds {states[outbox.QUEUED]} queued mails {timeout:.0f} s after the drain"
    if cpu0 is not None and cpu1 is not None:
        result["daemon_cpu_outbox_tail_s"] = round(cpu1 - cpu0, 3)
    return result


def run_e2e(source: str, sink_binary: str, notify: bool, messages: int, top: Path,
            drain_timeout: float) -> dict[str, Any]:
    mode = "on" if notify else "off"
    work = Path(tempfile.mkdtemp(prefix=f"e2e-{mode}-", dir=top))
    port = free_port()
    say(f"end to end, notifications {mode}: relay smtp-sink 127.0.0.1:{port}")
    sink = start_sink(sink_binary, port)
    try:
        result = ingest.run_ticketd_smtp(source, messages, work, drain_timeout, extra_config=e2e_config(notify, port),
                                         prepare=add_staff,
                                         before_stop=lambda inst: outbox_drained(inst, OUTBOX_DRAIN_TIMEOUT))
    finally:
        sink.terminate()
        try:
            sink.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sink.kill()
            sink.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    states = result["outbox_states"]
    if result["logged"] != messages:
        result.setdefault("error", f"only {result['logged']} of {messages} messages logged")
    if notify and (states[outbox.SENT] < 2 * messages or states[outbox.FAILED]):
        result.setdefault("error", f"notifications on, but the outbox holds {states} for {messages} messages")
    if not notify and any(states.values()):
        result.setdefault("error", f"notifications off, but the outbox holds {states}")
    if "daemon_cpu_total_s" in result and "daemon_cpu_outbox_tail_s" in result:
        result["daemon_cpu_ms_per_msg_with_outbox"] = round(
            (result["daemon_cpu_total_s"] + result["daemon_cpu_outbox_tail_s"]) * 1000 / messages, 3)
    result["notify"] = notify
    return result


def measure_e2e(args: argparse.Namespace, top: Path) -> dict[str, Any]:
    """Alternate on/off runs; the median of each, their ratio and the verdict."""
    source, sink_binary = ingest.smtp_source_path(), smtp_sink_path()
    if source is None or sink_binary is None:
        raise BenchError("smtp-source or smtp-sink not found (apt-get install postfix, or make test-deps)")
    started = time.monotonic()
    runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    for i in range(args.e2e_runs):
        pair_started = time.monotonic()
        for notify in (True, False):
            got = run_e2e(source, sink_binary, notify, args.e2e_messages, top, args.drain_timeout)
            if "error" in got:
                raise BenchError(f"notifications {'on' if notify else 'off'}, run {i + 1}: {got['error']}")
            runs["on" if notify else "off"].append(got)
        pair = time.monotonic() - pair_started
        if i + 1 < args.e2e_runs and pair > args.e2e_budget - (time.monotonic() - started):
            say(f"stopping after {i + 1} on/off pair(s): another would exceed the {args.e2e_budget:.0f} s budget")
            break
    report: dict[str, Any] = {"messages": args.e2e_messages, "target_ratio": TARGET_E2E_RATIO}
    for mode, done in runs.items():
        report[mode] = {"e2e_per_s": ingest.median_of(done, "e2e_per_s"), "runs": done}
        for key in ("daemon_cpu_ms_per_msg", "daemon_cpu_ms_per_msg_with_outbox"):
            if all(key in r for r in done):
                report[mode][key] = ingest.median_of(done, key)
    ratio = report["on"]["e2e_per_s"] / report["off"]["e2e_per_s"]
    report.update(ratio=ratio, verdict=verdict(ratio, TARGET_E2E_RATIO), seconds=round(time.monotonic() - started, 1))
    return report


def print_e2e(e2e: dict[str, Any]) -> None:
    print(f"\nend to end SMTP ingest (benchmarks/ingest.py (b): smtp-source -s {ingest.SESSIONS} -m {e2e['messages']}"
          f" -l {ingest.MESSAGE_SIZE}, accepted -> import_log), notifications on and off:")
    for mode in ("on", "off"):
        r = e2e[mode]
        runs = r["runs"]
        cpu = f"; daemon CPU {r['daemon_cpu_ms_per_msg']:.2f} ms/msg" if "daemon_cpu_ms_per_msg" in r else ""
        if "daemon_cpu_ms_per_msg_with_outbox" in r and mode == "on":
            cpu += f" ({r['daemon_cpu_ms_per_msg_with_outbox']:.2f} up to the outbox's last delivery)"
        print(f"notifications {mode:<3} {r['e2e_per_s']:8.0f} msg/s   (median of {len(runs)}:"
              f" {ingest._runs(runs, 'e2e_per_s')}; accepted {ingest._runs(runs, 'accepted_per_s')} msg/s{cpu})")
        last = runs[-1]
        outcomes = ", ".join(f"{k} {v}" for k, v in last["outcomes"].items())
        states = ", ".join(f"{k} {v}" for k, v in last["outbox_states"].items())
        tail = (f"; {last.get('outbox_sent_during_run', 0)} sent by the last import_log row, the outbox empty"
                f" {last['outbox_tail_s']:.2f} s after it" if mode == "on" else "")
        print(f"    last run: outcomes {outcomes}; outbox {states}{tail}")
        for n, run in enumerate(runs, 1):
            if run["log_problems"]:
                print(f"    run {n}: daemon log {run['log_problems']}")
    print(f"ratio on/off             {e2e['ratio']:8.2f}         target >= {e2e['target_ratio']}   {e2e['verdict']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--connections", metavar="N,N,...",
                        help="connection counts to measure (default: the configured default, then 1,2,4,8 if"
                             " it misses the target)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the default run")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--e2e-messages", type=int, default=3000, help="smtp-source messages per on/off run (3000)")
    parser.add_argument("--e2e-runs", type=int, default=3, help="on/off pairs, median taken (3)")
    parser.add_argument("--e2e-budget", type=float, default=170,
                        help="seconds for the on/off pairs; fewer pairs beyond it (170)")
    parser.add_argument("--drain-timeout", type=float, default=60,
                        help="seconds to wait for the pipeline to log every message (60)")
    parser.add_argument("--no-e2e", action="store_true", help="only the outbox sender's figure")
    args = parser.parse_args()
    binary = smtp_sink_path()
    if binary is None:
        print("smtp-sink not found (apt-get install postfix, or make test-deps)", file=sys.stderr)
        return 1
    default = config.OutboundSettings().connections
    top = Path(tempfile.mkdtemp(prefix="ticketd-bench-outbox-"))
    report: dict[str, Any] = {"machine": machine_info(), "messages": args.messages, "message_bytes": MESSAGE_BYTES,
                              "default_connections": default, "target_per_s": TARGET_PER_S, "runs": []}
    try:
        wanted = [int(c) for c in args.connections.split(",")] if args.connections else [default]
        for n in wanted:
            report["runs"].append(run_one(binary, n, args.messages, top, args.profile and n == wanted[0]))
        first = report["runs"][0]
        if not args.connections and first["per_s"] < TARGET_PER_S:
            say(f"the default ({default} connections) misses {TARGET_PER_S:.0f}/s: measuring 1, 2, 4, 8")
            for n in (1, 2, 4, 8):
                report["runs"].append(run_one(binary, n, args.messages, top, False))
        if not args.no_e2e:
            report["e2e"] = measure_e2e(args, top)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(top, ignore_errors=True)
    judged = next((r for r in report["runs"] if r["connections"] == default), report["runs"][0])
    report["verdict"] = verdict(judged["per_s"], TARGET_PER_S)
    if args.json:
        json.dump({**report, "runs": [{k: v for k, v in r.items() if k != "profile"} for r in report["runs"]]},
                  sys.stdout, indent=2, default=str)
        print()
        return 0
    m = report["machine"]
    print(f"ticketd outbound benchmark: {m['cpus']} CPUs (load average "
          f"{' '.join(f'{x:.2f}' for x in m['load_average_at_start'])} at start), Python {m['python']},"
          f" {args.messages} mails of {MESSAGE_BYTES} bytes to smtp-sink")
    for r in report["runs"]:
        sink = f", smtp-sink CPU {r['sink_cpu_ms_per_mail']:.3f} ms/mail" if "sink_cpu_ms_per_mail" in r else ""
        mark = f"   target >= {TARGET_PER_S:.0f}/s   {report['verdict']}" if r is judged else ""
        print(f"connections={r['connections']:<2} {r['per_s']:8.0f} mails/s   ({r['seconds']:.2f} s; sender CPU"
              f" {r['sender_cpu_ms_per_mail']:.3f} ms/mail{sink}; {r['commits']} commits){mark}")
    if "e2e" in report:
        print_e2e(report["e2e"])
    for r in report["runs"]:
        if "profile" in r:
            print(f"\nprofile (connections={r['connections']}):\n{r['profile']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
