"""IMAP import against a real Dovecot: tickets, after-import actions, IDLE, crashes, restarts,
UIDVALIDITY changes and a refused login."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient

from maild import config
from maild.receive.imap import Bridge, Importer
from maild.store.db import open_database
from tests.dovecot import HOST, Dovecot
from tests.helpers import Instance, corpus_files, make_mail

PASSWORD = "s3cret"


POOL = [f"user{i}" for i in range(40)]


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    server = Dovecot.start(users={name: PASSWORD for name in POOL})
    server.unused = list(POOL)  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def mailbox(dovecot: Dovecot) -> str:
    """A fresh IMAP user for each test, so tests do not see each other's mail."""
    return dovecot.unused.pop(0)  # type: ignore[attr-defined]


def imap_config(dovecot: Dovecot, user: str, password: str = PASSWORD, **extra: object) -> str:
    settings: dict[str, object] = {
        "name": "support-inbox", "host": "127.0.0.1", "port": dovecot.port, "security": "none",
        "username": user, "password": password, "department": "Billing", "poll_seconds": 30, **extra,
    }
    return "\n[[imap]]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items()) + "\n"


def with_imap(instance: Instance, dovecot: Dovecot, user: str, **extra: object) -> Instance:
    instance.extra_config = imap_config(dovecot, user, **extra)
    instance.write_config()
    return instance


def sync_once(instance: Instance, *args: str, check: bool = True) -> dict:
    proc = instance.cli("imap", "sync", "--once", "--json", *args, check=check)
    return json.loads(proc.stdout) if proc.stdout else {}


def test_import_as_tickets_by_uid_then_flag_seen(instance: Instance, dovecot: Dovecot, mailbox: str):
    with_imap(instance, dovecot, mailbox)
    talon = sorted(p for p in corpus_files() if "talon" in str(p))[:3]
    for path in talon:
        dovecot.append(mailbox, path.read_bytes())
    # Read in another mail client already: imported all the same (by UID, not by \Seen).
    dovecot.append(mailbox, make_mail(subject="already read", to="someone@elsewhere.example").as_bytes(),
                   flags=[b"\\Seen"])
    out = sync_once(instance)
    assert out["accounts"]["support-inbox"] == {"spooled": 4, "error": None}
    assert sum(out["outcomes"].values()) == 4 and "failed" not in out["outcomes"]
    flags = dovecot.flags(mailbox)
    assert len(flags) == 4 and all(b"\\Seen" in f for f in flags.values())
    # No department address among the recipients: the account's department.
    t = instance.query("SELECT d.name FROM tickets t JOIN departments d ON d.id = t.department_id"
                       " WHERE t.subject = 'already read'")
    assert [r["name"] for r in t] == ["Billing"]
    assert instance.query("SELECT DISTINCT source FROM inbound")[0]["source"] == "imap"
    # Nothing new: nothing imported, nothing duplicated.
    again = sync_once(instance)
    assert again["accounts"]["support-inbox"]["spooled"] == 0
    status = json.loads(instance.cli("imap", "status", "--json").stdout)[0]
    assert status["state"] == "synced" and status["last_sync"] and status["imported"] == 4
    assert status["folders"]["INBOX"]["last_uid"] == max(dovecot.uids(mailbox))


def test_after_import_move_creates_the_folder(instance: Instance, dovecot: Dovecot, mailbox: str):
    with_imap(instance, dovecot, mailbox, after_import="move:Processed")
    for i in range(3):
        dovecot.append(mailbox, make_mail(subject=f"move me {i}").as_bytes())
    assert sync_once(instance)["outcomes"] == {"new_ticket": 3}
    assert dovecot.uids(mailbox, "INBOX") == []
    assert len(dovecot.uids(mailbox, "Processed")) == 3


