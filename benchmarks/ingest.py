"""Inbound mail throughput of ticketd (run by ``make bench``, not by the test suite).

Figures, each printed with its target and PASS/MISS (``--json`` for a JSON object instead):

(a) accepted msg/s: ``smtp-source -s 8 -m N -l 4096`` against ``ticketd serve`` (wall clock of the run);
(b) end to end (accepted -> import_log row committed): N / (max(processed_at) - min(received_at)), and
    the p50/p99 of processed_at - received_at per message, during that saturating run (no verdict:
    the pipeline falls behind the receivers there, so its latency only measures the backlog);
(b2) the same end-to-end figures at a steady offered load (``--paced-rate`` msg/s of 4 KB mail for
    ``--paced-seconds``, default 300 msg/s for 10 s) against a fresh ``ticketd serve``: small
    smtp-source batches started on a fixed timetable. The achieved offered rate is measured from the
    spool's received_at stamps. The (b) target, >= 300 msg/s with p99 <= 200 ms, is judged here;
(c) the same smtp-source run against a no-op aiosmtpd sink in its own process, and the ratio (a)/(c);
(d) ``ticketd ingest`` of 2,000 .eml files cycled from the shared corpus, each with a fresh Message-ID;
(e) the median wall time of one ``ticketd pipe`` delivery (4 KB mail) with a warm state directory.

(a) and (c) alternate, and each is the median of up to ``--runs`` runs while the time budget allows.
Everything listens on 127.0.0.1 and every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from _common import (
    CORPUS,
    ROOT,
    BenchError,
    Instance,
    count_rows,
    cpu_seconds,
    free_port,
    machine_info,
    parse_stamp,
    percentile,
    run_report,
    say,
    smtp_source_path,
    ticketd_command,
    verdict,
    wait_port,
)

SENDER = "a@client.example"
RECIPIENT = "support@helpdesk.example"
MESSAGE_SIZE = 4096
SESSIONS = 8

TARGET_RATIO = 0.5        # (a)/(c)
TARGET_E2E = 300.0        # msg/s end to end at a steady offered load, judged on (b2)
TARGET_P99_MS = 200.0     # p99 of accepted -> import_log row committed, judged on (b2)
PACED_TICK = 0.05         # (b2): seconds between smtp-source batch starts
PACED_SESSIONS = 2        # (b2): sessions per smtp-source batch
PACED_MAX_IN_FLIGHT = 100  # (b2): give up when this many batches are still running (server stuck)
TARGET_INGEST = 800.0     # msg/s (issue 10, on 2 cores)
TARGET_PIPE_MS = 100.0    # median wall time

_MESSAGE_ID_FIELD = re.compile(rb"(?i)message-id[ \t]*:")
_HEADER_END = re.compile(rb"\r?\n\r?\n")



# --- smtp-source ------------------------------------------------------------------------------------


def run_smtp_source(binary: str, port: int, messages: int, timeout: float) -> float:
    """Send ``messages`` with smtp-source to 127.0.0.1:``port``; return the wall-clock seconds."""
    cmd = [binary, "-s", str(SESSIONS), "-m", str(messages), "-l", str(MESSAGE_SIZE),
           "-f", SENDER, "-t", RECIPIENT, f"127.0.0.1:{port}"]
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"smtp-source did not finish {messages} messages within {timeout:.0f} s") from None
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-1000:]
        raise BenchError(f"smtp-source exited {proc.returncode}: {err}")
    return seconds


# --- (a) + (b): ticketd serve -------------------------------------------------------------------------

def header_summary(raw: bytes) -> dict[str, Any]:
    """What one smtp-source message looks like: its header fields and body size."""
    m = _HEADER_END.search(raw)
    head = raw[: m.start()] if m else raw
    body = raw[m.end():] if m else b""
    fields = [line.decode(errors="replace") for line in re.split(rb"\r?\n", head) if line]
    return {"headers": fields, "body_bytes": len(body), "body_start": body[:40].decode(errors="replace")}


def log_problems(path: Path) -> dict[str, Any]:
    """How many ERROR/WARNING lines the daemon logged, and the first of them."""
    counts: dict[str, Any] = {}
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return counts
    for line in text.splitlines():
        parts = line.split(" ", 3)
        if len(parts) > 2 and parts[1] in ("ERROR", "WARNING", "CRITICAL"):
            counts[parts[1]] = counts.get(parts[1], 0) + 1
            counts.setdefault("first", line[:300])
    return counts


def body_digest(raw: bytes) -> str:
    m = _HEADER_END.search(raw)
    return hashlib.sha256(raw[m.end():] if m else b"").hexdigest()


def wait_drained(inst: Instance, messages: int, timeout: float, poll: float) -> str:
    """Wait until every message has its import-log row: "" then, else how far it got by ``timeout``."""
    assert inst.proc is not None
    deadline = time.monotonic() + timeout
    while (done := count_rows(inst.db_path, "import_log")) < messages:
        if inst.proc.poll() is not None:
            raise BenchError(f"ticketd serve exited {inst.proc.returncode}: {inst.log_tail()}")
        if time.monotonic() > deadline:
            return f"only {done} of {messages} import_log rows {timeout:.0f} s after"
        time.sleep(poll)
    return ""


def logged_rows(inst: Instance) -> list[Any]:
    return inst.query("SELECT i.received_at, l.processed_at, l.outcome, l.message_id"
                      " FROM import_log l JOIN inbound i ON i.id = l.inbound_id ORDER BY i.id")


def stopped_cleanly(inst: Instance, code: int, rows: list[Any]) -> dict[str, Any]:
    """The daemon's log problems, once it is known to have stopped well and to have logged something."""
    problems = log_problems(inst.log_path)
    if code != 0:
        raise BenchError(f"ticketd serve exited {code} after SIGTERM (expected 0): {inst.log_tail()}")
    if not rows:
        raise BenchError(f"no import_log rows at all: {problems or inst.log_tail()}")
    return problems


