"""The web view on a big desk (run by ``make bench``, not by the test suite).

For each engine (SQLite, and PostgreSQL from tests/postgres.py beside it unless ``--only sqlite``), a fresh
database gets ``--tickets`` (100,000) tickets over three departments and every status, with ``--messages``
(500,000) messages in all: 20 tickets carry 50 messages each (client replies, staff replies and notes,
some with HTML), the rest share the remainder. Bodies are drawn from a 20,000-word vocabulary with a
Zipf-like spread, so that keywords match as in real mail: a few words very often, most rarely. The rows
are written through the storage interface in bulk (the search index follows them, as it does for mail);
setting up is not what is measured.

Then ``ticketd serve`` runs with the web view, and a staff member who works in one department (so every
query carries the department limit) asks for, after a warm-up:

* the ticket list: the default view, other statuses, a department and a priority filter, sorted by
  subject, and page 3;
* a ticket page with 50 messages (the 20 such tickets in turn);
* a keyword search: one and two words, very frequent (a word in a third of the mail), of middling and of
  rare frequency.

The figure is the server's time for each request, from the daemon's own access-log line (``ms=``: from
the request's arrival to its last byte sent), p50 and p95 over ``--requests`` (60) per kind.

Target (issue 12): p95 <= 100 ms for each kind on 2 cores on SQLite; PostgreSQL's printed beside.
"""

from __future__ import annotations

import argparse
import asyncio
import http.cookiejar
import random
import re
import subprocess
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import ROOT, BenchError, machine_info, percentile, run_report, say, ticketd_command, verdict, wait_port

from maild import config, passwords
from maild.app import App
from maild.clock import iso
from maild.store import staff

