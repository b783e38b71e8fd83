"""Hypothesis mutates real messages from the corpus (bytes and structure) and runs them through the real
pipeline and database: nothing escapes, every message gets exactly one outcome (never ``failed``), and
no file is written outside the attachments store."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maild import config
from maild.app import App
from maild.spool import Incoming
from maild.spoolwriter import spool_many
from maild.store import importlog
from tests.helpers import CONFIG, corpus_files

SMALL = [p for p in corpus_files() if p.stat().st_size < 60_000]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(SMALL)).read_bytes())
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "dup_line", "swap_header", "boundary"]))
        if not raw:
            break
        at = draw(st.integers(0, len(raw) - 1))
        if op == "flip":
            raw[at] = draw(st.integers(0, 255))
        elif op == "insert":
            raw[at:at] = draw(st.sampled_from([b"\x00", b"\r\n", b"--", b"=?utf-8?q?", b"Content-Type: multipart/mixed;"
                                               b" boundary=x\r\n", b"\xff\xfe", b"\r\n\r\n", b"=\r\n", b"<>"]))
        elif op == "delete":
            del raw[at:at + draw(st.integers(1, 200))]
        elif op == "truncate":
            del raw[at:]
        else:
            lines = bytes(raw).split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            if op == "dup_line":
                lines.insert(i, lines[i] * draw(st.integers(2, 50)))
            elif op == "swap_header":
                j = draw(st.integers(0, len(lines) - 1))
                lines[i], lines[j] = lines[j], lines[i]
            else:
                lines[i] = b"--" + lines[i]
            raw = bytearray(b"\n".join(lines))
    return bytes(raw)


def test_mutated_corpus_messages(tmp_path: Path):
    state = tmp_path / "var"
    conf = tmp_path / "ticketd.toml"
    conf.write_text(CONFIG.format(state=state, smtp=0, lmtp=0, max_size=1024 * 1024, rate_limit=0, mail_extra="",
                                   database=""))
    cfg = config.load(conf)

    async def run_one(raw: bytes) -> list[str]:
        async with App(cfg) as app:
            assert app.db is not None and app.worker is not None
            (queue_id,) = await spool_many(app.db, [Incoming(raw=raw, source="ingest", department_hint="Sales")],
                                           app.clock.stamp())
            await app.worker.drain()
            rows = await importlog.outcomes_for(app.db, [queue_id])
            return [r["outcome"] for r in rows]

    @settings(max_examples=120, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(mutated())
    def check(raw: bytes) -> None:
        outcomes = asyncio.run(run_one(raw))
        assert len(outcomes) == 1, outcomes
        assert outcomes[0] != "failed", f"pipeline failed on {raw[:300]!r}"

    check()
    with sqlite3.connect(state / "ticketd.sqlite3") as conn:  # every message processed, none left behind
        spooled, logged = conn.execute("SELECT (SELECT count(*) FROM inbound), (SELECT count(*) FROM import_log)"
                                       ).fetchone()
        left = conn.execute("SELECT count(*) FROM inbound WHERE state != 'done'").fetchone()[0]
    conn.close()
    assert spooled == logged >= 100 and left == 0, (spooled, logged, left)
    allowed = {state / "ticketd.sqlite3", state / "ticketd.sqlite3-wal", state / "ticketd.sqlite3-shm",
               state / "secret.key"}
    stray = [p for p in tmp_path.rglob("*") if p.is_file() and p not in allowed and p != conf
             and (state / "attachments") not in p.parents]
    assert not stray, stray