def end_to_end(rows: list[Any]) -> dict[str, Any]:
    """Arrival (spool) to outcome (import log) figures over the logged rows."""
    received = [parse_stamp(r["received_at"]) for r in rows]
    processed = [parse_stamp(r["processed_at"]) for r in rows]
    latencies = [(p - r).total_seconds() for r, p in zip(received, processed, strict=True)]
    span = (max(processed) - min(received)).total_seconds()
    outcomes: dict[str, int] = {}
    for r in rows:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    return {
        "logged": len(rows),
        "e2e_seconds": round(span, 3),
        "e2e_per_s": len(rows) / span if span > 0 else float("inf"),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p90_s": percentile(latencies, 90),
        "latency_p99_s": percentile(latencies, 99),
        "latency_max_s": max(latencies),
        "drain_after_last_accept_s": (max(processed) - max(received)).total_seconds(),
        "outcomes": dict(sorted(outcomes.items())),
        "distinct_message_ids": len({r["message_id"] for r in rows}),
    }


def run_ticketd_smtp(binary: str, messages: int, work: Path, drain_timeout: float, extra_config: str = "",
                     prepare: Callable[[Instance], None] | None = None,
                     before_stop: Callable[[Instance], dict[str, Any]] | None = None) -> dict[str, Any]:
    """(a) and (b) on a fresh instance. ``extra_config`` is TOML appended to the instance's configuration,
    ``prepare(inst)`` runs before the daemon starts (e.g. ``ticketd staff add``), and ``before_stop(inst)``
    once the pipeline has drained, with the daemon still running; its dict joins the result. The defaults
    (nothing added) are ingest.py's own run; benchmarks/outbox.py uses them for notifications on/off."""
    inst = Instance(work, extra_config)
    if prepare is not None:
        prepare(inst)
    say(f"ticketd serve: smtp-source -s {SESSIONS} -m {messages} -l {MESSAGE_SIZE}"
        f" -> 127.0.0.1:{inst.smtp_port}")
    result: dict[str, Any] = {}
    try:
        inst.start()
        assert inst.proc is not None
        pid = inst.proc.pid
        cpu0 = cpu_seconds(pid)
        seconds = run_smtp_source(binary, inst.smtp_port, messages, timeout=max(60.0, messages / 20))
        cpu1 = cpu_seconds(pid)
        accepted = count_rows(inst.db_path, "inbound")
        if accepted != messages:
            raise BenchError(f"smtp-source finished but the spool holds {accepted} of {messages} messages")
        if incomplete := wait_drained(inst, messages, drain_timeout, 0.05):  # keep (a); (b) covers the rest
            result["error"] = f"(b) incomplete: {incomplete} smtp-source finished"
        cpu2 = cpu_seconds(pid)
        rows = logged_rows(inst)
        spooled = inst.query("SELECT received_at, raw FROM inbound ORDER BY id")
        spool_stamps = [r[0] for r in spooled]
        raws = [bytes(r[1]) for r in spooled]
        if before_stop is not None:
            result.update(before_stop(inst))
    finally:
        code = inst.stop()
    problems = stopped_cleanly(inst, code, rows)
    # One received_at stamp per spool group commit: how often the spool committed, and its longest pause.
    commits = sorted({parse_stamp(stamp) for stamp in spool_stamps})
    gaps = [(b - a).total_seconds() for a, b in zip(commits, commits[1:], strict=False)]
    received = [parse_stamp(r["received_at"]) for r in rows]
    result.update(
        end_to_end(rows),
        messages=messages,
        log_problems=problems,
        seconds=round(seconds, 3),
        accepted_per_s=messages / seconds,
        spool_span_s=(max(received) - min(received)).total_seconds(),
        spool_commits=len(commits),
        spool_commit_gap_p50_ms=percentile(gaps, 50) * 1000,
        spool_commit_gap_max_ms=max(gaps, default=0.0) * 1000,
        distinct_bodies=len({body_digest(raw) for raw in raws}),
        sample=header_summary(raws[0]) if raws else {},
        daemon_exit=code,
    )
    if cpu0 is not None and cpu1 is not None and cpu2 is not None:
        result.update(daemon_cpu_accept_s=round(cpu1 - cpu0, 3), daemon_cpu_total_s=round(cpu2 - cpu0, 3),
                      daemon_cpu_ms_per_msg=round((cpu2 - cpu0) * 1000 / messages, 3))
    return result


