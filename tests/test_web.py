"""The web view inside `ticketd serve` (issue 12, built step by step): uvicorn in the daemon's event loop on
`web.listen`, the health check, the access log, the site-wide security headers; the daemon keeps its own
signal handling (SIGTERM still exits 0 after draining)."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import Instance, free_port

pytestmark = pytest.mark.both_engines


def with_web(inst: Instance, port: int) -> None:
    text = inst.config.read_text()
    assert "[web]\nlisten = false\n" in text
    inst.config.write_text(text.replace("[web]\nlisten = false\n", f'[web]\nlisten = "127.0.0.1:{port}"\n', 1))


@contextmanager
def serving(inst: Instance) -> Iterator[int]:
    """``ticketd serve`` of ``inst`` with the web view on a free port (yielded); it must stop with exit 0."""
    port = free_port()
    with_web(inst, port)
    inst.start()
    try:
        yield port
    finally:
        if inst.proc is not None:
            assert inst.stop() == 0, inst.daemon_log()[-3000:]
        inst.close()


@pytest.fixture
def web(tmp_path: Path, database_url: str) -> Iterator[tuple[Instance, int]]:
    inst = Instance(tmp_path, database_url=database_url)
    with serving(inst) as port:
        yield inst, port


def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def test_healthz_answers_with_the_backlogs_and_every_response_is_locked_down(web: tuple[Instance, int]):
    inst, port = web
    status, headers, body = get(port, "/healthz")
    assert status == 200, body
    health = json.loads(body)
    assert health["status"] == "ok" and health["database"] == "ok" and health["worker"] == "running"
    assert health["spool_pending"] == 0 and health["outbox"] == {"queued": 0, "failed": 0} and health["imap"] == []
    assert headers["cache-control"] == "no-store" and headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"
    assert "server" not in headers
    status, headers, _ = get(port, "/no-such-page")
    assert status == 404 and headers["x-content-type-options"] == "nosniff"
    deadline = time.monotonic() + 10    # the line is written once the answer has gone out
    while "path=/no-such-page status=404" not in (log := inst.daemon_log()):
        assert time.monotonic() < deadline, log[-2000:]
        time.sleep(0.05)
    assert "path=/healthz status=200" in log


def test_a_web_address_in_use_stops_the_start_with_the_key_to_change(tmp_path: Path, database_url: str):
    inst = Instance(tmp_path, database_url=database_url)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        with_web(inst, taken.getsockname()[1])
        proc = inst.cli("serve", check=False)
    assert proc.returncode == 69, proc.stderr
    assert b"web.listen" in proc.stderr and b"--web" in proc.stderr and b"Traceback" not in proc.stderr