def test_after_import_move_without_the_move_extension_copies_then_deletes(instance: Instance):
    """Servers without RFC 6851 MOVE: COPY (creating the folder on the first failure), then delete."""
    old = Dovecot.start(users={"old": PASSWORD},
                        extra_config="protocol imap {\n  imap_capability = IMAP4rev1 LITERAL+ IDLE UIDPLUS\n}\n")
    try:
        with_imap(instance, old, "old", after_import="move:Processed")
        for i in range(3):
            old.append("old", make_mail(subject=f"copy me {i}").as_bytes())
        assert sync_once(instance)["outcomes"] == {"new_ticket": 3}
        assert old.uids("old", "INBOX") == []
        assert len(old.uids("old", "Processed")) == 3
        with IMAPClient(HOST, port=old.port, ssl=False, timeout=10) as client:  # so the COPY path ran
            client.login("old", PASSWORD)
            assert b"MOVE" not in client.capabilities() and b"UIDPLUS" in client.capabilities()
    finally:
        old.cleanup()


def test_after_import_delete(instance: Instance, dovecot: Dovecot, mailbox: str):
    with_imap(instance, dovecot, mailbox, after_import="delete")
    for i in range(3):
        dovecot.append(mailbox, make_mail(subject=f"delete me {i}").as_bytes())
    assert sync_once(instance)["outcomes"] == {"new_ticket": 3}
    assert dovecot.uids(mailbox) == []


def test_too_large_is_blocked_without_download_and_the_sync_goes_on(instance: Instance, dovecot: Dovecot,
                                                                     mailbox: str):
    instance.max_size = 64 * 1024
    with_imap(instance, dovecot, mailbox)
    big = make_mail(subject="huge attachment")
    big.add_attachment(b"\0" * (200 * 1024), maintype="application", subtype="zip", filename="big.zip")
    dovecot.append(mailbox, big.as_bytes())
    dovecot.append(mailbox, make_mail(subject="small one").as_bytes())
    out = sync_once(instance)
    assert out["outcomes"] == {"blocked:too_large": 1, "new_ticket": 1}
    row = instance.cli_json("import-log", "--outcome", "blocked:too_large")["items"][0]
    assert row["subject"] == "huge attachment" and row["from"] == "alice@client.example"
    assert row["size"] > 200 * 1024
    raw = instance.query("SELECT raw FROM inbound WHERE size > 200000")[0]["raw"]
    assert len(raw) < 4096  # only the header was downloaded
    assert len(dovecot.flags(mailbox)) == 2


def test_idle_delivers_within_seconds(tmp_path: Path, dovecot: Dovecot, mailbox: str):
    inst = Instance(tmp_path)
    with_imap(inst, dovecot, mailbox)
    inst.start()
    try:
        wait_status(inst, "idle")
        dovecot.append(mailbox, make_mail(subject="pushed").as_bytes())  # a second connection
        # A deadline, not a speed goal: well before the poll_seconds (30 s) re-sync, so only IDLE can pass.
        rows = inst.wait_outcomes(1, timeout=15)
        assert rows[0]["outcome"] == "new_ticket"
    finally:
        assert inst.stop() == 0