# --- (b2): ticketd serve at a steady offered load ------------------------------------------------------

def e2e_target_floor(messages: int) -> float:
    """The lowest end-to-end figure that still meets the (b) target over ``messages`` messages.

    N / (last processed_at - first received_at) over a finite run of N messages arriving at exactly
    TARGET_E2E msg/s spans (N - 1) / TARGET_E2E plus the last message's latency, so it stays a little
    under TARGET_E2E even for a pipeline that keeps up perfectly; with that latency at the p99 bound
    (TARGET_P99_MS) it is N / ((N - 1) / TARGET_E2E + TARGET_P99_MS / 1000): 294.2 msg/s for 3000."""
    return messages / ((messages - 1) / TARGET_E2E + TARGET_P99_MS / 1000)


def paced_plan(rate: float, seconds: float) -> list[int]:
    """Messages per smtp-source batch, one batch every PACED_TICK s: round(rate * seconds) in all."""
    total = max(1, round(rate * seconds))
    ticks = max(1, round(seconds / PACED_TICK))
    return [round(total * (k + 1) / ticks) - round(total * k / ticks) for k in range(ticks)]


def run_paced_source(binary: str, port: int, plan: list[int], work: Path, timeout: float) -> dict[str, Any]:
    """Start one smtp-source batch of ``plan[k]`` messages at t0 + k * PACED_TICK (open loop: batches
    start on time whether or not the previous ones finished); wait for all of them.

    Each batch names itself in -M (HELO and the Message-Id domain), so Message-IDs stay distinct across
    batches even if a pid is reused. Returns the client's own figures (launch lag, batches in flight,
    CPU time of the pacer and of the smtp-source processes)."""
    errlog = work / "smtp-source.err"
    running: list[tuple[int, subprocess.Popen[bytes]]] = []
    failed: list[str] = []
    lags: list[float] = []
    max_in_flight = 0
    cpu_self0, children0 = time.process_time(), os.times()

    def reap() -> None:
        for item in list(running):
            n, proc = item
            if proc.poll() is not None:
                running.remove(item)
                if proc.returncode != 0:
                    failed.append(f"batch of {n} exited {proc.returncode}")

    with open(errlog, "ab") as err:
        t0 = time.monotonic()
        deadline = t0 + timeout
        try:
            for k, n in enumerate(plan):
                delay = t0 + k * PACED_TICK - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                lags.append(max(0.0, -delay))
                reap()
                if len(running) >= PACED_MAX_IN_FLIGHT:
                    raise BenchError(f"{len(running)} smtp-source batches still running at"
                                     f" {k * PACED_TICK:.1f} s: the server does not keep up with accepting")
                if n:
                    cmd = [binary, "-s", str(min(PACED_SESSIONS, n)), "-m", str(n), "-l", str(MESSAGE_SIZE),
                           "-M", f"b{k}.paced.bench.example", "-f", SENDER, "-t", RECIPIENT,
                           f"127.0.0.1:{port}"]
                    running.append((n, subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                                        stdout=subprocess.DEVNULL, stderr=err)))
                max_in_flight = max(max_in_flight, len(running))
            last_start = time.monotonic()
            while running:
                reap()
                if time.monotonic() > deadline:
                    raise BenchError(f"{len(running)} smtp-source batches still running {timeout:.0f} s"
                                     f" after the first one started")
                time.sleep(0.005)
            finished = time.monotonic()
        finally:
            for _, proc in running:
                proc.kill()
                proc.wait(timeout=10)
    if failed:
        tail = errlog.read_text(errors="replace").strip()[-1000:]
        raise BenchError(f"{len(failed)} smtp-source batches failed ({failed[0]}): {tail}")
    children1 = os.times()
    return {
        "batches": sum(1 for n in plan if n),
        "client_seconds": finished - t0,
        "client_per_s": sum(plan) / (finished - t0),
        "tail_after_last_start_s": finished - last_start,
        "launch_lag_max_ms": max(lags, default=0.0) * 1000,
        "max_batches_in_flight": max_in_flight,
        "pacer_cpu_s": time.process_time() - cpu_self0,
        "smtp_source_cpu_s": (children1.children_user + children1.children_system
                              - children0.children_user - children0.children_system),
    }


