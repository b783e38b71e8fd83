"""The scheduler's sweeps on a big desk (run by ``make bench``, not by the test suite).

For each engine (SQLite, and PostgreSQL from tests/postgres.py beside it unless ``--only sqlite``) and each
case, a fresh database gets ``--tickets`` (100,000) tickets spread over the three departments, statuses
Open, Answered, Customer-Reply, On Hold and Closed, and one staff member who works in and hears from
Technical Support. The rows are written through the storage interface in bulk (``executemany``: setting up
is not what is measured). Then, timed, the job runs as the daemon runs it (``scheduler.run_job``, through
the desk, the notifications expanded into outbox rows, not sent):

* ``auto_close`` (``[autoclose] hours = 72``), and
* ``escalate`` with one rule (Open or Customer-Reply for 60 minutes since the last reply: priority High, a
  note, and the escalated mail to the department),

when nothing is due (every ticket's last reply 10 minutes old) and when ``--due`` (1%) is: that share
of all the tickets (1,000 of 100,000), among those the job looks at, has its last reply 100 hours ago.
Each figure is the wall time of one run (and the process's CPU time); the runs must close / fire on
exactly the due tickets, and the outbox must then hold one mail per auto-closed ticket (the client's)
and one per escalation (the staff member's).

Target (issue 11): each sweep <= 1 s on 2 cores on SQLite, due or not; PostgreSQL's printed beside.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import ROOT, machine_info, run_report, say, verdict

from maild import config
from maild.app import App
from maild.clock import Clock, iso
from maild.jobs import scheduler
from maild.store import staff

TARGET_SECONDS = 1.0
NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
RULE = '''
[[escalations]]
name = "stale"
minutes = 60
after = "reply"
statuses = ["Open", "Customer-Reply"]
priority = "High"
note = "Nobody has answered this for an hour."
'''
STATUSES = ("Open", "Answered", "Customer-Reply", "On Hold", "Closed")
DEPARTMENTS = ("Technical Support", "Billing", "Sales")


def write_config(root: Path, url: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    database = f'[database]\nurl = "{url}"\n' if url else ""
    text = (f'[storage]\nstate_dir = "{root / "var"}"\n{database}\n[mail]\ndomain = "helpdesk.example"\n'
            '[smtp]\nlisten = false\n[lmtp]\nlisten = false\n[web]\nlisten = false\n'
            '[autoclose]\nhours = 72\n[notifications]\nauto_per_hour = 0\n'
            + "".join(f'\n[[departments]]\nname = "{d}"\naddresses = ["{d.split()[0].lower()}@helpdesk.example"]\n'
                      for d in DEPARTMENTS) + RULE)
    path = root / "ticketd.toml"
    path.write_text(text)
    return path


async def fill(app: App, tickets: int, due: float, job: str, seed: int) -> int:
    """The tickets; those the job should act on get a last reply 100 hours ago. How many are due."""
    assert app.db is not None
    rng = random.Random(seed)
    fresh, old = iso(NOW - timedelta(minutes=10)), iso(NOW - timedelta(hours=100))
    wanted = ("Answered", "Customer-Reply") if job == "auto_close" else ("Open", "Customer-Reply")
    dept_ids = [app.departments[d] for d in DEPARTMENTS]
    watched = [i for i in range(tickets) if STATUSES[i % len(STATUSES)] in wanted]
    late = set(rng.sample(watched, min(len(watched), round(due * tickets))))   # a share of all the tickets
    rows = []
    for i in range(tickets):
        status = STATUSES[i % len(STATUSES)]
        dept = dept_ids[0] if job == "escalate" and status in wanted else dept_ids[i % 3]
        stamp = old if i in late else fresh
        rows.append((f"{1000000 + i}", f"Ticket {i}", status, "Medium", dept, f"c{i % 5000}@client.example",
                     f"Client {i % 5000}", stamp, stamp, stamp, stamp, f"<t{i}@client.example>"))
    async with app.db.transaction():
        await app.db.executemany(
            "INSERT INTO tickets (tid, subject, status, priority, department_id, client_email, client_name,"
            " created_at, updated_at, last_reply_at, last_client_reply_at, root_message_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        sid = await staff.save(app.db, email="ada@helpdesk.example", username="ada", name="Ada", is_admin=False,
                               signature=None, stamp=iso(NOW))
        await staff.set_departments(app.db, sid, [dept_ids[0]], [dept_ids[0]])
    return len(late)


async def one(root: Path, url: str, job: str, tickets: int, due: float) -> dict[str, Any]:
    settings = config.load(write_config(root, url))
    async with App(settings, clock=Clock(lambda: NOW)) as app:
        assert app.db is not None
        say(f"{job}: {tickets} tickets, {due:.0%} due, {'PostgreSQL' if url else 'SQLite'}: filling")
        expected = await fill(app, tickets, due, job, seed=len(job))
        cpu, wall = time.process_time(), time.perf_counter()
        result = await scheduler.run_job(app, job, "bench", NOW)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        outbox = int(await app.db.scalar("SELECT count(*) FROM outbox"))
    acted = result.get("closed", result.get("fired", 0))
    errors = []
    if acted != expected:
        errors.append(f"{job} acted on {acted} tickets, {expected} were due")
    if outbox != expected:
        errors.append(f"{outbox} outbox rows for {expected} due tickets")
    return {"job": job, "engine": "postgresql" if url else "sqlite", "tickets": tickets, "due": expected,
            "acted": acted, "outbox": outbox, "seconds": wall, "cpu_seconds": cpu, "errors": errors}


def measure(args: argparse.Namespace, top: Path) -> dict[str, Any]:
    server = None
    engines = [e for e in args.only.split(",") if e]
    results: list[dict[str, Any]] = []
    try:
        if "postgres" in engines:
            import sys

            sys.path.insert(0, str(ROOT))
            from tests.postgres import PostgresServer

            say("starting a fresh PostgreSQL cluster (tests/postgres.py)")
            server = PostgresServer()
            server.start()
        n = 0
        for engine in engines:
            for job in ("auto_close", "escalate"):
                for due in (0.0, args.due):
                    n += 1
                    url = server.new_database() if engine == "postgres" and server is not None else ""
                    got = asyncio.run(one(top / f"run{n}", url, job, args.tickets, due))
                    say(f"{job} on {got['engine']}, {got['due']} due: {got['seconds']:.3f} s")
                    results.append(got)
    finally:
        if server is not None:
            server.stop()
    return {"machine": machine_info(), "tickets": args.tickets, "due_share": args.due, "results": results,
            "errors": [e for r in results for e in r["errors"]]}


def print_text(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(f"ticketd scheduler sweeps: {m.get('cpus')} cores, {report['tickets']} tickets; each figure one run as"
          " the daemon runs it (the desk, the mail expanded into the outbox, not sent)")
    for r in report["results"]:
        label = f"{r['job']:<11} {r['engine']:<10} {r['due']:>5} due"
        mark = (f"target <= {TARGET_SECONDS:.0f} s  {verdict(r['seconds'], TARGET_SECONDS, False)}"
                if r["engine"] == "sqlite" else "(printed beside SQLite's; no target)")
        print(f"{label}  {r['seconds']:7.3f} s (CPU {r['cpu_seconds']:.3f} s)  acted on {r['acted']},"
              f" outbox {r['outbox']}   {mark}")
    for e in report["errors"]:
        print(f"ERROR {e}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=100_000, help="tickets in the database (100000)")
    parser.add_argument("--due", type=float, default=0.01, help="share of the watched tickets that is due (0.01)")
    parser.add_argument("--only", default="sqlite,postgres", help="engines: sqlite,postgres (default both)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    return run_report(lambda top: measure(args, top), "ticketd-sched-", args.keep, args.json, print_text)


if __name__ == "__main__":
    raise SystemExit(main())
