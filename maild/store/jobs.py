"""What the scheduler's jobs did: one row per job with its last run (started, finished, as of which time,
on which node, its counts or its error) and how many runs it has had."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from maild.store.db import Database, Row


@dataclass(frozen=True)
class JobRun:
    name: str
    node: str
    started_at: str
    finished_at: str        # "" while the run is on (or when it never ended: its process died)
    as_of: str              # the time the run worked as of (``jobs run --now``), else when it started
    result: dict[str, Any]
    error: str
    runs: int

    @classmethod
    def from_row(cls, row: Row) -> JobRun:
        try:
            result = json.loads(row["result"] or "{}")
        except ValueError:
            result = {}
        return cls(name=row["name"], node=row["node"], started_at=row["started_at"],
                   finished_at=row["finished_at"], as_of=row["as_of"], result=result, error=row["error"],
                   runs=int(row["runs"]))


async def started(db: Database, name: str, node: str, stamp: str, as_of: str) -> None:
    async with db.transaction():
        await db.execute(
            "INSERT INTO job_runs (name, node, started_at, finished_at, as_of, result, error, runs)"
            " VALUES (?, ?, ?, '', ?, '{}', '', 1)"
            " ON CONFLICT (name) DO UPDATE SET node = excluded.node, started_at = excluded.started_at,"
            " finished_at = '', as_of = excluded.as_of, result = '{}', error = '', runs = job_runs.runs + 1",
            (name, node, stamp, as_of))


async def finished(db: Database, name: str, stamp: str, result: dict[str, Any], error: str = "") -> None:
    async with db.transaction():
        await db.execute("UPDATE job_runs SET finished_at = ?, result = ?, error = ? WHERE name = ?",
                         (stamp, json.dumps(result, sort_keys=True), error, name))


async def last_runs(db: Database) -> dict[str, JobRun]:
    return {r["name"]: JobRun.from_row(r) for r in await db.fetchall("SELECT * FROM job_runs ORDER BY name")}