def wait_status(inst: Instance, state: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        rows = []
        if inst.db_path.exists():
            try:
                rows = inst.query("SELECT * FROM imap_status")
            except Exception:
                rows = []
        if rows and rows[0]["state"] == state:
            return dict(rows[0])
        if time.monotonic() > deadline:
            raise AssertionError(f"imap state never became {state!r}: {[dict(r) for r in rows]}\n"
                                 f"{inst.daemon_log()[-2000:]}")
        time.sleep(0.05)


def test_sigkill_mid_batch_imports_every_message_exactly_once(tmp_path: Path, dovecot: Dovecot, mailbox: str):
    inst = Instance(tmp_path)
    with_imap(inst, dovecot, mailbox, batch=20)
    ids = []
    with dovecot.client(mailbox) as client:
        for i in range(300):
            msg = make_mail(subject=f"bulk {i}")
            ids.append(msg["Message-ID"])
            client.append("INBOX", msg.as_bytes())
    inst.start()
    deadline = time.monotonic() + 30
    while True:  # kill it while the import is under way
        n = inst.query("SELECT count(*) AS n FROM inbound")[0]["n"] if inst.db_path.exists() else 0
        if n >= 40:
            break
        assert time.monotonic() < deadline, inst.daemon_log()[-2000:]
        time.sleep(0.01)
    inst.stop(signal.SIGKILL)
    assert inst.query("SELECT count(*) AS n FROM inbound")[0]["n"] < 300, "killed too late to prove anything"
    inst.start()
    try:
        rows = inst.wait_outcomes(300, timeout=60)
        wait_status(inst, "idle")
    finally:
        assert inst.stop() == 0
    assert len(rows) == 300
    assert {r["outcome"] for r in rows} == {"new_ticket"}
    got = [r["message_id"] for r in inst.query("SELECT message_id FROM messages")]
    assert sorted(got) == sorted(ids)
    flags = dovecot.flags(mailbox)
    assert all(b"\\Seen" in f for f in flags.values())
    assert inst.query("SELECT count(*) AS n FROM imap_pending")[0]["n"] == 0


def test_dovecot_restart_mid_run_reconnects_without_loss(tmp_path: Path, dovecot: Dovecot, mailbox: str):
    inst = Instance(tmp_path)
    with_imap(inst, dovecot, mailbox, poll_seconds=2)
    inst.start()
    try:
        for i in range(20):
            dovecot.append(mailbox, make_mail(subject=f"before {i}").as_bytes())
        inst.wait_outcomes(20, timeout=30)
        dovecot.restart()
        for i in range(20):
            dovecot.append(mailbox, make_mail(subject=f"after {i}").as_bytes())
        rows = inst.wait_outcomes(40, timeout=60)
        assert len(rows) == 40 and {r["outcome"] for r in rows} == {"new_ticket"}
        status = wait_status(inst, "idle")
        assert status["connected"] == 1
    finally:
        assert inst.stop() == 0
    assert "imap backoff" in inst.daemon_log() or "imap recovered" in inst.daemon_log()


def test_uidvalidity_change_rescans_without_duplicates(instance: Instance, dovecot: Dovecot, mailbox: str):
    with_imap(instance, dovecot, mailbox)
    for i in range(5):
        dovecot.append(mailbox, make_mail(subject=f"keep {i}").as_bytes())
    assert sync_once(instance)["outcomes"] == {"new_ticket": 5}
    before = json.loads(instance.cli("imap", "status", "--json").stdout)[0]["folders"]["INBOX"]["uidvalidity"]
    dovecot.reset_uidvalidity(mailbox)
    out = sync_once(instance)
    assert out["outcomes"] == {"duplicate": 5}
    assert instance.query("SELECT count(*) AS n FROM tickets")[0]["n"] == 5
    after = json.loads(instance.cli("imap", "status", "--json").stdout)[0]["folders"]["INBOX"]["uidvalidity"]
    assert after != before


def test_wrong_password_is_a_clear_status_without_a_retry_storm(tmp_path: Path, dovecot: Dovecot, mailbox: str):
    inst = Instance(tmp_path)
    inst.extra_config = imap_config(dovecot, mailbox, password="wrong")
    inst.write_config()
    failures_before = dovecot.log().count("auth failed") + dovecot.log().count("Password mismatch")
    inst.start()
    try:
        status = wait_status(inst, "login_failed")
        assert "login refused" in status["last_error"] and mailbox in status["last_error"]
        time.sleep(3)  # a retry storm would show up here as many more attempts
        shown = json.loads(inst.cli("imap", "status", "--json").stdout)[0]
        assert shown["state"] == "login_failed" and shown["next_try_at"]
        # SMTP keeps working while the mailbox cannot be read.
        import smtplib

        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=10) as smtp:
            smtp.send_message(make_mail(subject="smtp still works"))
        inst.wait_outcomes(1)
    finally:
        assert inst.stop() == 0
    assert inst.daemon_log().count("imap login_failed") == 1
    text = dovecot.log()
    attempts = text.count("auth failed") + text.count("Password mismatch") - failures_before
    assert attempts <= 2, f"{attempts} login attempts in ~4 s"


