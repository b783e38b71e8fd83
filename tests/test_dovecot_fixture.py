"""The Dovecot test helper against the real server: mail in and out, IDLE, restarts, late users, UIDVALIDITY
changes, refused logins, and a SIGKILL that leaves no process and frees the port."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapclient.exceptions import IMAPClientAbortError, LoginError

from tests import dovecot as dovecot_module
from tests.dovecot import Dovecot, port_open
from tests.helpers import make_mail

PASSWORD = "s3cret"


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    """One server for the module: starting one takes about 50 ms, but the module's tests share it."""
    server = Dovecot.start(users={"support": PASSWORD})
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def user(dovecot: Dovecot, request) -> str:
    """A fresh IMAP user for each test, so that tests sharing the server do not see each other's mail."""
    name = re.sub(r"\W", "_", request.node.name)
    dovecot.add_user(name, PASSWORD)
    return name


def live_processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention ``text``: Dovecot titles its children after the instance
    name (``dovecot-test-PORT/imap-login``, ``.../imap [user 127.0.0.1]``...); the master shows the config path."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmdline and state != "Z":
            found.append(f"{proc.name}: {cmdline}")
    return found


def test_append_then_read_back_without_setting_seen(dovecot: Dovecot, user: str):
    raws = [make_mail(subject=f"message {i}").as_bytes().replace(b"\n", b"\r\n") for i in range(2)]
    uids = [dovecot.append(user, raw) for raw in raws]
    assert uids == [1, 2] == dovecot.uids(user)
    with dovecot.client(user) as imap:
        imap.select_folder("INBOX")  # read-write: a plain BODY[] or RFC822 fetch would set \Seen here
        fetched = imap.fetch(uids, ["BODY.PEEK[]"])
    assert [fetched[uid][b"BODY[]"] for uid in uids] == raws
    assert all(b"\\Seen" not in flags for flags in dovecot.flags(user).values())
    assert dovecot.append(user, raws[0], flags=[b"\\Seen"]) == 3
    assert b"\\Seen" in dovecot.flags(user)[3]


def test_idle_sees_an_append_from_another_connection(dovecot: Dovecot, user: str):
    with dovecot.client(user) as imap:
        imap.select_folder("INBOX")
        imap.idle()
        started = time.monotonic()
        dovecot.append(user, make_mail(subject="pushed").as_bytes())
        responses = imap.idle_check(timeout=5)
        elapsed = time.monotonic() - started
        imap.idle_done()
    assert (1, b"EXISTS") in responses, responses
    assert elapsed < 5


def test_restart_keeps_the_mail_and_the_port(dovecot: Dovecot, user: str):
    dovecot.append(user, make_mail(subject="before the restart").as_bytes())
    dovecot.create_folder(user, "Processed")
    port = dovecot.port
    with dovecot.client(user) as old:
        old.select_folder("INBOX")
        dovecot.restart()
        with pytest.raises((IMAPClientAbortError, OSError)):  # the server said BYE and closed the connection
            old.noop()
    assert dovecot.port == port and dovecot.running
    assert dovecot.uids(user) == [1]
    assert dovecot.folder_exists(user, "Processed")
    assert not dovecot.folder_exists(user, "Archive")


def test_a_user_added_after_start_can_log_in(dovecot: Dovecot):
    dovecot.add_user("latecomer", "late-pw")
    with dovecot.client("latecomer") as imap:
        assert imap.select_folder("INBOX")[b"EXISTS"] == 0


@pytest.mark.parametrize("restart", [False, True], ids=["online", "restart"])
def test_reset_uidvalidity_keeps_the_messages(dovecot: Dovecot, user: str, restart: bool):
    dovecot.create_folder(user, "Archive")
    for folder in ("INBOX", "Archive"):
        for i in range(3):
            dovecot.append(user, make_mail(subject=f"{folder} {i}").as_bytes(), folder=folder,
                           flags=[b"\\Seen"] if i == 0 else [])
    with dovecot.client(user) as imap:  # a gap in the UIDs, so that renumbering shows
        imap.select_folder("INBOX")
        imap.delete_messages([1])
        imap.expunge()
    for folder, other in (("INBOX", "Archive"), ("Archive", "INBOX")):
        before, other_before = dovecot.uidvalidity(user, folder), dovecot.uidvalidity(user, other)
        messages = dovecot.messages(user, folder)
        seen = sorted(raw for uid, raw in messages.items() if b"\\Seen" in dovecot.flags(user, folder)[uid])
        after = dovecot.reset_uidvalidity(user, folder, restart=restart)
        assert after != before and dovecot.uidvalidity(user, folder) == after
        assert dovecot.uidvalidity(user, other) == other_before
        again = dovecot.messages(user, folder)
        if restart:  # renumbered from 1, as by a server that rebuilt the mailbox
            assert list(again) == list(range(1, len(messages) + 1))
            assert list(again.values()) == list(messages.values())
        else:
            assert again == messages
        flags = dovecot.flags(user, folder)
        assert sorted(raw for uid, raw in again.items() if b"\\Seen" in flags[uid]) == seen
    before = dovecot.uidvalidity(user)  # the other way after this one: they must not pick the same value
    assert dovecot.reset_uidvalidity(user, restart=not restart) != before


def test_a_wrong_password_is_refused_without_delaying_later_logins(dovecot: Dovecot, user: str):
    started = time.monotonic()
    with pytest.raises(LoginError):
        dovecot.client(user, "wrong")
    assert "Password mismatch" in dovecot.log()
    with dovecot.client(user):  # Dovecot's auth penalty would hold this login back for 2 s or more
        pass
    assert time.monotonic() - started < 1.5


def test_sigkill_leaves_no_process_and_frees_the_port():
    server = Dovecot.start(users={"a": "b"})
    try:
        with server.client("a") as imap:  # an imap process and an imap-login process exist now
            imap.select_folder("INBOX")
            master, instance = server.proc.pid, f"dovecot-test-{server.port}/"
            assert len(server.pids()) >= 4 and live_processes_mentioning(instance)
            server.stop(kill=True)
        assert not server.running and server.pids() == []
        assert not port_open(server.port)
        assert live_processes_mentioning(instance) == live_processes_mentioning(str(server.config)) == []
        assert not Path(f"/proc/{master}").exists()
        server.launch()  # the same port again, despite the pid file the SIGKILLed master left behind
        assert server.uids("a") == []
    finally:
        server.cleanup()
    assert not server.dir.exists()


def test_several_instances_run_side_by_side(dovecot: Dovecot, user: str):
    with Dovecot.start(users={user: "elsewhere"}) as other:  # cleaned up on leaving the block
        assert other.port != dovecot.port
        other.append(user, make_mail().as_bytes())
        assert other.uids(user) == [1] and dovecot.uids(user) == []
    assert not other.dir.exists()


def test_a_missing_dovecot_fails_and_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(dovecot_module, "DOVECOT", Path("/nonexistent/dovecot"))
    with pytest.raises(AssertionError, match="make test"):
        Dovecot.start()