def run_ticketd_paced(binary: str, rate: float, seconds: float, work: Path,
                      drain_timeout: float) -> dict[str, Any]:
    plan = paced_plan(rate, seconds)
    messages = sum(plan)
    inst = Instance(work)
    say(f"ticketd serve, paced: {messages} msgs at {rate:g} msg/s offered ({len(plan)} smtp-source batches"
        f" of ~{max(plan)}, -s {PACED_SESSIONS} -l {MESSAGE_SIZE}, every {PACED_TICK * 1000:.0f} ms)"
        f" -> 127.0.0.1:{inst.smtp_port}")
    result: dict[str, Any] = {"offered_rate": rate, "offered_seconds": seconds, "messages": messages}
    try:
        inst.start()
        assert inst.proc is not None
        pid = inst.proc.pid
        cpu0 = cpu_seconds(pid)
        client = run_paced_source(binary, inst.smtp_port, plan, work, timeout=seconds + 60)
        accepted = count_rows(inst.db_path, "inbound")
        if accepted != messages:
            raise BenchError(f"smtp-source finished but the spool holds {accepted} of {messages} messages")
        if incomplete := wait_drained(inst, messages, drain_timeout, 0.02):
            result["error"] = f"(b2) incomplete: {incomplete} the last smtp-source batch finished"
        cpu1 = cpu_seconds(pid)
        rows = logged_rows(inst)
        spool_stamps = [r[0] for r in inst.query("SELECT received_at FROM inbound ORDER BY id")]
    finally:
        code = inst.stop()
    problems = stopped_cleanly(inst, code, rows)
    # The offered load as the server saw it: arrivals per second over the spool's received_at stamps.
    spooled = sorted(parse_stamp(stamp) for stamp in spool_stamps)
    first = spooled[0]
    spool_span = (spooled[-1] - first).total_seconds()
    per_second: dict[int, int] = {}
    for stamp in spooled:
        second = int((stamp - first).total_seconds())
        per_second[second] = per_second.get(second, 0) + 1
    full_seconds = [per_second.get(s, 0) for s in range(int(spool_span))]  # the last, partial one left out
    result.update(client)
    result.update(
        end_to_end(rows),
        log_problems=problems,
        achieved_offered_per_s=(len(spooled) - 1) / spool_span if spool_span > 0 else float("inf"),
        spool_span_s=spool_span,
        spool_per_second_min=min(full_seconds, default=len(spooled)),
        spool_per_second_max=max(full_seconds, default=len(spooled)),
        spool_commits=len(set(spool_stamps)),
        daemon_exit=code,
    )
    if cpu0 is not None and cpu1 is not None:
        result.update(daemon_cpu_s=round(cpu1 - cpu0, 3),
                      daemon_cpu_ms_per_msg=round((cpu1 - cpu0) * 1000 / messages, 3))
    floor = e2e_target_floor(len(rows))
    complete = len(rows) == messages and "error" not in result
    result.update(
        target_per_s=TARGET_E2E,
        target_floor_per_s=floor,
        target_p99_ms=TARGET_P99_MS,
        verdict="PASS" if (complete and verdict(result["e2e_per_s"], floor) == "PASS"
                           and verdict(result["latency_p99_s"] * 1000, TARGET_P99_MS, False) == "PASS")
        else "MISS",
    )
    return result


# --- (c): the no-op aiosmtpd sink, in its own process ------------------------------------------------

def sink_main(listen: str) -> int:
    """``--sink HOST:PORT``: an aiosmtpd server whose handle_DATA returns 250 and does nothing else.

    Built like ticketd's listener (same SMTP options) so that the ratio measures ticketd's own work.
    On SIGTERM it prints the number of messages it accepted and exits 0."""
    from aiosmtpd.smtp import SMTP, Envelope, Session

    host, _, port = listen.rpartition(":")

    class Sink(SMTP):
        line_length_limit = 1 << 20

    class Handler:
        count = 0

        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            self.count += 1
            return "250 OK"

    async def serve() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        handler = Handler()

        def factory() -> SMTP:
            return Sink(handler, hostname="helpdesk.example", ident="sink ESMTP",
                        data_size_limit=25 * 1024**2, enable_SMTPUTF8=True, decode_data=False, loop=loop)

        server = await loop.create_server(factory, host=host, port=int(port))
        await stop.wait()
        server.close()
        await server.wait_closed()
        return handler.count

    count = asyncio.run(serve())
    print(json.dumps({"messages": count}), flush=True)
    return 0


def run_sink(binary: str, messages: int) -> dict[str, Any]:
    port = free_port()
    say(f"no-op aiosmtpd sink: smtp-source -s {SESSIONS} -m {messages} -l {MESSAGE_SIZE} -> 127.0.0.1:{port}")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--sink", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        wait_port(port, proc, time.monotonic() + 30)
        cpu0 = cpu_seconds(proc.pid)
        seconds = run_smtp_source(binary, port, messages, timeout=max(60.0, messages / 20))
        cpu1 = cpu_seconds(proc.pid)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    if proc.returncode != 0:
        raise BenchError(f"the sink exited {proc.returncode}: {err.decode(errors='replace')[-1000:]}")
    got = json.loads(out.decode().strip().splitlines()[-1])["messages"]
    if got != messages:
        raise BenchError(f"the sink accepted {got} of {messages} messages")
    result: dict[str, Any] = {"messages": messages, "seconds": round(seconds, 3),
                              "accepted_per_s": messages / seconds}
    if cpu0 is not None and cpu1 is not None:
        result["sink_cpu_ms_per_msg"] = round((cpu1 - cpu0) * 1000 / messages, 3)
    return result