TARGET_MS = 100.0
PASSWORD = "bench password, long enough"
DEPARTMENTS = ("Technical Support", "Billing", "Sales")
STATUSES = ("Open", "Answered", "Customer-Reply", "On Hold", "In Progress", "Closed", "Closed", "Closed")
NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
BIG_TICKETS = 20
BIG_MESSAGES = 50


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(root: Path, url: str, port: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    database = f'[database]\nurl = "{url}"\n' if url else ""
    text = (f'[storage]\nstate_dir = "{root / "var"}"\n{database}\n[mail]\ndomain = "helpdesk.example"\n'
            f'[smtp]\nlisten = false\n[lmtp]\nlisten = false\n[web]\nlisten = "127.0.0.1:{port}"\n'
            '[autoclose]\nhours = 0\n[jobs]\nauto_close = 10080\nescalate = 10080\nfeedback = 10080\n'
            'housekeeping = 10080\n'
            + "".join(f'\n[[departments]]\nname = "{d}"\naddresses = ["{d.split()[0].lower()}@helpdesk.example"]\n'
                      for d in DEPARTMENTS))
    path = root / "ticketd.toml"
    path.write_text(text)
    return path


def vocabulary(rng: random.Random, size: int = 20_000) -> tuple[list[str], list[float]]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = list(dict.fromkeys("".join(rng.choices(letters, k=rng.randint(3, 10))) for _ in range(size * 2)))[:size]
    cumulative, total = [], 0.0
    for rank in range(len(words)):      # Zipf: the n-th word 1/n as often (cumulative: choices() is then fast)
        total += 1.0 / (rank + 1)
        cumulative.append(total)
    return words, cumulative


async def fill(app: App, tickets: int, messages: int, seed: int) -> dict[str, Any]:
    """The desk; what the requests will ask for (big tickets, keywords)."""
    assert app.db is not None
    db = app.db
    rng = random.Random(seed)
    words, cumulative = vocabulary(rng)
    dept_ids = [app.departments[d] for d in DEPARTMENTS]
    common, common_weights = words[:3000], cumulative[:3000]
    rows = []
    for i in range(tickets):
        stamp = iso(NOW - timedelta(minutes=rng.randint(0, 60 * 24 * 365)))
        subject = " ".join(rng.choices(common, cum_weights=common_weights, k=5)).capitalize()
        rows.append((f"{1000000 + i}", subject, STATUSES[i % len(STATUSES)], rng.choice(("Low", "Medium", "High")),
                     dept_ids[i % 3],
                     f"c{i % 20000}@client.example", f"Client {i % 20000}", stamp, stamp, stamp, stamp,
                     f"<t{i}@client.example>"))
    say(f"  {tickets} tickets")
    async with db.transaction():
        for start in range(0, len(rows), 10_000):
            await db.executemany(
                "INSERT INTO tickets (tid, subject, status, priority, department_id, client_email, client_name,"
                " created_at, updated_at, last_reply_at, last_client_reply_at, root_message_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows[start:start + 10_000])
    ids = [r["id"] for r in await db.fetchall("SELECT id FROM tickets ORDER BY id")]
    big = [ids[i] for i in range(0, BIG_TICKETS * 3, 3)]          # Technical Support's (every third ticket)
    per_ticket = {t: BIG_MESSAGES for t in big}
    rest = messages - BIG_TICKETS * BIG_MESSAGES
    small = [t for t in ids if t not in per_ticket]
    for n, t in enumerate(small):
        per_ticket[t] = rest // len(small) + (1 if n < rest % len(small) else 0)
    kinds = ("reply", "staff_reply", "reply", "note", "staff_reply")
    batch: list[tuple[Any, ...]] = []
    written = 0
    for t, count in per_ticket.items():
        for k in range(count):
            kind = kinds[k % len(kinds)] if k else "reply"
            text = " ".join(rng.choices(words, cum_weights=cumulative, k=rng.randint(20, 80)))
            html = f"<p>{text}</p><p><b>{words[k % 100]}</b> <a href='https://example.com/{k}'>link</a></p>" \
                if kind == "reply" and k % 2 else None
            stamp = iso(NOW - timedelta(minutes=count - k))
            batch.append((t, kind, f"c{t % 20000}@client.example" if kind == "reply" else "ada@helpdesk.example",
                          "Client" if kind == "reply" else "Ada", "Guest" if kind == "reply" else "Operator",
                          "Re: ticket" if k else "First", text, text, html, f"<m{t}.{k}@client.example>", stamp))
            if len(batch) == 20_000:
                await _messages(db, batch)
                written += len(batch)
                batch = []
                say(f"  {written} messages")
    if batch:
        await _messages(db, batch)
    sid = await staff.save(db, email="dora@helpdesk.example", username="dora", name="Dora", is_admin=False,
                           signature=None, stamp=iso(NOW))
    await staff.set_departments(db, sid, [dept_ids[0]], [])
    await staff.set_password(db, sid, passwords.hash_password(PASSWORD))
    # Keywords: one very frequent (rank 5: in about a third of the messages, the latest SEARCH_CAP of them
    # count), three of middling frequency (ranks 200-300: each in ~2% of the messages), and rare ones.
    return {"big": [f"{1000000 + ids.index(t)}" for t in big],
            "keywords": [words[5], words[200], words[250], f"{words[300]} {words[40]}", words[5000], words[12000],
                         f"{words[1500]} {words[8000]}"]}


async def _messages(db: Any, batch: list[tuple[Any, ...]]) -> None:
    async with db.transaction():
        await db.executemany(
            "INSERT INTO messages (ticket_id, kind, author_email, author_name, badge, subject, body, body_full,"
            " body_html, message_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch)


async def prepare(root: Path, url: str, port: int, tickets: int, messages: int) -> tuple[Path, dict[str, Any], int]:
    path = write_config(root, url, port)
    settings = config.load(path)
    async with App(settings) as app:
        assert app.db is not None
        plan = await fill(app, tickets, messages, seed=7)
        if url:
            await app.db.execute("ANALYZE")
            size = int(await app.db.scalar("SELECT pg_database_size(current_database())"))
        else:
            await app.db.maintain()
            size = 0
    if not url:
        size = sum(p.stat().st_size for p in (root / "var").glob("ticketd.sqlite3*"))
    return path, plan, size


class Client:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=60) as resp:
            if resp.status != 200:
                raise BenchError(f"GET {path}: {resp.status}")
            return str(resp.read().decode())

    def sign_in(self, username: str) -> None:
        page = self.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        data = urllib.parse.urlencode({"csrf": csrf.group(1), "username": username, "password": PASSWORD}).encode()
        with self.opener.open(self.base + "/login", data=data, timeout=60) as resp:
            if "/tickets" not in resp.url:
                raise BenchError(f"sign-in failed: {resp.url}")


def server_ms(log: Path, seen: int) -> tuple[list[float], int]:
    """The ``ms`` of the access-log lines after the first ``seen`` of them, and how many there are now."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if " ticketd.web request " in line]
    return [float(m.group(1)) for line in lines[seen:] if (m := re.search(r" ms=([0-9.]+)", line))], len(lines)


def run_engine(top: Path, engine: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    root = top / engine
    say(f"{engine}: filling {args.tickets} tickets and {args.messages} messages")
    began = time.perf_counter()
    path, plan, size = asyncio.run(prepare(root, url, port, args.tickets, args.messages))
    say(f"{engine}: filled in {time.perf_counter() - began:.0f} s, database {size / 1e6:.0f} MB")
    log = root / "daemon.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([*ticketd_command(), "--config", str(path), "serve"], cwd=ROOT,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        wait_port(port, proc, time.monotonic() + 60, lambda: log.read_text(errors="replace")[-2000:])
        client = Client(port)
        client.sign_in("dora")
        n = args.requests
        lists = ["/tickets", "/tickets?status=all", "/tickets?status=closed", "/tickets?status=answered",
                 "/tickets?status=all&priority=high", "/tickets?sort=subject&dir=asc", "/tickets?status=all&page=3",
                 "/tickets?status=on%20hold", "/tickets?status=all&department=Technical%20Support",
                 "/tickets?status=active&sort=tid"]
        kinds = {
            "ticket list": [lists[i % len(lists)] for i in range(n)],
            "ticket page (50 messages)": [f"/tickets/{plan['big'][i % len(plan['big'])]}" for i in range(n)],
            "keyword search": [f"/tickets?status=all&q={urllib.parse.quote(plan['keywords'][i % 7])}"
                               for i in range(n)],
        }
        for paths in kinds.values():      # warm-up: the first of each, twice (caches, plans)
            for p in paths[:len(lists)]:
                client.get(p)
        time.sleep(0.5)                   # the warm-up's last access-log line is written after its answer
        _, seen = server_ms(log, 0)
        results = {}
        for kind, paths in kinds.items():
            for p in paths:
                client.get(p)
            time.sleep(0.2)               # the access-log line is written once the answer has gone out
            values, seen = server_ms(log, seen)
            if len(values) != len(paths):
                raise BenchError(f"{kind}: {len(values)} access-log lines for {len(paths)} requests")
            results[kind] = {"p50_ms": percentile(values, 50), "p95_ms": percentile(values, 95),
                             "max_ms": max(values), "requests": len(values)}
            say(f"{engine}: {kind}: p50 {results[kind]['p50_ms']:.1f} ms, p95 {results[kind]['p95_ms']:.1f} ms")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return {"engine": engine, "database_bytes": size, "results": results}


def measure(args: argparse.Namespace, top: Path) -> dict[str, Any]:
    engines = [e for e in args.only.split(",") if e]
    out: list[dict[str, Any]] = []
    server = None
    try:
        for engine in engines:
            url = ""
            if engine == "postgres":
                import sys

                sys.path.insert(0, str(ROOT))
                from tests.postgres import PostgresServer

                say("starting a fresh PostgreSQL cluster (tests/postgres.py)")
                server = PostgresServer()
                server.start()
                url = server.new_database()
            out.append(run_engine(top, engine, url, args))
    finally:
        if server is not None:
            server.stop()
    errors = [f"{r['engine']} {kind}: p95 {v['p95_ms']:.1f} ms > {TARGET_MS:.0f} ms"
              for r in out if r["engine"] == "sqlite" for kind, v in r["results"].items() if v["p95_ms"] > TARGET_MS]
    return {"machine": machine_info(), "tickets": args.tickets, "messages": args.messages, "engines": out,
            "errors": [], "misses": errors}


def print_text(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(f"ticketd web view: {m.get('cpus')} cores, {report['tickets']} tickets, {report['messages']} messages;"
          " server time per request (access log), a staff member limited to one department")
    for r in report["engines"]:
        print(f"{r['engine']}: database {r['database_bytes'] / 1e6:.0f} MB")
        for kind, v in r["results"].items():
            mark = (f"target p95 <= {TARGET_MS:.0f} ms  {verdict(v['p95_ms'], TARGET_MS, False)}"
                    if r["engine"] == "sqlite" else "(printed beside SQLite's; no target)")
            print(f"  {kind:<27} p50 {v['p50_ms']:7.1f} ms  p95 {v['p95_ms']:7.1f} ms  max {v['max_ms']:7.1f} ms"
                  f"  ({v['requests']} requests)  {mark}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=100_000, help="tickets in the database (100000)")
    parser.add_argument("--messages", type=int, default=500_000, help="messages in the database (500000)")
    parser.add_argument("--requests", type=int, default=60, help="requests per kind (60)")
    parser.add_argument("--only", default="sqlite,postgres", help="engines: sqlite,postgres (default both)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    return run_report(lambda top: measure(args, top), "ticketd-web-", args.keep, args.json, print_text)


if __name__ == "__main__":
    raise SystemExit(main())
