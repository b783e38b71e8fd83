"""ticketd on PostgreSQL, one node and two: end-to-end SMTP throughput and the CPU each part spends per
message (run by hand, not by the test suite).

Three set-ups, each on a fresh state directory and database, with the same load:

(a) one ``ticketd serve`` node on SQLite (the default database);
(b) one node on PostgreSQL;
(c) two nodes (``[database] node = "a"``/``"b"``) on the same PostgreSQL database and a shared state
    directory, as tests/test_nodes.py runs them; the load is split between both nodes' SMTP ports.

The PostgreSQL server is a fresh cluster from tests/postgres.py (``PostgresServer``: fsync on, as
PostgreSQL's defaults are), one database per run; its settings are printed.

The load: ``--messages`` (3000) mails of 4 KB from ``smtp-source``, ``--sessions`` (8, as ingest.py) at
once. Each smtp-source process is one session sending ``--per-sender`` (10) mails from its own sender
address (``c<k>@client.example``), a new process taking the next sender when one ends, so that the
default ``[limits] new_tickets_per_sender`` (30) and ``[notifications] auto_per_hour`` (10) never bite:
every mail opens a ticket and queues the client's confirmation, which the outbox sender writes to the
default maildir transport, as the default configuration has it. With two nodes, session i goes to node
i mod 2. (ingest.py instead sends everything from one address with the rate limit off, so that all but 10
confirmations are skipped.)

Figures, per set-up (each the median of ``--runs`` runs; the set-ups alternate within a run):

* end to end: messages / (last import_log row's processed_at - the moment the first smtp-source was
  started), and the accepted rate (messages / smtp-source wall clock);
* CPU per message: utime + stime (with the children each process reaped) from /proc of every ticketd
  node's process tree (serve, its worker, sender and parser processes), and of PostgreSQL's (the
  postmaster of the data directory's postmaster.pid and all its children, less the benchmark's own
  reading connection), from just before the load until every message has its import_log row and the
  outbox is empty (the confirmations written), divided by the messages.

Targets: two nodes >= 0.9 x one node on PostgreSQL, end to end (a 2-core machine cannot scale out, but
must not collapse); 1 / (PostgreSQL CPU seconds per message) >= 2000 msg/s per PostgreSQL core. SQLite is
shown beside them without a target. From the ticketd CPU per message, the capacity of one
``--cores-per-node`` (8) core node is printed (cores / CPU seconds per message), and how many such nodes
one PostgreSQL core keeps up with.

Every run must log exactly one import_log row per message sent, a new ticket each, and one confirmation
sent per message; the nodes must exit 0 on SIGTERM. Also printed, to explain the figures: the CPU the
machine spent on other processes meanwhile (a note when over 20%: the figures of a busy machine are
low), the nodes' WARNING/ERROR log lines and "mail skipped" lines, PostgreSQL's log ERROR/FATAL lines,
pg_stat_database counters per message (commits, rollbacks, WAL bytes, rows written), and what the nodes'
connections did during the load (pg_stat_activity sampled every 0.1 s: running, waiting for the write
lock). ``--pg-set NAME=VALUE`` changes a PostgreSQL setting that needs no restart (e.g. ``jit=off``);
``--json`` prints one JSON object instead of text. Everything listens on 127.0.0.1; the nodes and
PostgreSQL are stopped at the end, on an error, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from _common import (
    CONFIG,
    MAX_SIZE,
    BenchError,
    Instance,
    machine_info,
    parse_stamp,
    percentile,
    query,
    run_report,
    say,
    smtp_source_path,
    verdict,
)

RECIPIENT = "support@helpdesk.example"
MESSAGE_SIZE = 4096       # body bytes per mail, as ingest.py
SESSIONS = 8              # smtp-source sessions at once, as ingest.py
PER_SENDER = 10           # mails per sender address: [notifications] auto_per_hour (10) lets all through
RATE_LIMIT = 30           # [limits] new_tickets_per_sender, the default (written into the config)
LEASE_SECONDS = 60        # [database] lease_seconds, the default

TARGET_TWO_NODES = 0.9    # two nodes' end-to-end figure / one node's, on PostgreSQL
TARGET_PG_PER_CORE = 2000.0   # msg/s one PostgreSQL core could serve: 1 / PostgreSQL CPU s per message
CORES_PER_NODE = 8        # the node size the capacity estimate is printed for

KINDS = ("sqlite", "pg1", "pg2")
TITLES = {"sqlite": "(a) SQLite, one node", "pg1": "(b) PostgreSQL, one node", "pg2": "(c) PostgreSQL, two nodes"}
PG_SETTINGS = ("server_version", "shared_buffers", "synchronous_commit", "fsync", "wal_sync_method",
               "full_page_writes", "jit", "max_connections")
# pg_stat_database counters shown per message (rows read are left out: the benchmark's polling reads them)
PG_COUNTERS = ("xact_commit", "xact_rollback", "deadlocks", "tup_inserted", "tup_updated", "tup_deleted",
               "blks_read")
OTHER_LOAD_NOTE = 0.2     # a run whose machine spent this share of its CPU on other processes gets a note
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")



# --- the machine ---------------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    """machine_info() and the CPU model, the cores this process may use and the RAM."""
    info = machine_info()
    try:
        info["cores_usable"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        info["cores_usable"] = info["cpus"]
    info["cpu_model"] = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["ram_gib"] = round(int(line.split()[1]) / 1024**2, 1)
                break
    except (OSError, ValueError, IndexError):
        pass
    return info


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent since boot in user, nice, system, irq and softirq time
    (/proc/stat: sampled at each tick, so a few per cent off the processes' own exact figures)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return sum(int(x) for x in fields[1:4] + fields[6:8]) / CLOCK_TICKS


# --- CPU time of process trees ------------------------------------------------------------------------

class Processes:
    """One reading of /proc: each process's parent, its own CPU ticks (utime + stime) and those of the
    children it reaped (cutime + cstime)."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        self.ticks: dict[int, tuple[int, int]] = {}
        self.children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                fields = stat[stat.rindex(")") + 2:].split()   # from the 3rd field on: state, ppid, ...
                pid = int(entry.name)
                self.parent[pid] = int(fields[1])
                self.ticks[pid] = (int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14]))
            except (OSError, ValueError, IndexError):
                continue
        for pid, ppid in self.parent.items():
            self.children.setdefault(ppid, []).append(pid)

    def tree(self, root: int) -> list[int]:
        """``root`` and its live descendants (none when ``root`` is gone)."""
        if root not in self.ticks:
            return []
        found, todo = [], [root]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(self.children.get(pid, ()))
        return found

    def seconds(self, pids: list[int], reaped: bool = True) -> float:
        """CPU seconds of ``pids``; with ``reaped``, plus what their exited, reaped children used (a child
        that exits moves its time into its parent's cutime/cstime, so a tree's sum only grows)."""
        return sum(self.ticks[p][0] + (self.ticks[p][1] if reaped else 0) for p in pids if p in self.ticks) \
            / CLOCK_TICKS


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def pg_cpu(procs: Processes, postmaster: int, exclude: set[int]) -> dict[str, float]:
    """PostgreSQL's CPU seconds: the postmaster (with the children it reaped: backends and autovacuum
    workers that exited), the client backends and the background processes alive now; ``exclude`` (the
    benchmark's own connection) left out."""
    backends = background = 0.0
    for pid in procs.tree(postmaster):
        if pid == postmaster or pid in exclude:
            continue
        seconds = procs.seconds([pid])
        if "(" in cmdline(pid) or "[local]" in cmdline(pid):  # "postgres: ticketd db 127.0.0.1(5432) idle"
            backends += seconds
        else:
            background += seconds
    postmaster_s = procs.seconds([postmaster])
    return {"total": postmaster_s + backends + background, "postmaster_and_exited": postmaster_s,
            "backends": backends, "background": background,
            "excluded": procs.seconds([p for p in exclude if p in procs.ticks])}