# --- (d): ticketd ingest of the corpus ----------------------------------------------------------------

def with_message_id(raw: bytes, message_id: str) -> bytes:
    """``raw`` with its first Message-ID field (and its folded lines) dropped and a fresh one on top.

    The new field goes first, after a leading mbox ``From `` line if there is one; every other byte
    stays as it was. The line ending follows the message's first line."""
    lines = raw.splitlines(keepends=True)
    eol = b"\r\n" if lines and lines[0].endswith(b"\r\n") else b"\n"
    i = 0
    while i < len(lines) and lines[i] not in (b"\n", b"\r\n", b"\r"):  # the header block
        if _MESSAGE_ID_FIELD.match(lines[i]):
            end = i + 1
            while end < len(lines) and lines[end][:1] in (b" ", b"\t") and lines[end].strip():
                end += 1
            del lines[i:end]
            break
        i += 1
    at = 1 if lines and lines[0].startswith(b"From ") else 0
    lines.insert(at, f"Message-ID: <{message_id}>".encode() + eol)
    return b"".join(lines)


def build_corpus_copies(dest: Path, count: int) -> list[Path]:
    files = sorted(CORPUS.rglob("*.eml"))
    if not files:
        raise BenchError(f"no .eml files under {CORPUS}")
    dest.mkdir(parents=True, exist_ok=True)
    raws = [f.read_bytes() for f in files]
    for n in range(count):
        (dest / f"{n:05d}.eml").write_bytes(with_message_id(raws[n % len(raws)], f"bench.{n}@bench.example"))
    return files


def run_ingest(messages: int, work: Path) -> dict[str, Any]:
    inst = Instance(work)
    folder = work / "eml"
    sources = build_corpus_copies(folder, messages)
    say(f"ticketd ingest: {messages} .eml files cycled from {len(sources)} corpus files")
    cmd = inst.command("ingest", str(folder), "--department", "Technical Support", "--json")
    busy_before = machine_busy_seconds()
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=max(120.0, messages / 10))
    except subprocess.TimeoutExpired:
        raise BenchError("ticketd ingest timed out") from None
    seconds = time.perf_counter() - started
    busy = machine_busy_seconds() - busy_before
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace")[-2000:]
        raise BenchError(f"ticketd ingest exited {proc.returncode}: {err}")
    summary = json.loads(proc.stdout)
    if summary["messages"] != messages:
        raise BenchError(f"ticketd ingest reported {summary['messages']} of {messages} messages")
    return {
        "messages": messages,
        "corpus_files": len(sources),
        "seconds": round(seconds, 3),
        "reported_seconds": summary["seconds"],
        "per_s": messages / seconds,
        "outcomes": summary["outcomes"],
        # What limits (d): the whole machine's CPU per message (all of ticketd's processes, and anything
        # else running), and of that the parsing alone, measured apart on the same files.
        "machine_cpu_ms_per_msg": busy * 1000 / messages,
        "parse_cpu_ms_per_msg": parse_cpu_ms(sorted(folder.glob("*.eml"))[:PARSE_SAMPLE], work),
    }


PARSE_SAMPLE = 400


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: everything but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def parse_cpu_ms(files: list[Path], work: Path) -> float:
    """CPU milliseconds per message of the pipeline's parse step (what the parser processes do: parse,
    judge and store attachments), here in this process."""
    from maild.config import load
    from maild.pipeline.prepare import parse_all
    from maild.store.blobs import BlobSpec

    raws = [f.read_bytes() for f in files]
    spec = BlobSpec("files", work / "parse-blobs")
    policy = load(None, state_dir=work / "parse-state").attachments.policy   # the embedded default config's
    parse_all(raws[:10], spec, policy)   # imports and first-use costs out of the figure
    started = time.process_time()
    parse_all(raws, spec, policy)
    return (time.process_time() - started) * 1000 / len(raws)


# --- (e): ticketd pipe ----------------------------------------------------------------------------------