def test_sync_once_reports_a_refused_login_and_a_missing_folder(instance: Instance, dovecot: Dovecot,
                                                               mailbox: str):
    instance.extra_config = imap_config(dovecot, mailbox, password="wrong")
    instance.write_config()
    proc = instance.cli("imap", "sync", "--once", check=False)
    assert proc.returncode == 77 and b"login refused" in proc.stderr
    with_imap(instance, dovecot, mailbox, folders=["INBOX", "Nope"])
    proc = instance.cli("imap", "sync", "--once", check=False)
    assert proc.returncode == 66 and b"Nope" in proc.stderr


def test_imap_test_command(instance: Instance, dovecot: Dovecot, mailbox: str):
    with_imap(instance, dovecot, mailbox)
    out = json.loads(instance.cli("imap", "test", "support-inbox", "--json").stdout)
    assert "IDLE" in out["capabilities"] and "INBOX" in out["folders"] and out["missing_folders"] == []
    assert instance.cli("imap", "test", "nope", check=False).returncode == 66  # no such mailbox


def test_plain_imap_to_a_remote_host_is_refused_by_config(instance: Instance):
    instance.extra_config = ('\n[[imap]]\nname = "x"\nhost = "imap.example.com"\nsecurity = "none"\n'
                             'username = "u"\npassword = "p"\n')
    instance.write_config()
    proc = instance.cli("check-config", check=False)
    assert proc.returncode == 78 and b"imap[0].security" in proc.stderr


def test_delete_mode_never_deletes_a_too_large_message(instance: Instance, dovecot: Dovecot, mailbox: str):
    """Only its header was downloaded: deleting it would lose the mail. It stays, flagged \\Seen."""
    instance.max_size = 64 * 1024
    with_imap(instance, dovecot, mailbox, after_import="delete")
    big = make_mail(subject="too big to delete")
    big.add_attachment(b"\0" * (200 * 1024), maintype="application", subtype="zip", filename="big.zip")
    dovecot.append(mailbox, big.as_bytes())
    dovecot.append(mailbox, make_mail(subject="small").as_bytes())
    assert sync_once(instance)["outcomes"] == {"blocked:too_large": 1, "new_ticket": 1}
    left = dovecot.messages(mailbox)
    assert len(left) == 1 and b"too big to delete" in next(iter(left.values()))
    assert all(b"\\Seen" in f for f in dovecot.flags(mailbox).values())
    assert sync_once(instance)["accounts"]["support-inbox"]["spooled"] == 0  # and not imported again


def test_moving_into_an_imported_folder_is_refused_by_config(instance: Instance, dovecot: Dovecot, mailbox: str):
    with_imap(instance, dovecot, mailbox, after_import="move:INBOX")
    proc = instance.cli("check-config", check=False)
    assert proc.returncode == 78 and b"imap[0].after_import" in proc.stderr


def test_two_mailboxes_import_side_by_side(tmp_path: Path, dovecot: Dovecot):
    """Each mailbox has its own thread and connection: neither gets in the other's way."""
    first, second = dovecot.unused.pop(0), dovecot.unused.pop(0)  # type: ignore[attr-defined]
    inst = Instance(tmp_path)
    inst.extra_config = imap_config(dovecot, first) + imap_config(dovecot, second, name="sales-inbox",
                                                                  department="Sales")
    inst.write_config()
    for i in range(60):
        dovecot.append(first, make_mail(subject=f"first {i}").as_bytes())
        dovecot.append(second, make_mail(subject=f"second {i}", to="sales@helpdesk.example").as_bytes())
    inst.start()
    try:
        rows = inst.wait_outcomes(120, timeout=60)
    finally:
        assert inst.stop() == 0
    assert {r["outcome"] for r in rows} == {"new_ticket"}
    assert "Traceback" not in inst.daemon_log()


