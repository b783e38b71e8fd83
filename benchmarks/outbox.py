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

from _common import BenchError, Instance, cpu_seconds, free_port, machine_info, verdict, wait_port

from maild import config
from maild.clock import Clock
from maild.keys import load_or_create_secret
from maild.notify.send import OutboxSender
from maild.notify.tokens import Signer
from maild.store import outbox
from maild.store.db import Database
from maild.store.outbox import OutboxMail

SMTP_SINK = "/usr/sbin/smtp-sink"
TARGET_PER_S = 500.0
MESSAGE_BYTES = 3 * 1024
QUEUE_BATCH = 500                 # rows per enqueue transaction (setup only)
SENDER = "support@helpdesk.example"


def say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


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
    db = await Database.open(settings.db_path)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--connections", metavar="N,N,...",
                        help="connection counts to measure (default: the configured default, then 1,2,4,8 if"
                             " it misses the target)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the default run")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
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
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(top, ignore_errors=True)
    judged = next((r for r in report["runs"] if r["connections"] == default), report["runs"][0])
    report["verdict"] = verdict(judged["per_s"], TARGET_PER_S)
    if args.json:
        json.dump({**report, "runs": [{k: v for k, v in r.items() if k != "profile"} for r in report["runs"]]},
                  sys.stdout, indent=2)
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
    for r in report["runs"]:
        if "profile" in r:
            print(f"\nprofile (connections={r['connections']}):\n{r['profile']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