def pipe_message(n: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alice Client <alice@client.example>"
    msg["To"] = RECIPIENT
    msg["Subject"] = f"Pipe benchmark {n}"
    msg["Message-ID"] = f"<pipe.{n}@bench.example>"
    line = "The printer on the third floor is on fire again; please send help.\n"
    msg.set_content(line * (MESSAGE_SIZE // len(line) + 1))
    return msg.as_bytes()


def run_pipe(runs: int, work: Path) -> dict[str, Any]:
    inst = Instance(work)
    cmd = inst.command("pipe", "--sender", "alice@client.example", "--recipient", RECIPIENT)
    say(f"ticketd pipe: 1 warm-up + {runs} runs of {' '.join(cmd[:1])} ... pipe")
    times: list[float] = []
    for n in range(runs + 1):
        data = pipe_message(n)
        started = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, input=data, capture_output=True, timeout=30)
        except subprocess.TimeoutExpired:
            raise BenchError("ticketd pipe did not exit within 30 s") from None
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            raise BenchError(f"ticketd pipe exited {proc.returncode}: {proc.stderr.decode(errors='replace')}")
        if n:  # the first run creates the database
            times.append(elapsed)
    spooled = count_rows(inst.db_path, "inbound")
    if spooled != runs + 1:
        raise BenchError(f"the spool holds {spooled} of {runs + 1} piped messages")
    return {
        "runs": runs,
        "command": ticketd_command(),
        "message_bytes": len(pipe_message(0)),
        "median_ms": statistics.median(times) * 1000,
        "min_ms": min(times) * 1000,
        "p90_ms": percentile(times, 90) * 1000,
    }


# --- the whole run ----------------------------------------------------------------------------------

def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def measure(args: argparse.Namespace, top: Path) -> dict[str, Any]:
    started = time.monotonic()
    report: dict[str, Any] = {
        "machine": machine_info(),
        "errors": [],
    }
    errors: list[str] = report["errors"]

    def cleanup(work: Path) -> None:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    def attempt(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        try:
            return fn()
        except (BenchError, OSError, ValueError, KeyError) as exc:
            errors.append(f"{name}: {exc}")
            say(f"{name} FAILED: {exc}")
            return None

    binary = smtp_source_path()
    serve_runs: list[dict[str, Any]] = []
    sink_runs: list[dict[str, Any]] = []
    if binary is None:
        errors.append("smtp-source not found (apt-get install postfix): (a), (b), (c) skipped")
    else:
        for i in range(args.runs):
            pair_started = time.monotonic()
            work = Path(tempfile.mkdtemp(prefix=f"serve{i}-", dir=top))
            got = attempt(f"(a)/(b) run {i + 1}", lambda work=work: run_ticketd_smtp(
                binary, args.messages, work, args.drain_timeout))
            if got:
                serve_runs.append(got)
                if "error" in got:
                    errors.append(f"(a)/(b) run {i + 1}: {got['error']}")
                    say(got["error"])
                if got["log_problems"]:
                    say(f"daemon log: {got['log_problems']}")
            cleanup(work)
            got = attempt(f"(c) run {i + 1}", lambda: run_sink(binary, args.messages))
            if got:
                sink_runs.append(got)
            pair = time.monotonic() - pair_started
            left = args.budget - (time.monotonic() - started) - args.reserve
            if i + 1 < args.runs and pair > left:
                say(f"stopping after {i + 1} run(s) of (a)/(c): another would exceed the"
                    f" {args.budget:.0f} s budget")
                break
    if serve_runs:
        report["smtp"] = {
            "accepted_per_s": median_of(serve_runs, "accepted_per_s"),
            "e2e_per_s": median_of(serve_runs, "e2e_per_s"),
            "latency_p50_s": median_of(serve_runs, "latency_p50_s"),
            "latency_p99_s": median_of(serve_runs, "latency_p99_s"),
            "runs": serve_runs,
        }
    if sink_runs:
        report["sink"] = {"accepted_per_s": median_of(sink_runs, "accepted_per_s"), "runs": sink_runs}
    if serve_runs and sink_runs:
        ratio = report["smtp"]["accepted_per_s"] / report["sink"]["accepted_per_s"]
        report["ratio"] = {"value": ratio, "target": TARGET_RATIO, "verdict": verdict(ratio, TARGET_RATIO)}

    if binary is not None:
        work = Path(tempfile.mkdtemp(prefix="paced-", dir=top))
        got = attempt("(b2) paced", lambda: run_ticketd_paced(
            binary, args.paced_rate, args.paced_seconds, work, args.drain_timeout))
        cleanup(work)
        if got:
            report["paced"] = got
            if "error" in got:
                errors.append(f"(b2): {got['error']}")
                say(got["error"])
            if got["log_problems"]:
                say(f"daemon log: {got['log_problems']}")

    work = Path(tempfile.mkdtemp(prefix="ingest-", dir=top))
    got = attempt("(d) ingest", lambda: run_ingest(args.ingest_messages, work))
    cleanup(work)
    if got:
        got.update(target=TARGET_INGEST, verdict=verdict(got["per_s"], TARGET_INGEST))
        report["ingest"] = got

    work = Path(tempfile.mkdtemp(prefix="pipe-", dir=top))
    got = attempt("(e) pipe", lambda: run_pipe(args.pipe_runs, work))
    cleanup(work)
    if got:
        got.update(target=TARGET_PIPE_MS,
                   verdict=verdict(got["median_ms"], TARGET_PIPE_MS, higher_is_better=False))
        report["pipe"] = got
    report["total_seconds"] = round(time.monotonic() - started, 1)
    return report


def _runs(runs: list[dict[str, Any]], key: str, fmt: str = "{:.0f}") -> str:
    return " ".join(fmt.format(r[key]) for r in runs)


def smtp_source_note(run: dict[str, Any]) -> str:
    sample = run.get("sample") or {}
    names = [h.split(":", 1)[0] for h in sample.get("headers", [])]
    mid = next((h.split(":", 1)[1].strip() for h in sample.get("headers", [])
                if h.lower().startswith("message-id:")), None)
    outcomes = ", ".join(f"{k} {v}" for k, v in run["outcomes"].items())
    return (f"smtp-source messages: header fields {', '.join(names) or 'none'}"
            f"{f' (e.g. Message-Id {mid})' if mid else ' (no Message-ID)'}; "
            f"body {sample.get('body_bytes', '?')} bytes of numbered 'XXX...' lines; "
            f"{run['distinct_message_ids']} distinct Message-IDs and {run['distinct_bodies']} distinct bodies"
            f" in {run['messages']} messages -> outcomes: {outcomes}")


def print_paced(paced: dict[str, Any] | None) -> None:
    if not paced:
        print(f"(b2) not measured: the (b) target (>= {TARGET_E2E:.0f} msg/s, p99 <= {TARGET_P99_MS:.0f} ms)"
              f" is not judged   MISS")
        return
    print(f"(b2) end to end, paced          {paced['e2e_per_s']:8.0f} msg/s   "
          f"p50 {paced['latency_p50_s'] * 1000:.0f} ms, p99 {paced['latency_p99_s'] * 1000:.0f} ms "
          f"at {paced['offered_rate']:g} msg/s offered ({paced['achieved_offered_per_s']:.1f} achieved)")
    print(f"    (b) target, judged on (b2): >= {paced['target_per_s']:.0f} msg/s end to end"
          f" (>= {paced['target_floor_per_s']:.1f} over {paced['logged']} msgs: a steady"
          f" {paced['target_per_s']:.0f} msg/s with the last message logged {TARGET_P99_MS:.0f} ms after"
          f" its arrival) and p99 <= {paced['target_p99_ms']:.0f} ms   {paced['verdict']}")
    if paced["logged"] < paced["messages"]:
        print(f"    INCOMPLETE: {paced['logged']} of {paced['messages']} messages logged in time")
    if paced["achieved_offered_per_s"] < 0.99 * paced["offered_rate"]:
        print(f"    NOTE: the achieved offered rate is under {paced['offered_rate']:g} msg/s: the server did"
              f" not accept at the offered rate, or the client fell behind")
    if paced["log_problems"]:
        print(f"    daemon log {paced['log_problems']}")
    outcomes = ", ".join(f"{k} {v}" for k, v in paced["outcomes"].items())
    print(f"    offered: {paced['messages']} msgs of {MESSAGE_SIZE} bytes in {paced['batches']} smtp-source"
          f" batches (-s {PACED_SESSIONS}) started every {PACED_TICK * 1000:.0f} ms for"
          f" {paced['offered_seconds']:g} s; spool span {paced['spool_span_s']:.2f} s, arrivals per"
          f" whole second {paced['spool_per_second_min']}-{paced['spool_per_second_max']},"
          f" {paced['spool_commits']} spool group commits; client side {paced['client_per_s']:.1f} msg/s"
          f" ({paced['client_seconds']:.2f} s to the last batch's exit)")
    daemon_cpu = (f"daemon CPU {paced['daemon_cpu_ms_per_msg']:.2f} ms/msg"
                  f" ({paced['daemon_cpu_s']:.1f} s); " if "daemon_cpu_s" in paced else "")
    print(f"    latency p90 {paced['latency_p90_s'] * 1000:.0f} ms, max {paced['latency_max_s'] * 1000:.0f} ms;"
          f" {daemon_cpu}client CPU {paced['smtp_source_cpu_s']:.2f} s smtp-source +"
          f" {paced['pacer_cpu_s']:.2f} s pacer; at most {paced['max_batches_in_flight']} batches in flight,"
          f" launch lag max {paced['launch_lag_max_ms']:.0f} ms")
    print(f"    {paced['distinct_message_ids']} distinct Message-IDs in {paced['logged']} messages"
          f" -> outcomes: {outcomes}")


def print_text(report: dict[str, Any], args: argparse.Namespace) -> None:
    m = report["machine"]
    load = " ".join(f"{x:.2f}" for x in m["load_average_at_start"])
    print(f"ticketd inbound benchmark: {m['cpus']} CPUs (load average {load} at start),"
          f" Python {m['python']}, smtp-source -s {SESSIONS} -m {args.messages} -l {MESSAGE_SIZE}")
    smtp, sink, ratio = report.get("smtp"), report.get("sink"), report.get("ratio")
    if smtp:
        runs = smtp["runs"]
        print(f"(a) accepted by ticketd serve   {smtp['accepted_per_s']:8.0f} msg/s   "
              f"(median of {len(runs)}: {_runs(runs, 'accepted_per_s')}; target: (a)/(c) >= {TARGET_RATIO})")
        print(f"(b) end to end (to import_log)  {smtp['e2e_per_s']:8.0f} msg/s   "
              f"p50 {smtp['latency_p50_s'] * 1000:.0f} ms, p99 {smtp['latency_p99_s'] * 1000:.0f} ms "
              f"(runs: {_runs(runs, 'e2e_per_s')} msg/s; saturated, so no verdict: see (b2))")
        last = runs[-1]
        for n, run in enumerate(runs, 1):
            if run["logged"] < run["messages"]:
                print(f"    run {n}: INCOMPLETE, {run['logged']} of {run['messages']} messages logged"
                      f" in time; figures cover those")
            if run["log_problems"]:
                print(f"    run {n}: daemon log {run['log_problems']}")
        extra = (f"    run {len(runs)}: spool span {last['spool_span_s']:.2f} s, pipeline finished "
                 f"{last['drain_after_last_accept_s']:.2f} s after the last accept, max latency "
                 f"{last['latency_max_s']:.2f} s")
        if "daemon_cpu_ms_per_msg" in last:
            extra += (f"; daemon CPU {last['daemon_cpu_ms_per_msg']:.2f} ms/msg "
                      f"({last['daemon_cpu_accept_s']:.1f} s while accepting,"
                      f" {last['daemon_cpu_total_s']:.1f} s in all)")
        print(extra)
        per_commit = last["messages"] / last["spool_commits"]
        print(f"    run {len(runs)}: {last['spool_commits']} spool group commits ({per_commit:.1f} msgs each;"
              f" {SESSIONS} sessions at most), gap between commits p50"
              f" {last['spool_commit_gap_p50_ms']:.0f} ms, max {last['spool_commit_gap_max_ms']:.0f} ms")
        print(f"    {smtp_source_note(last)}")
    else:
        print("(a)/(b) not measured")
    print_paced(report.get("paced"))
    if sink:
        runs = sink["runs"]
        cpu = runs[-1].get("sink_cpu_ms_per_msg")
        print(f"(c) no-op aiosmtpd sink         {sink['accepted_per_s']:8.0f} msg/s   "
              f"(median of {len(runs)}: {_runs(runs, 'accepted_per_s')}"
              f"{f'; sink CPU {cpu:.2f} ms/msg' if cpu is not None else ''})")
    else:
        print("(c) not measured")
    if ratio:
        print(f"    ratio (a)/(c)               {ratio['value']:8.2f}         target >= {TARGET_RATIO}   "
              f"{ratio['verdict']}")
    ingest = report.get("ingest")
    if ingest:
        outcomes = ", ".join(f"{k} {v}" for k, v in ingest["outcomes"].items())
        print(f"(d) ticketd ingest              {ingest['per_s']:8.0f} msg/s   "
              f"target >= {TARGET_INGEST:.0f}   {ingest['verdict']}   ({ingest['messages']} msgs in"
              f" {ingest['seconds']:.2f} s wall, {ingest['reported_seconds']:.2f} s reported)")
        print(f"    outcomes: {outcomes}")
        cpus = report["machine"]["cpus"]
        whole, parsing = ingest["machine_cpu_ms_per_msg"], ingest["parse_cpu_ms_per_msg"]
        print(f"    limit: the machine spent {whole:.2f} ms CPU per message, {parsing:.2f} ms of it parsing"
              f" (mail-parser, the email package, python-magic); {cpus} cores give at most"
              f" {cpus * 1000 / whole:.0f} msg/s at that cost, and parsing alone caps it at"
              f" {cpus * 1000 / parsing:.0f} msg/s")
    else:
        print("(d) not measured")
    pipe = report.get("pipe")
    if pipe:
        print(f"(e) ticketd pipe, one message   {pipe['median_ms']:8.1f} ms      "
              f"target <= {TARGET_PIPE_MS:.0f} ms  {pipe['verdict']}   (median of {pipe['runs']};"
              f" min {pipe['min_ms']:.1f}, p90 {pipe['p90_ms']:.1f}; {pipe['message_bytes']} bytes)")
    else:
        print("(e) not measured")
    for err in report["errors"]:
        print(f"ERROR {err}")
    print(f"total {report['total_seconds']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--messages", type=int, default=3000, help="smtp-source messages per run (3000)")
    parser.add_argument("--runs", type=int, default=3, help="runs of (a)/(c), median taken (3)")
    parser.add_argument("--ingest-messages", type=int, default=2000, help="messages for (d) (2000)")
    parser.add_argument("--pipe-runs", type=int, default=30, help="timed ticketd pipe runs for (e) (30)")
    parser.add_argument("--budget", type=float, default=170, help="seconds; fewer (a)/(c) runs beyond it")
    parser.add_argument("--reserve", type=float, default=30, help="seconds kept for (d) and (e) (30)")
    parser.add_argument("--drain-timeout", type=float, default=60,
                        help="seconds to wait for the pipeline to log every message (60)")
    parser.add_argument("--paced-rate", type=float, default=TARGET_E2E,
                        help=f"(b2): offered msg/s of the paced run ({TARGET_E2E:.0f})")
    parser.add_argument("--paced-seconds", type=float, default=10,
                        help="(b2): seconds of offered load in the paced run (10)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--sink", metavar="HOST:PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.paced_rate <= 0 or args.paced_seconds <= 0:
        parser.error("--paced-rate and --paced-seconds must be positive")
    if args.sink:
        return sink_main(args.sink)
    return run_report(lambda top: measure(args, top), "ticketd-bench-", args.keep, args.json,
                      lambda report: print_text(report, args))


if __name__ == "__main__":
    raise SystemExit(main())