def cpu_reading(nodes: list[Node], postmaster: int | None, exclude: set[int]) -> dict[str, Any]:
    procs = Processes()
    reading: dict[str, Any] = {
        "nodes": {n.name: procs.seconds(procs.tree(n.proc.pid)) if n.proc else 0.0 for n in nodes},
        "node_processes": {n.name: len(procs.tree(n.proc.pid)) if n.proc else 0 for n in nodes},
        "roles": {n.name: node_roles(procs, n.proc.pid) if n.proc else {} for n in nodes},
        "machine_busy": busy_seconds(),
        "self": time.process_time(),
        "children": sum(os.times()[2:4]),   # reaped children of this process: the smtp-source runs
    }
    if postmaster is not None:
        reading["pg"] = pg_cpu(procs, postmaster, exclude)
        reading["pg_processes"] = len(procs.tree(postmaster))
    return reading


def node_roles(procs: Processes, root: int) -> dict[str, float]:
    """A node's CPU seconds by part: serve (receiving, the root process), worker (the pipeline process, the
    one with children), parsers (its children), sender (the other child); multiprocessing's resource
    tracker is left out."""
    roles = {"serve": procs.seconds([root], reaped=False), "worker": 0.0, "parsers": 0.0, "sender": 0.0}
    for child in procs.children.get(root, ()):
        if "resource_tracker" in cmdline(child):
            continue
        grandchildren = procs.tree(child)[1:]
        if grandchildren:
            roles["worker"] += procs.seconds([child], reaped=False)
            roles["parsers"] += procs.seconds(grandchildren)
        else:
            roles["sender"] += procs.seconds([child])
    return roles


# --- the nodes ------------------------------------------------------------------------------------------