def test_polling_when_idle_is_off(tmp_path: Path, dovecot: Dovecot, mailbox: str):
    inst = Instance(tmp_path)
    with_imap(inst, dovecot, mailbox, idle=False, poll_seconds=1)
    inst.start()
    try:
        wait_status(inst, "connected")
        dovecot.append(mailbox, make_mail(subject="polled").as_bytes())
        rows = inst.wait_outcomes(1, timeout=15)
        assert rows[0]["outcome"] == "new_ticket"
        assert inst.query("SELECT state FROM imap_status")[0]["state"] == "connected"  # never 'idle'
    finally:
        assert inst.stop() == 0


# -- push without gaps: mail that arrives while the importer is busy ------------------------------------------

class _Racer:
    """Appends one message to the mailbox (from another connection, as a mail server would) at a chosen
    moment of the importer's own work, once."""

    def __init__(self, dovecot: Dovecot, user: str, moment: str) -> None:
        self.dovecot, self.user, self.moment = dovecot, user, moment
        self.done = threading.Event()

    def at(self, moment: str) -> None:
        if moment == self.moment and not self.done.is_set():
            self.dovecot.append(self.user, make_mail(subject=f"arrived {moment}").as_bytes())
            self.done.set()


def racing_importer(racer: _Racer, *args: object) -> Importer:
    class Racing(Importer):
        def _download(self, client, batch):  # after the SEARCH, before the batch's commit
            items = super()._download(client, batch)
            racer.at("before_commit")
            return items

        def _after_import(self, client, folder, uidvalidity, uids):  # after the commit, before STORE
            racer.at("after_commit")
            super()._after_import(client, folder, uidvalidity, uids)

        def wait_for_mail(self, client):  # after the last STORE, before IDLE
            racer.at("before_idle")
            super().wait_for_mail(client)

    return Racing(*args)  # type: ignore[arg-type]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop in a thread, as the daemon's: the importer hands its database steps to it."""
    lp = asyncio.new_event_loop()
    thread = threading.Thread(target=lp.run_forever, daemon=True)
    thread.start()
    try:
        yield lp
    finally:
        lp.call_soon_threadsafe(lp.stop)
        thread.join(10)
        lp.close()


@pytest.mark.parametrize("moment", ["before_commit", "after_commit", "before_idle"])
def test_mail_arriving_while_the_importer_is_busy_is_imported_at_once(
        instance: Instance, dovecot: Dovecot, mailbox: str, loop: asyncio.AbstractEventLoop, moment: str):
    """The server announces such a message once (an EXISTS in the answer to our FETCH or STORE, or right
    behind IDLE's "+ idling"): missed, it would wait for the poll_seconds re-sync (60 s here), past the
    deadline below."""
    with_imap(instance, dovecot, mailbox, poll_seconds=60)
    account_settings = config.load(instance.config)
    account = account_settings.imap[0]
    dovecot.append(mailbox, make_mail(subject="already there").as_bytes())
    bridge = Bridge(loop)
    db = bridge(open_database(account_settings.database_url))
    racer = _Racer(dovecot, mailbox, moment)
    importer = racing_importer(racer, account, db, bridge, 1024 * 1024)
    thread = threading.Thread(target=importer.run, daemon=True)
    thread.start()
    try:
        assert racer.done.wait(20), f"the importer never reached {moment}"
        deadline = time.monotonic() + 20
        while (n := instance.query("SELECT count(*) AS n FROM inbound")[0]["n"]) < 2:
            assert time.monotonic() < deadline, f"the message that arrived {moment} was not imported"
            time.sleep(0.05)
        assert n == 2
        assert len(dovecot.flags(mailbox)) == 2 and all(b"\\Seen" in f for f in dovecot.flags(mailbox).values())
    finally:
        importer.stop.set()
        thread.join(30)
        bridge(db.close())
    assert not thread.is_alive()
