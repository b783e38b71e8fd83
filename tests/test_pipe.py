"""``ticketd pipe`` as an MTA would run it: a subprocess, the message on stdin, sysexits codes."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, TICKETD, Instance, make_mail

pytestmark = pytest.mark.both_engines  # the pipeline on SQLite and on PostgreSQL


def _read_only(cmd: list[str], directory: str) -> list[str]:
    """Run ``cmd`` with ``directory`` read-only. As root, permissions do not stop writes, so a private
    mount namespace remounts it read-only; otherwise the permission bits do."""
    if os.geteuid() != 0:
        os.chmod(directory, 0o555)
        return cmd
    d = shlex.quote(directory)
    script = f"mount --bind {d} {d} && mount -o remount,bind,ro {d} {d} && exec \"$@\""
    return ["unshare", "-m", "sh", "-c", script, "sh", *cmd]


def test_pipe_spools_then_process_makes_ticket(instance: Instance):
    msg = make_mail(subject="Piped in")
    proc = instance.cli("pipe", input=msg.as_bytes(),
                        env={"SENDER": "alice@client.example", "ORIGINAL_RECIPIENT": "sales@helpdesk.example"})
    assert proc.returncode == 0
    rows = instance.query("SELECT source, envelope_from, envelope_to, state FROM inbound")
    assert [tuple(r) for r in rows] == [("pipe", "alice@client.example", '["sales@helpdesk.example"]', "new")]
    out = instance.cli_json("process")
    assert out["outcomes"] == {"new_ticket": 1}
    t = instance.cli_json("ticket", "show", out["items"][0]["ticket"])
    assert t["department"] == "Sales"  # the envelope recipient, not the To: header
    assert t["subject"] == "Piped in"


def test_pipe_department_fallback_and_bad_department(instance: Instance):
    msg = make_mail(to="someone@elsewhere.example")
    assert instance.cli("pipe", "--department", "billing", input=msg.as_bytes()).returncode == 0
    out = instance.cli_json("process")
    assert out["outcomes"] == {"new_ticket": 1}
    assert instance.cli_json("ticket", "show", out["items"][0]["ticket"])["department"] == "Billing"
    proc = instance.cli("pipe", "--department", "Nope", input=msg.as_bytes(), check=False)
    assert proc.returncode == 66  # unknown department: the same code as for ingest and ticket open
    assert b"Nope" in proc.stderr


def test_pipe_without_any_department_address_is_blocked_not_lost(instance: Instance):
    msg = make_mail(to="someone@elsewhere.example")
    assert instance.cli("pipe", input=msg.as_bytes()).returncode == 0
    out = instance.cli_json("process")
    assert out["outcomes"] == {"blocked:unknown_recipient": 1}
    rows = instance.cli_json("import-log", "--outcome", "blocked")["items"]
    assert rows[0]["reason"] == "unknown_recipient"
    raw = instance.cli("import-log", "show", str(rows[0]["id"]), "--raw").stdout
    assert raw == msg.as_bytes()


@pytest.mark.parametrize("payload", [b"", b"\x00\xff\xfe garbage \r\n\r\n\x00", b"Subject: only a header"])
def test_pipe_accepts_malformed_mail(instance: Instance, payload: bytes):
    proc = instance.cli("pipe", "--department", "Sales", input=payload)
    assert proc.returncode == 0
    out = instance.cli_json("process")
    assert out["messages"] == 1
    assert "failed" not in out["outcomes"]


@pytest.mark.sqlite_only
def test_pipe_exit_75_when_state_dir_is_read_only(instance: Instance):
    msg = make_mail().as_bytes()
    instance.state.mkdir()
    cmd = [*TICKETD, "--config", str(instance.config), "pipe"]
    # A state directory where nothing can be created ...
    proc = subprocess.run(_read_only(cmd, str(instance.state)), input=msg, capture_output=True, timeout=60)
    assert proc.returncode == 75, proc.stderr
    assert b"retry" in proc.stderr
    # ... and one whose database exists but cannot be written.
    assert instance.cli("pipe", input=msg).returncode == 0
    proc = subprocess.run(_read_only(cmd, str(instance.state)), input=msg, capture_output=True, timeout=60)
    assert proc.returncode == 75, proc.stderr
    assert instance.query("SELECT count(*) AS n FROM inbound")[0]["n"] == 1


def test_pipe_exit_78_for_broken_config(instance: Instance):
    instance.config.write_text(instance.config.read_text().replace('listen = "127.0.0.1:', 'listen = "nohost'))
    proc = instance.cli("pipe", input=b"Subject: x\n\nbody\n", check=False)
    assert proc.returncode == 78
    err = proc.stderr.decode()
    assert str(instance.config) in err and "smtp.listen" in err


def test_pipe_over_size_limit_is_refused_with_reason(instance: Instance):
    big = b"Subject: big\r\n\r\n" + b"x" * (instance.max_size + 10)
    proc = instance.cli("pipe", input=big, check=False)
    assert proc.returncode == 65
    assert b"max_message_size" in proc.stderr
    assert not instance.db_path.exists() or instance.query("SELECT count(*) AS n FROM inbound")[0]["n"] == 0


def test_pipe_retry_is_a_duplicate(instance: Instance):
    msg = make_mail().as_bytes()
    for _ in range(3):
        assert instance.cli("pipe", input=msg).returncode == 0
    out = instance.cli_json("process")
    assert out["outcomes"] == {"new_ticket": 1, "duplicate": 2}


def test_pipe_imports_nothing_heavy(instance: Instance):
    """An MTA runs ``ticketd pipe`` once per message: it must not pay for the daemon's imports (asyncio, the
    async drivers, the parsers): sqlite3, or psycopg2 on PostgreSQL. The speed itself is measured by
    benchmarks/ingest.py (e)."""
    instance.cli("pipe", input=make_mail().as_bytes())   # the first delivery creates the schema (then asyncpg)
    proc = subprocess.run([*TICKETD[:1], "-X", "importtime", *TICKETD[1:], "--config", str(instance.config),
                           "pipe"], input=make_mail().as_bytes(), capture_output=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.decode().splitlines() if "|" in line}
    assert "maild.spool" in imported  # the listing is real
    daemons = {"asyncio", "aiosqlite", "asyncpg", "mailparser", "magic", "nh3", "imapclient", "aiosmtpd", "jinja2"}
    if instance.engine != "sqlite":
        daemons |= {"sqlite3", "_sqlite3"}
    heavy = sorted(m for m in imported if m.split(".")[0] in daemons)
    assert not heavy, heavy


def test_pipe_exit_75_when_postgresql_does_not_answer(tmp_path: Path):
    """A PostgreSQL that refuses connections, or accepts them and never answers: the MTA keeps the mail
    (exit 75) and the pipe gives up within TICKETD_DB_CONNECT_TIMEOUT."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        refused = closed.getsockname()[1]
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)   # accepts (the kernel does), never speaks
    try:
        for port in (refused, silent.getsockname()[1]):
            (tmp_path / str(port)).mkdir()
            inst = Instance(tmp_path / str(port), database_url=f"postgresql://ticketd@127.0.0.1:{port}/desk")
            started = time.monotonic()
            proc = inst.cli("pipe", input=make_mail().as_bytes(), env={"TICKETD_DB_CONNECT_TIMEOUT": "2"},
                            check=False)
            assert proc.returncode == 75, proc.stderr
            assert b"MTA should retry" in proc.stderr and f"127.0.0.1:{port}/desk".encode() in proc.stderr
            assert time.monotonic() - started < 30   # bounded by the timeout, not by the MTA's patience
    finally:
        silent.close()