class Node(Instance):
    """A ``ticketd serve`` on free loopback ports, with the default limits and notifications; on SQLite
    (``url`` "") or on the PostgreSQL database ``url`` as node ``name``, optionally sharing ``state``."""

    def __init__(self, root: Path, name: str, url: str = "", state: Path | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        super().__init__(root)
        self.name = name
        self.url = url
        if state is not None:
            self.state = state
        database = (f'[database]\nurl = "{url}"\nlease_seconds = {LEASE_SECONDS}\nnode = "{name}"\n'
                    if url else "")
        self.config.write_text(CONFIG.format(state=self.state, smtp=self.smtp_port, lmtp=self.lmtp_port,
                                             max_size=MAX_SIZE, rate_limit=RATE_LIMIT, mail_extra="",
                                             database=database))


class Reader:
    """Read-only queries on the nodes' database: the SQLite file, or one PostgreSQL connection whose
    backend is left out of PostgreSQL's CPU figures."""

    def __init__(self, node: Node) -> None:
        self.db_path = node.db_path
        self.pg: Any = None
        self.backend_pid: int | None = None
        self.queries = 0   # each one a transaction of its own, counted in pg_stat_database's xact_commit
        if node.url:
            from tests.helpers import PgReader

            self.pg = PgReader(node.url)
            self.backend_pid = int(self.rows("SELECT pg_backend_pid()")[0][0])

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        if self.pg is not None:
            self.queries += 1
            return list(self.pg.query(sql, params))
        return query(self.db_path, sql, params)

    def scalar(self, sql: str, default: int = 0) -> int:
        try:
            rows = self.rows(sql)
        except (sqlite3.OperationalError, LookupError):
            return default
        except Exception as exc:  # PgReader.Missing: not migrated yet
            if type(exc).__name__ == "Missing":
                return default
            raise
        return int(rows[0][0]) if rows and rows[0][0] is not None else default

    def close(self) -> None:
        if self.pg is not None:
            self.pg.close()
            self.pg = None


# --- the load: smtp-source, one process per sender ------------------------------------------------------


class Load:
    """``messages`` mails over ``sessions`` sessions at once, in smtp-source processes of one session and
    ``per_sender`` mails each, every process with its own sender address (and -M name, so Message-IDs
    stay distinct whatever pids the processes get); session i sends to ``ports[i % len(ports)]``."""

    def __init__(self, binary: str, ports: list[int], messages: int, sessions: int, per_sender: int,
                 errlog: Path, timeout: float) -> None:
        self.binary = binary
        self.ports = ports
        self.chunks = [(k, min(per_sender, messages - start))
                       for k, start in enumerate(range(0, messages, per_sender))]
        self.sessions = max(1, min(sessions, len(self.chunks)))
        self.errlog = errlog
        self.timeout = timeout
        self.lock = threading.Lock()
        self.next = 0
        self.live: set[subprocess.Popen[bytes]] = set()
        self.failed: list[str] = []
        self.sent: Counter[int] = Counter()
        self.stopping = threading.Event()
        self.deadline = 0.0

    def _take(self) -> tuple[int, int] | None:
        with self.lock:
            if self.stopping.is_set() or self.next >= len(self.chunks):
                return None
            chunk = self.chunks[self.next]
            self.next += 1
            return chunk

    def _session(self, port: int, err: IO[bytes]) -> None:
        while (chunk := self._take()) is not None:
            k, n = chunk
            cmd = [self.binary, "-s", "1", "-m", str(n), "-l", str(MESSAGE_SIZE), "-M", f"c{k}.bench.example",
                   "-f", f"c{k}@client.example", "-t", RECIPIENT, f"127.0.0.1:{port}"]
            with self.lock:
                if self.stopping.is_set():
                    return
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
                self.live.add(proc)
            try:
                code = proc.wait(timeout=max(0.1, self.deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                code = None
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                with self.lock:
                    self.live.discard(proc)
            if code != 0:
                with self.lock:
                    self.failed.append(f"smtp-source of sender c{k} to port {port} "
                                       + ("timed out" if code is None else f"exited {code}"))
                self.stop()
                return
            with self.lock:
                self.sent[port] += n

    def stop(self) -> None:
        with self.lock:
            self.stopping.set()
            for proc in self.live:
                if proc.poll() is None:
                    proc.kill()

    def run(self, sample: Callable[[], None] | None = None, every: float = 0.1) -> dict[str, Any]:
        """Send everything; returns when every process has ended (or on the first failure). ``sample`` is
        called every ``every`` seconds meanwhile."""
        threads: list[threading.Thread] = []
        with open(self.errlog, "ab") as err:
            self.deadline = time.monotonic() + self.timeout
            started_wall = time.time()
            started = time.perf_counter()
            try:
                for i in range(self.sessions):
                    t = threading.Thread(target=self._session, args=(self.ports[i % len(self.ports)], err),
                                         daemon=True)
                    t.start()
                    threads.append(t)
                for t in threads:
                    while t.is_alive():
                        t.join(every)   # with a timeout: Ctrl-C reaches this thread
                        if sample is not None and t.is_alive():
                            sample()
            finally:
                self.stop()
                for t in threads:
                    t.join(30)
            seconds = time.perf_counter() - started
        if self.failed:
            tail = self.errlog.read_text(errors="replace").strip()[-1000:]
            raise BenchError(f"{len(self.failed)} smtp-source run(s) failed ({self.failed[0]}): {tail}")
        return {"started_wall": started_wall, "seconds": seconds, "processes": len(self.chunks),
                "sent_per_port": dict(self.sent)}


# --- one run of one set-up ------------------------------------------------------------------------------

def log_problems(path: Path) -> dict[str, Any]:
    """WARNING/ERROR/CRITICAL lines of a daemon log by level, logger and event (its words before the
    first key=value), the first line of each kind; "mail skipped" lines and tracebacks are counted too."""
    kinds: dict[str, dict[str, Any]] = {}
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    for line in text.splitlines():
        parts = line.split(" ")
        if line.startswith("Traceback"):
            key = "traceback"
        elif len(parts) > 3 and parts[1] in ("WARNING", "ERROR", "CRITICAL"):
            words = []
            for w in parts[3:]:
                if "=" in w:
                    break
                words.append(w)
            key = f"{parts[1]} {parts[2]} {' '.join(words)[:80]}"
        elif len(parts) > 3 and parts[1] == "INFO" and " ".join(parts[3:5]) == "mail skipped":
            key = "INFO mail skipped"
        else:
            continue
        kind = kinds.setdefault(key, {"count": 0, "first": line[:400]})
        kind["count"] += 1
    return kinds


def pg_log_problems(text: str) -> dict[str, Any]:
    """ERROR/FATAL/PANIC/WARNING lines of PostgreSQL's server log (and what followed them: DETAIL,
    STATEMENT), by their message."""
    kinds: dict[str, dict[str, Any]] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        for level in ("ERROR:", "FATAL:", "PANIC:", "WARNING:"):
            if level in line:
                message = line.split(level, 1)[1].strip()
                key = f"{level} {message[:100]}"
                kind = kinds.setdefault(key, {"count": 0, "first": "\n".join(lines[i:i + 3])[:600]})
                kind["count"] += 1
                break
    return kinds


def wait_for(what: str, check: Callable[[], tuple[bool, str]], nodes: list[Node], timeout: float,
             poll: float) -> str:
    """Poll ``check`` until it says done: "" then, else what it last said at ``timeout``. Fails at once
    when a node exits."""
    deadline = time.monotonic() + timeout
    while True:
        done, state = check()
        if done:
            return ""
        for n in nodes:
            if n.proc is not None and n.proc.poll() is not None:
                raise BenchError(f"node {n.name} exited {n.proc.returncode} while waiting for {what}:"
                                 f" {n.log_tail()}")
        if time.monotonic() > deadline:
            return f"{what}: not done {timeout:g} s after the load ({state})"
        time.sleep(poll)


def pg_counters(rows: list[Any]) -> dict[str, int]:
    (row,) = rows
    return {"wal_bytes": int(row[0]), **{name: int(row[i + 1]) for i, name in enumerate(PG_COUNTERS)}}


# What the ticketd nodes' connections are doing: sampled during the load.
PG_ACTIVITY_SQL = ("SELECT count(*) FILTER (WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'),"
                   " count(*) FILTER (WHERE wait_event_type = 'Lock' AND wait_event <> 'advisory'),"
                   " count(*) FILTER (WHERE state = 'active' AND wait_event_type IS DISTINCT FROM 'Lock'),"
                   " count(*) FILTER (WHERE state LIKE 'idle in transaction%'), count(*)"
                   " FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
ACTIVITY = ("waiting_write_lock", "waiting_other_lock", "active", "idle_in_transaction", "connections")


PG_COUNTERS_SQL = (f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, {', '.join(PG_COUNTERS)}"
                   " FROM pg_stat_database WHERE datname = current_database()")


def pg_counters_after(url: str) -> dict[str, int]:
    """The counters read on a connection of their own, once the nodes and the benchmark's reader have gone
    (a backend reports its counters when idle, at most once a second, and when it exits)."""
    from tests.helpers import PgReader

    reader = PgReader(url)
    try:
        return pg_counters(reader.query(PG_COUNTERS_SQL))
    finally:
        reader.close()


def run_setup(kind: str, binary: str, server: Any, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One run of set-up ``kind`` on fresh state (and a fresh database): start the nodes, measure, stop."""
    pg = kind != "sqlite"
    url = server.new_database() if pg else ""
    if pg and args.statements:
        server.psql("CREATE EXTENSION pg_stat_statements", url)
    nodes = [Node(work / "a", "a", url)]
    if kind == "pg2":
        nodes.append(Node(work / "b", "b", url, state=nodes[0].state))
    messages = args.messages
    result: dict[str, Any] = {"kind": kind, "messages": messages, "nodes": [n.name for n in nodes]}
    reader: Reader | None = None
    pg_log_from = len(server.log()) if pg else 0
    codes: dict[str, int] = {}
    try:
        for n in nodes:   # one after the other: the first creates the schema and the shared secret
            n.start()
        reader = Reader(nodes[0])
        postmaster = None
        if pg:
            postmaster = int((server.dir / "data" / "postmaster.pid").read_text().split()[0])
        exclude = {reader.backend_pid} if reader.backend_pid else set()
        time.sleep(args.settle)   # the nodes' worker, sender and parser processes start
        say(f"{TITLES[kind]}: {messages} msgs, {args.sessions} sessions, {args.per_sender} per sender -> "
            + ", ".join(f"{n.name} 127.0.0.1:{n.smtp_port}" for n in nodes))
        if pg:
            if args.statements:
                reader.rows("SELECT pg_stat_statements_reset()")
            counters0 = pg_counters(reader.rows(PG_COUNTERS_SQL))
            queries0 = reader.queries - 1   # the counters' own transaction ends after their snapshot
        samples: list[tuple[int, ...]] = []

        def sample() -> None:
            assert reader is not None
            try:
                samples.append(tuple(int(v) for v in reader.rows(PG_ACTIVITY_SQL)[0]))
            except Exception as exc:  # a diagnostic only: the run goes on without it
                result.setdefault("sample_error", f"{type(exc).__name__}: {exc}")

        cpu0 = cpu_reading(nodes, postmaster, exclude)
        load = Load(binary, [n.smtp_port for n in nodes], messages, args.sessions, args.per_sender,
                    work / "smtp-source.err", timeout=max(120.0, messages / 10)).run(sample if pg else None)
        cpu_load = cpu_reading(nodes, postmaster, exclude)
        accepted = reader.scalar("SELECT count(*) FROM inbound")
        if accepted != messages:
            raise BenchError(f"smtp-source finished but the spool holds {accepted} of {messages} messages")

        def logged() -> tuple[bool, str]:
            n = reader.scalar("SELECT count(*) FROM import_log")
            return n >= messages, f"{n} of {messages} import_log rows"

        def outbox_empty() -> tuple[bool, str]:
            events = reader.scalar("SELECT count(*) FROM notify_queue")
            queued = reader.scalar("SELECT count(*) FROM outbox WHERE state = 'queued'")
            return events == 0 and queued == 0, f"{events} events not expanded, {queued} mails queued"

        problem = wait_for("the import log", logged, nodes, args.drain_timeout, args.poll)
        cpu1 = cpu_reading(nodes, postmaster, exclude)
        if not problem:
            problem = wait_for("the outbox", outbox_empty, nodes, args.drain_timeout, args.poll)
        cpu2 = cpu_reading(nodes, postmaster, exclude)
        if problem:
            result["error"] = problem

        if pg and args.statements:
            result["statements"] = top_statements(reader, args.statements, messages)
        rows = reader.rows("SELECT i.received_at, l.processed_at, l.outcome, l.message_id, i.claimed_by"
                           " FROM import_log l JOIN inbound i ON i.id = l.inbound_id ORDER BY i.id")
        outbox_states = {r[0]: int(r[1]) for r in reader.rows("SELECT state, count(*) FROM outbox GROUP BY state")}
        last_sent = reader.rows("SELECT max(sent_at) FROM outbox WHERE state = 'sent'")[0][0]
        tickets = reader.scalar("SELECT count(*) FROM tickets")
        spooled = reader.scalar("SELECT count(*) FROM inbound")
    finally:
        if reader is not None:
            reader.close()
        for n in nodes:
            try:
                codes[n.name] = n.stop()
            except BenchError as exc:
                codes[n.name] = -9
                result.setdefault("error", str(exc))
    if pg:
        counters1 = pg_counters_after(url)
        counters = {k: counters1[k] - counters0[k] for k in counters0}
        counters["xact_commit"] -= reader.queries - queries0
        result["pg_counters"] = counters
        if samples:
            result["pg_activity"] = {"samples": len(samples), **{
                f"mean_{name}": statistics.fmean(s[i] for s in samples) for i, name in enumerate(ACTIVITY)},
                "max_waiting_write_lock": max(s[0] for s in samples),
                "share_with_write_lock_waiters": sum(1 for s in samples if s[0]) / len(samples)}
    sent_dir = nodes[0].state / "sent" / "new"
    maildir = sum(1 for _ in sent_dir.iterdir()) if sent_dir.is_dir() else 0
    if not rows:
        raise BenchError(f"no import_log rows at all: {nodes[0].log_tail()}")

    received = [parse_stamp(r[0]) for r in rows]
    processed = [parse_stamp(r[1]) for r in rows]
    latencies = [(p - r).total_seconds() for r, p in zip(received, processed, strict=True)]
    first_sent = datetime.fromtimestamp(load["started_wall"], UTC)
    span = (max(processed) - first_sent).total_seconds()
    spool_span = (max(processed) - min(received)).total_seconds()
    outcomes = Counter(r[2] for r in rows)
    processed_by = Counter(r[4] or "-" for r in rows)

    def spent(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"nodes": {k: round(b["nodes"][k] - a["nodes"][k], 3) for k in a["nodes"]}}
        out["ticketd"] = round(sum(out["nodes"].values()), 3)
        out["roles"] = {role: round(sum(b["roles"][n].get(role, 0.0) - a["roles"][n].get(role, 0.0)
                                        for n in a["roles"]), 3) for role in ("serve", "worker", "parsers", "sender")}
        if "pg" in a:
            out["pg"] = {k: round(b["pg"][k] - a["pg"][k], 3) for k in a["pg"]}
        out["machine_busy"] = round(b["machine_busy"] - a["machine_busy"], 3)
        out["smtp_source"] = round(b["children"] - a["children"], 3)
        out["bench"] = round(b["self"] - a["self"], 3)
        ours = out["ticketd"] + out["smtp_source"] + out["bench"] + (out["pg"]["total"] + out["pg"]["excluded"]
                                                                    if "pg" in out else 0.0)
        out["other"] = round(out["machine_busy"] - ours, 3)
        return out

    cpu = spent(cpu0, cpu2)
    result.update(
        logged=len(rows),
        spooled=spooled,
        tickets=tickets,
        outcomes=dict(sorted(outcomes.items())),
        distinct_message_ids=len({r[3] for r in rows}),
        outbox=outbox_states,
        maildir_files=maildir,
        sent_per_node={n.name: load["sent_per_port"].get(n.smtp_port, 0) for n in nodes},
        processed_per_node=dict(sorted(processed_by.items())),
        smtp_source_processes=load["processes"],
        load_seconds=round(load["seconds"], 3),
        accepted_per_s=messages / load["seconds"],
        e2e_seconds=round(span, 3),
        e2e_per_s=len(rows) / span if span > 0 else float("inf"),
        spool_e2e_per_s=len(rows) / spool_span if spool_span > 0 else float("inf"),
        done_per_s=done_rate(len(rows), first_sent, last_sent),
        drain_after_load_s=round((max(processed) - first_sent).total_seconds() - load["seconds"], 3),
        latency_p50_s=percentile(latencies, 50),
        latency_p99_s=percentile(latencies, 99),
        cpu=cpu,
        cpu_during_load=spent(cpu0, cpu_load),
        cpu_to_last_import_log=spent(cpu0, cpu1),
        node_processes=cpu_load["node_processes"],
        ticketd_cpu_ms_per_msg=cpu["ticketd"] * 1000 / messages,
        node_cpu_ms_per_msg={k: v * 1000 / messages for k, v in cpu["nodes"].items()},
        exit_codes=codes,
        log_problems={n.name: log_problems(n.log_path) for n in nodes},
    )
    if pg:
        pg_s = cpu["pg"]["total"]
        result.update(pg_cpu_ms_per_msg=pg_s * 1000 / messages,
                      pg_msgs_per_core=messages / pg_s if pg_s > 0 else float("inf"),
                      pg_processes=cpu_load.get("pg_processes"),
                      pg_log_problems=pg_log_problems(server.log()[pg_log_from:]))
    # What a correct run looks like: every mail sent logged once, a new ticket each, one confirmation each.
    wrong = []
    if len(rows) != messages or spooled != messages:
        wrong.append(f"{len(rows)} import_log rows and {spooled} spool rows for {messages} messages sent")
    if set(outcomes) != {"new_ticket"}:
        wrong.append(f"outcomes {dict(outcomes)} (expected new_ticket only)")
    if outbox_states != {"sent": messages}:
        wrong.append(f"outbox {outbox_states} (expected one confirmation sent per message)")
    if any(code != 0 for code in codes.values()):
        wrong.append(f"exit codes on SIGTERM {codes} (expected 0)")
    if wrong:
        result.setdefault("error", "; ".join(wrong))
    return result


def done_rate(messages: int, first_sent: datetime, last_sent: Any) -> float:
    """Messages / (the last confirmation's sent_at - the first message sent): the whole work of the load,
    the outbox's included (the import-log figure leaves out mail a node still has to send then)."""
    if not last_sent:
        return 0.0
    span = (parse_stamp(str(last_sent)) - first_sent).total_seconds()
    return messages / span if span > 0 else float("inf")


STATEMENT_SETTINGS = {"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "all"}


def top_statements(reader: Any, limit: int, messages: int) -> dict[str, Any]:
    """``--statements``: what this database's statements cost since the load began (the benchmark's own
    polling included, and statements run inside functions, such as the search index's, listed apart too)."""
    here = "dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND toplevel"
    total = reader.rows(f"SELECT sum(calls), sum(total_exec_time) FROM pg_stat_statements WHERE {here}")[0]
    top = reader.rows("SELECT calls, total_exec_time, regexp_replace(query, '\\s+', ' ', 'g') FROM pg_stat_statements"
                      " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
                      f" ORDER BY total_exec_time DESC LIMIT {int(limit)}")
    return {"per_msg": float(total[0] or 0) / messages, "exec_ms_per_msg": float(total[1] or 0) / messages,
            "top": [{"calls_per_msg": int(r[0]) / messages, "exec_us_per_msg": float(r[1]) * 1000 / messages,
                     "query": str(r[2])[:160]} for r in top]}


# --- the whole run ----------------------------------------------------------------------------------

def median(runs: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in runs if key in r]
    return float(statistics.median(values)) if values else float("nan")


def pg_set(server: Any, assignments: list[str]) -> None:
    """``--pg-set NAME=VALUE``: ALTER SYSTEM SET and a reload, for settings that need no restart."""
    from tests.helpers import PgReader

    reader = PgReader(server.url())
    try:
        for assignment in assignments:
            name, _, value = assignment.partition("=")
            name = name.strip()
            rows = reader.query("SELECT context FROM pg_settings WHERE name = ?", (name,))
            if not rows:
                raise BenchError(f"--pg-set {assignment}: PostgreSQL has no setting {name!r}")
            if rows[0][0] in ("postmaster", "internal"):
                raise BenchError(f"--pg-set {assignment}: {name} takes a server restart, which this benchmark"
                                 f" does not do")
            server.psql(f"ALTER SYSTEM SET {name} = '{value.strip().replace(chr(39), chr(39) * 2)}'")
        server.psql("SELECT pg_reload_conf()")
    finally:
        reader.close()
    time.sleep(0.5)   # the postmaster rereads its configuration on SIGHUP; new sessions get it


def pg_settings(server: Any) -> dict[str, str]:
    from tests.helpers import PgReader

    reader = PgReader(server.url())
    try:
        names = ", ".join(f"current_setting('{name}') AS {name}" for name in PG_SETTINGS)
        row = reader.query(f"SELECT {names}")[0]
        return {name: str(row[name]) for name in PG_SETTINGS}
    finally:
        reader.close()


def measure(args: argparse.Namespace, top: Path) -> dict[str, Any]:
    started = time.monotonic()
    report: dict[str, Any] = {"machine": machine(), "errors": [], "kinds": list(args.kinds),
                              "settings": {"messages": args.messages, "sessions": args.sessions,
                                           "per_sender": args.per_sender, "message_bytes": MESSAGE_SIZE,
                                           "runs": args.runs, "rate_limit": RATE_LIMIT,
                                           "lease_seconds": LEASE_SECONDS, "pg_set": args.pg_set}}
    errors: list[str] = report["errors"]
    binary = smtp_source_path()
    if binary is None:
        errors.append("smtp-source not found (apt-get install postfix, or make test-deps): nothing measured")
        report["total_seconds"] = round(time.monotonic() - started, 1)
        return report
    server = None
    kinds = list(args.kinds)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    try:
        if any(k != "sqlite" for k in kinds):
            from tests.postgres import PostgresServer

            server = PostgresServer(STATEMENT_SETTINGS if args.statements else None)
            say("starting a fresh PostgreSQL cluster (tests/postgres.py)")
            try:
                server.start()
                if args.pg_set:
                    pg_set(server, args.pg_set)
                report["postgres"] = pg_settings(server)
            except (BenchError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
                errors.append(f"PostgreSQL: {exc}")
                say(f"PostgreSQL FAILED: {exc}")
                kinds = [k for k in kinds if k == "sqlite"]
        for i in range(args.runs):
            for kind in kinds:
                work = Path(tempfile.mkdtemp(prefix=f"{kind}-{i + 1}-", dir=top))
                try:
                    got = run_setup(kind, binary, server, args, work)
                except Exception as exc:  # this run is lost; the others go on (Ctrl-C still stops all)
                    errors.append(f"{TITLES[kind]}, run {i + 1}: {exc if isinstance(exc, BenchError) else repr(exc)}")
                    say(f"{TITLES[kind]}, run {i + 1} FAILED: {exc}")
                    continue
                finally:
                    if not args.keep:
                        shutil.rmtree(work, ignore_errors=True)
                runs[kind].append(got)
                if "error" in got:
                    errors.append(f"{TITLES[kind]}, run {i + 1}: {got['error']}")
                    say(got["error"])
                say(f"{TITLES[kind]}, run {i + 1}: {got['e2e_per_s']:.0f} msg/s end to end"
                    f" ({got['done_per_s']:.0f} to the last confirmation sent), ticketd CPU"
                    f" {got['ticketd_cpu_ms_per_msg']:.2f} ms/msg"
                    + (f", PostgreSQL CPU {got['pg_cpu_ms_per_msg']:.3f} ms/msg" if "pg_cpu_ms_per_msg" in got else "")
                    + f", other load {got['cpu']['other']:.1f} CPU s")
    finally:
        if server is not None:
            say("stopping PostgreSQL")
            server.stop()

    results: dict[str, Any] = {}
    for kind in kinds:
        if not runs[kind]:
            continue
        summary: dict[str, Any] = {key: median(runs[kind], key) for key in (
            "e2e_per_s", "done_per_s", "accepted_per_s", "spool_e2e_per_s", "latency_p50_s", "latency_p99_s",
            "ticketd_cpu_ms_per_msg", "pg_cpu_ms_per_msg", "pg_msgs_per_core") if key in runs[kind][0]}
        summary["complete"] = all("error" not in r for r in runs[kind])   # else no PASS on these figures
        summary["runs"] = runs[kind]
        results[kind] = summary
    report["results"] = results
    pg1, pg2 = results.get("pg1"), results.get("pg2")
    if pg1 and pg2:
        ratio = pg2["e2e_per_s"] / pg1["e2e_per_s"]
        complete = pg1["complete"] and pg2["complete"]
        report["two_nodes_ratio"] = {"value": ratio, "target": TARGET_TWO_NODES, "complete": complete,
                                     "verdict": verdict(ratio, TARGET_TWO_NODES) if complete else "MISS"}
    for kind in ("pg1", "pg2"):
        if kind in results:
            value = results[kind]["pg_msgs_per_core"]
            complete = results[kind]["complete"]
            report[f"pg_per_core_{kind}"] = {"value": value, "target": TARGET_PG_PER_CORE, "complete": complete,
                                             "verdict": verdict(value, TARGET_PG_PER_CORE) if complete else "MISS"}
    base = pg2 or pg1
    if base:
        node_ms = base["ticketd_cpu_ms_per_msg"]
        node_rate = args.cores_per_node * 1000 / node_ms if node_ms > 0 else float("inf")
        pg_rate = base["pg_msgs_per_core"]
        report["capacity"] = {"from": "pg2" if pg2 else "pg1", "cores_per_node": args.cores_per_node,
                              "ticketd_cpu_ms_per_msg": node_ms, "node_msgs_per_s": node_rate,
                              "pg_msgs_per_core": pg_rate, "nodes_per_pg_core": pg_rate / node_rate}
    report["total_seconds"] = round(time.monotonic() - started, 1)
    return report


# --- printing ---------------------------------------------------------------------------------------------

def _runs(runs: list[dict[str, Any]], key: str, fmt: str = "{:.0f}") -> str:
    return " ".join(fmt.format(r[key]) for r in runs if key in r)


def _problems(kinds: dict[str, Any]) -> str:
    return "; ".join(f"{v['count']} x {k}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]["count"]))


def print_text(report: dict[str, Any]) -> None:
    m, s = report["machine"], report["settings"]
    load = " ".join(f"{x:.2f}" for x in m["load_average_at_start"])
    print(f"ticketd on PostgreSQL: {m['cpus']} cores ({m['cores_usable']} usable), {m['cpu_model']},"
          f" {m.get('ram_gib', '?')} GiB RAM, load average {load} at start, Python {m['python']}")
    pg = report.get("postgres")
    if pg:
        print(f"PostgreSQL {pg['server_version']} (a fresh cluster, tests/postgres.py): shared_buffers"
              f" {pg['shared_buffers']}, synchronous_commit {pg['synchronous_commit']}, fsync {pg['fsync']},"
              f" wal_sync_method {pg['wal_sync_method']}, full_page_writes {pg['full_page_writes']},"
              f" jit {pg['jit']}, max_connections {pg['max_connections']}"
              + (f" (set by --pg-set: {', '.join(s['pg_set'])})" if s["pg_set"] else ""))
    print(f"load: {s['messages']} msgs of {s['message_bytes']} bytes, {s['sessions']} smtp-source sessions at"
          f" once (one process per sender, -s 1 -m {s['per_sender']}: {-(-s['messages'] // s['per_sender'])}"
          f" senders; split over the nodes' SMTP ports); [limits] new_tickets_per_sender {s['rate_limit']},"
          f" notifications as by default (a confirmation per ticket, maildir); [database] lease_seconds"
          f" {s['lease_seconds']}; {s['runs']} run(s), medians")
    print("end to end = msgs / (last import_log row - first message sent); CPU from just before the load to"
          " the outbox empty, per message")
    results = report.get("results", {})
    for kind in report["kinds"]:
        r = results.get(kind)
        if not r:
            print(f"{TITLES[kind]:<28} not measured")
            continue
        runs = r["runs"]
        pg_part = (f", PostgreSQL {r['pg_cpu_ms_per_msg']:.3f} ms/msg" if kind != "sqlite" else "")
        print(f"{TITLES[kind]:<28} {r['e2e_per_s']:6.0f} msg/s end to end (runs: {_runs(runs, 'e2e_per_s')});"
              f" accepted {r['accepted_per_s']:.0f} msg/s; p50 {r['latency_p50_s'] * 1000:.0f} ms,"
              f" p99 {r['latency_p99_s'] * 1000:.0f} ms; CPU: ticketd {r['ticketd_cpu_ms_per_msg']:.2f}"
              f" ms/msg{pg_part}")
        last = runs[-1]
        cpu = last["cpu"]
        nodes = ", ".join(
            f"node {name}: {cpu['nodes'][name]:.1f} s = {last['node_cpu_ms_per_msg'][name]:.2f} ms/msg"
            f" ({last['node_processes'][name]} processes; sent to it {last['sent_per_node'][name]},"
            f" processed by it {last['processed_per_node'].get(name, last['processed_per_node'].get('-', 0))})"
            for name in last["nodes"])
        print(f"    last run: {nodes}")
        print("    last run, ticketd CPU by part (all nodes): " + ", ".join(
            f"{role} {seconds * 1000 / last['messages']:.2f}" for role, seconds in cpu["roles"].items()) + " ms/msg")
        if "pg" in cpu:
            p = cpu["pg"]
            print(f"    last run: PostgreSQL {p['total']:.2f} s CPU ({last['pg_processes']} processes): backends"
                  f" {p['backends']:.2f}, background {p['background']:.2f}, postmaster and exited children"
                  f" {p['postmaster_and_exited']:.2f}; the benchmark's own reading connection,"
                  f" {p['excluded']:.2f} s, left out")
        if "pg_counters" in last:
            c, n = last["pg_counters"], last["messages"]
            print(f"    last run, per message: {c['xact_commit'] / n:.2f} commits, {c['xact_rollback'] / n:.3f}"
                  f" rollbacks ({c['xact_rollback']} in all), {c['wal_bytes'] / n / 1024:.1f} KB of WAL,"
                  f" {c['tup_inserted'] / n:.1f} rows inserted, {c['tup_updated'] / n:.1f} updated,"
                  f" {c['tup_deleted'] / n:.1f} deleted, {c['blks_read'] / n:.2f} blocks read;"
                  f" {c['deadlocks']} deadlocks")
        if "pg_activity" in last:
            a = last["pg_activity"]
            print(f"    last run, ticketd's connections during the load ({a['samples']} samples of pg_stat_activity):"
                  f" {a['mean_connections']:.1f} open, {a['mean_active']:.2f} running,"
                  f" {a['mean_waiting_write_lock']:.2f} waiting for the write lock (advisory; max"
                  f" {a['max_waiting_write_lock']}, some waiting in {a['share_with_write_lock_waiters']:.0%}"
                  f" of samples), {a['mean_waiting_other_lock']:.2f} for other locks,"
                  f" {a['mean_idle_in_transaction']:.2f} idle in a transaction")
        if "statements" in last:
            st = last["statements"]
            print(f"    last run, pg_stat_statements: {st['per_msg']:.1f} statements per message,"
                  f" {st['exec_ms_per_msg']:.3f} ms of execution per message; those that took most:")
            for q in st["top"]:
                print(f"      {q['exec_us_per_msg']:7.1f} us/msg {q['calls_per_msg']:6.2f} calls/msg"
                      f"  {q['query'][:100]}")
        other = max(0.0, cpu["other"])   # /proc/stat's tick sampling can put it a little under 0
        other_share = other / cpu["machine_busy"] if cpu["machine_busy"] > 0 else 0.0
        print(f"    last run: accepted in {last['load_seconds']:.2f} s, last import_log row"
              f" {max(0.0, last['drain_after_load_s']):.2f} s after the last smtp-source exited; machine busy"
              f" {cpu['machine_busy']:.1f} CPU s: smtp-source {cpu['smtp_source']:.1f},"
              f" benchmark {cpu['bench']:.1f}, other processes and interrupts {other:.1f} ({other_share:.0%})")
        busy = [n for n, run in enumerate(runs, 1)
                if run["cpu"]["other"] > OTHER_LOAD_NOTE * max(run["cpu"]["machine_busy"], 1e-9)]
        if busy:
            print(f"    NOTE: other processes took over {OTHER_LOAD_NOTE:.0%} of the machine's CPU in run(s)"
                  f" {', '.join(map(str, busy))}: the throughput figures of those runs are low")
        outcomes = ", ".join(f"{k} {v}" for k, v in last["outcomes"].items())
        print(f"    last run: {last['logged']} import_log rows for {last['messages']} sent ({outcomes});"
              f" {last['tickets']} tickets; outbox {last['outbox']}; {last['maildir_files']} mails in the"
              f" maildir")
        for n, run in enumerate(runs, 1):
            if "error" in run:
                print(f"    run {n}: INCOMPLETE OR WRONG, its figures are not to be trusted: {run['error']}")
            for name, kinds in run["log_problems"].items():
                if kinds:
                    print(f"    run {n}: node {name} log: {_problems(kinds)}")
                    for kind_name, v in kinds.items():
                        print(f"        e.g. {kind_name}: {v['first'][:300]}")
            if run.get("pg_log_problems"):
                print(f"    run {n}: PostgreSQL log: {_problems(run['pg_log_problems'])}")
    ratio = report.get("two_nodes_ratio")
    if ratio:
        print(f"two nodes / one node on PostgreSQL      {ratio['value']:8.2f}        target >="
              f" {TARGET_TWO_NODES}   {ratio['verdict']}" + ("" if ratio["complete"] else "   (incomplete runs)"))
    else:
        print(f"two nodes / one node on PostgreSQL      not measured  target >= {TARGET_TWO_NODES}   MISS")
    for kind in ("pg1", "pg2"):
        got = report.get(f"pg_per_core_{kind}")
        label = f"msg/s per PostgreSQL core, {'one node' if kind == 'pg1' else 'two nodes'}"
        if got:
            print(f"{label:<39} {got['value']:8.0f}        target >= {TARGET_PG_PER_CORE:.0f}  {got['verdict']}"
                  f"   (1 / PostgreSQL CPU s per msg)" + ("" if got["complete"] else "   (incomplete runs)"))
        elif kind in report["kinds"]:
            print(f"{label:<39} not measured  target >= {TARGET_PG_PER_CORE:.0f}  MISS")
    sqlite = results.get("sqlite")
    if sqlite and (pg1 := results.get("pg1")):
        print(f"SQLite beside them: {sqlite['e2e_per_s']:.0f} msg/s end to end, PostgreSQL one node /"
              f" SQLite {pg1['e2e_per_s'] / sqlite['e2e_per_s']:.2f} (no target)")
    cap = report.get("capacity")
    if cap:
        which = "two-node" if cap["from"] == "pg2" else "one-node"
        print(f"capacity estimate (CPU only, from the {which} run): one {cap['cores_per_node']}-core ticketd node"
              f" = {cap['cores_per_node']} / {cap['ticketd_cpu_ms_per_msg']:.2f} ms = {cap['node_msgs_per_s']:.0f}"
              f" msg/s; N such nodes = N x {cap['node_msgs_per_s']:.0f} msg/s while PostgreSQL has a core per"
              f" {cap['nodes_per_pg_core']:.2f} nodes ({cap['pg_msgs_per_core']:.0f} msg/s per core)")
    for err in report["errors"]:
        print(f"ERROR {err}")
    print(f"total {report['total_seconds']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--messages", type=int, default=3000, help="messages per run of each set-up (3000)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each set-up, median taken (3)")
    parser.add_argument("--sessions", type=int, default=SESSIONS,
                        help=f"smtp-source sessions at once, split over the nodes ({SESSIONS})")
    parser.add_argument("--per-sender", type=int, default=PER_SENDER,
                        help=f"messages per sender address; above 10 the default auto_per_hour skips"
                             f" confirmations ({PER_SENDER})")
    parser.add_argument("--only", default=",".join(KINDS),
                        help=f"set-ups to run, of {','.join(KINDS)} (all)")
    parser.add_argument("--cores-per-node", type=int, default=CORES_PER_NODE,
                        help=f"node size of the capacity estimate ({CORES_PER_NODE})")
    parser.add_argument("--drain-timeout", type=float, default=120,
                        help="seconds to wait for the import log, then the outbox, after the load (120)")
    parser.add_argument("--settle", type=float, default=1.5,
                        help="seconds between the nodes' start and the load (1.5)")
    parser.add_argument("--poll", type=float, default=0.1, help=argparse.SUPPRESS)
    parser.add_argument("--pg-set", action="append", default=[], metavar="NAME=VALUE",
                        help="a PostgreSQL setting for the runs, e.g. jit=off (ALTER SYSTEM + reload;"
                             " repeatable; none by default: PostgreSQL's defaults)")
    parser.add_argument("--statements", type=int, default=0, metavar="N",
                        help="also list the N statements that took most of PostgreSQL's time, per message"
                             " (pg_stat_statements; its own cost is in the CPU figures then)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, state)")
    args = parser.parse_args(argv)
    args.kinds = [k.strip() for k in args.only.split(",") if k.strip()]
    if not args.kinds or set(args.kinds) - set(KINDS):
        parser.error(f"--only: choose from {', '.join(KINDS)}")
    if args.messages < 1 or args.runs < 1 or args.sessions < 1 or args.per_sender < 1:
        parser.error("--messages, --runs, --sessions and --per-sender must be positive")
    # SIGTERM unwinds like Ctrl-C, so that the nodes and PostgreSQL are stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    return run_report(lambda top: measure(args, top), "ticketd-bench-pg-", args.keep, args.json, print_text)


if __name__ == "__main__":
    raise SystemExit(main())
