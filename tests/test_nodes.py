"""Several ``ticketd serve`` nodes on one PostgreSQL: every acknowledged message processed exactly once,
each notification sent once, the same message reaching both nodes at once one ticket and one duplicate,
a node SIGKILLed mid-load and restarted, and an IMAP mailbox imported (and the scheduler's jobs run) by one
node at a time and taken over by the survivor when its node dies."""

from __future__ import annotations

import email
import email.policy
import signal
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.dovecot import Dovecot
from tests.helpers import Instance, make_mail
from tests.relay import Relay

LEASE = 3   # [database] lease_seconds: a dead node's work moves after this


def node(root: Path, name: str, url: str, extra: str = "", state: Path | None = None) -> Instance:
    """A node's configuration: its own ports and name, the shared database (and state directory, for the
    attachments and the installation secret, as a shared filesystem would be)."""
    (root / name).mkdir()
    inst = Instance(root / name, database_url=url, extra_config=extra)
    if state is not None:
        inst.state = state
    inst.write_config()
    text = inst.config.read_text().replace(f'url = "{url}"\n', f'url = "{url}"\nlease_seconds = {LEASE}\n'
                                                                   f'node = "{name}"\n', 1)
    inst.config.write_text(text)
    return inst


@pytest.fixture
def nodes(tmp_path: Path, pg_server, relay: Relay) -> Iterator[tuple[Instance, Instance]]:
    url = pg_server.new_database()
    a = node(tmp_path, "a", url, relay.outbound_toml())
    b = node(tmp_path, "b", url, relay.outbound_toml(), state=a.state)
    a.start()
    b.start()
    try:
        yield a, b
    finally:
        for inst in (a, b):
            if inst.proc is not None:
                code = inst.stop()
                assert code == 0, f"node exited {code} on SIGTERM:\n{inst.daemon_log()[-3000:]}"
            inst.close()


def deliver(inst: Instance, msg: EmailMessage, tries: int = 1) -> bool:
    """Send ``msg`` like an MTA: True once the node said 250; a refused connection or a 4xx is retried."""
    for _ in range(tries):
        try:
            with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as smtp:
                smtp.send_message(msg, from_addr=msg["From"].addresses[0].addr_spec)
                return True
        except (OSError, smtplib.SMTPException):
            time.sleep(0.2)
    return False


def wait_processed(inst: Instance, timeout: float = 60) -> None:
    """Until every spooled message has its outcome and every mail left the outbox."""
    deadline = time.monotonic() + timeout
    while True:
        (r,) = inst.query("SELECT (SELECT count(*) FROM inbound) AS spooled,"
                          " (SELECT count(*) FROM import_log) AS logged,"
                          " (SELECT count(*) FROM notify_queue) AS events,"
                          " (SELECT count(*) FROM outbox WHERE state = 'queued') AS queued")
        if r["spooled"] == r["logged"] and r["events"] == 0 and r["queued"] == 0:
            return
        assert time.monotonic() < deadline, f"not done after {timeout}s: {dict(zip(r.keys(), r, strict=True))}"
        time.sleep(0.1)


def test_two_nodes_process_every_message_once_through_a_sigkill(nodes: tuple[Instance, Instance], relay: Relay):
    a, b = nodes
    acked: list[str] = []          # Message-IDs a node answered 250 for
    lock = threading.Lock()
    pairs_done = threading.Event()

    def sender(inst: Instance, prefix: str, count: int, kill_at: int | None = None,
               fallback: Instance | None = None) -> None:
        target = inst
        for i in range(count):
            if kill_at is not None and i == kill_at:
                assert pairs_done.wait(60)     # (the same-message pairs need both nodes up)
                deadline = time.monotonic() + 60   # it has done some of the work (a loaded machine lags)
                while not inst.query("SELECT 1 FROM inbound WHERE claimed_by = 'a' AND state = 'done'"):
                    assert time.monotonic() < deadline, "node a processed nothing in 60 s"
                    time.sleep(0.05)
                inst.stop(signal.SIGKILL)      # mid-load: its worker and sender children go with it, and
                target = fallback or inst      # the MTA turns to the other MX; it stays dead for now
            msg = make_mail(subject=f"{prefix} {i}", sender=f"{prefix}{i}@client.example")
            if deliver(target, msg, tries=50):
                with lock:
                    acked.append(msg["Message-ID"])

    def same_to_both(i: int) -> None:
        """An MTA retrying the same message at the second MX while the first still works on it."""
        msg = make_mail(subject=f"twice {i}", sender=f"twice{i}@client.example")
        start = threading.Barrier(2)

        def one(inst: Instance) -> None:
            start.wait()
            if deliver(inst, msg, tries=50):
                with lock:
                    acked.append(msg["Message-ID"])

        pair = [threading.Thread(target=one, args=(inst,)) for inst in (a, b)]
        for t in pair:
            t.start()
        for t in pair:
            t.join()

    threads = [threading.Thread(target=sender, args=(a, "to-a", 60, 25, b)),
               threading.Thread(target=sender, args=(b, "to-b", 60))]
    for t in threads:
        t.start()
    for i in range(8):
        same_to_both(i)
    pairs_done.set()
    for t in threads:
        t.join()
    # The survivor takes over what the dead node had claimed (spool rows, queued notifications, outbox
    # rows) once its claims run out: everything is processed and sent without it.
    wait_processed(b)
    a.start()   # back, under its own name: nothing of its old claims is left to do twice
    time.sleep(LEASE)
    wait_processed(b)

    distinct = set(acked)
    assert len(distinct) == 60 + 60 + 8
    spooled = Counter(r["message_id"] for r in b.query(
        "SELECT l.message_id FROM inbound i JOIN import_log l ON l.inbound_id = i.id"))
    # Nothing acknowledged was lost, and every spooled copy has exactly one outcome.
    assert distinct <= set(spooled)
    outcomes = Counter(r["outcome"] for r in b.query("SELECT outcome FROM import_log"))
    tickets = b.query("SELECT subject, count(*) AS n FROM tickets GROUP BY subject")
    # One ticket per message, whatever reached both nodes (or reached one twice around the kill).
    assert len(tickets) == len(distinct) and all(r["n"] == 1 for r in tickets)
    assert set(outcomes) == {"new_ticket", "duplicate"} and outcomes["new_ticket"] == len(distinct)
    assert outcomes["duplicate"] == sum(spooled.values()) - len(distinct) >= 8
    # Each client's confirmation was queued once and went out once; only a mail the relay accepted in the
    # instant before its node was killed can go a second time (at least once), at most one per lane.
    rows = b.query("SELECT message_id, recipient, state FROM outbox")
    assert len(rows) == len(distinct) and {r["state"] for r in rows} == {"sent"}
    got = Counter(t.rcpt_tos[0] for t in relay.transactions)
    assert set(got) == {r["recipient"] for r in rows}
    assert sum(got.values()) - len(got) <= 2, [k for k, n in got.items() if n > 1]
    # Both nodes did work (the claims spread the spool between them).
    workers = {r["claimed_by"] for r in b.query("SELECT DISTINCT claimed_by FROM inbound")}
    assert {"a", "b"} <= workers


def test_nodes_without_a_shared_disk_keep_attachments_in_the_database(tmp_path: Path, pg_server, relay: Relay):
    """Separate state directories (the installation secret copied, as the README says): an attachment that
    came in on one node goes out, from the database, with a reply made on the other."""
    url = pg_server.new_database()
    extra = relay.outbound_toml() + '\n[attachments]\nstore = "database"\n'
    a, b = node(tmp_path, "a", url, extra), node(tmp_path, "b", url, extra)
    a.start()
    try:
        b.state.mkdir(parents=True)
        (b.state / "secret.key").write_bytes((a.state / "secret.key").read_bytes())
        b.start()
        msg = make_mail(subject="Screenshot attached", sender="shot@client.example")
        msg.add_attachment(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40, maintype="image", subtype="png",
                           filename="screen.png")
        assert deliver(a, msg)
        wait_processed(a)
        (sha,) = [r["sha256"] for r in a.query("SELECT sha256 FROM attachments")]
        assert a.query("SELECT count(*) AS n FROM blobs WHERE sha256 = ?", (sha,))[0]["n"] == 1
        assert not (a.state / "attachments").exists() and not (b.state / "attachments").exists()
        tid = a.query("SELECT tid FROM tickets")[0]["tid"]
        b.cli("staff", "add", "sam@helpdesk.example", "--name", "Sam", "--admin")
        report = b.state.parent / "report.pdf"
        report.write_bytes(b"%PDF-1.4\n" + b"0" * 5000)
        b.cli("ticket", "reply", tid, "--as", "sam", "--attach", str(report), "--body-file", "-", input=b"Here.\n")
        wait_processed(b)
        (reply,) = [email.message_from_bytes(t.data, policy=email.policy.default) for t in relay.transactions
                    if b"Here." in t.data]
        (part,) = [p for p in reply.walk() if p.get_filename() == "report.pdf"]
        assert part.get_payload(decode=True) == report.read_bytes()   # read back from the database
        assert not (b.state / "attachments").exists()
    finally:
        for inst in (a, b):
            if inst.proc is not None:
                assert inst.stop() == 0, inst.daemon_log()[-3000:]
            inst.close()


PASSWORD = "s3cret"


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    server = Dovecot.start(users={"shared": PASSWORD})
    try:
        yield server
    finally:
        server.cleanup()


def test_one_node_imports_a_mailbox_and_the_survivor_takes_it_over(tmp_path: Path, pg_server, dovecot: Dovecot):
    url = pg_server.new_database()
    imap = (f'\n[[imap]]\nname = "shared-inbox"\nhost = "127.0.0.1"\nport = {dovecot.port}\nsecurity = "none"\n'
            f'username = "shared"\npassword = "{PASSWORD}"\ndepartment = "Billing"\npoll_seconds = 1\n')
    a = node(tmp_path, "a", url, imap)
    b = node(tmp_path, "b", url, imap, state=a.state)
    a.start()
    b.start()
    try:
        for i in range(5):
            dovecot.append("shared", make_mail(subject=f"imap {i}", sender=f"i{i}@client.example").as_bytes())
        holder = wait_lease(a, "imap:shared-inbox")
        (status,) = a.cli_json("imap", "status")
        assert status["node"] == holder and status["node_until"]
        wait_count(a, "SELECT count(*) AS n FROM import_log", 5)
        first, second = (a, b) if holder == "a" else (b, a)
        first.stop(signal.SIGKILL)
        for i in range(5, 10):
            dovecot.append("shared", make_mail(subject=f"imap {i}", sender=f"i{i}@client.example").as_bytes())
        assert wait_lease(second, "imap:shared-inbox", not_holder=holder) != holder
        wait_count(second, "SELECT count(*) AS n FROM import_log", 10)
        assert second.query("SELECT count(*) AS n FROM tickets")[0]["n"] == 10
        assert second.query("SELECT count(*) AS n FROM import_log WHERE outcome != 'new_ticket'")[0]["n"] == 0
        # An admin's one-off sync on the other node does not race the node that imports the mailbox.
        proc = first.cli("imap", "sync", "--once", check=False)
        assert proc.returncode == 75 and b"imports this mailbox" in proc.stderr, proc.stderr
    finally:
        for inst in (a, b):
            if inst.proc is not None:
                assert inst.stop() == 0, inst.daemon_log()[-3000:]
            inst.close()


def wait_lease(inst: Instance, name: str, not_holder: str = "", timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        rows = inst.query("SELECT holder FROM leases WHERE name = ?", (name,))
        if rows and rows[0]["holder"] != not_holder:
            return str(rows[0]["holder"])
        assert time.monotonic() < deadline, f"lease {name} still {rows and rows[0]['holder']}"
        time.sleep(0.1)


def wait_count(inst: Instance, sql: str, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (got := inst.query(sql)[0]["n"]) < n:
        assert time.monotonic() < deadline, f"{sql}: {got} of {n}"
        time.sleep(0.1)


def test_the_scheduler_runs_on_one_node_moves_when_it_dies_and_never_twice(tmp_path: Path, pg_server):
    """One node at a time holds the scheduler lease and runs the jobs; when it dies the survivor takes the
    lease over; neither the takeover nor a restart runs a job again before its interval has passed."""
    url = pg_server.new_database()
    extra = "\n[autoclose]\nhours = 24\n"
    a = node(tmp_path, "a", url, extra)
    b = node(tmp_path, "b", url, extra, state=a.state)
    runs = "SELECT runs AS n FROM job_runs WHERE name = 'auto_close'"

    def scheduler_started(inst: Instance, times: int = 1) -> None:
        deadline = time.monotonic() + 30
        while inst.daemon_log().count("scheduler started") < times:
            assert time.monotonic() < deadline, inst.daemon_log()[-3000:]
            time.sleep(0.1)

    a.start()
    try:
        assert wait_lease(a, "scheduler") == "a"
        wait_count(a, runs, 1)                       # due at once: it never ran
        b.start()
        time.sleep(LEASE)                            # b asks every second meanwhile
        assert wait_lease(b, "scheduler") == "a" and "scheduler started" not in b.daemon_log()
        a.stop(signal.SIGKILL)
        assert wait_lease(b, "scheduler", not_holder="a") == "b"
        scheduler_started(b)
        assert b.stop() == 0                         # a clean stop gives the lease up
        a.start()
        scheduler_started(a, 2)
        time.sleep(1)
        (row,) = a.query("SELECT runs, node, error FROM job_runs WHERE name = 'auto_close'")
        assert (row["runs"], row["node"], row["error"]) == (1, "a", "")   # no second run: interval 10 min
    finally:
        for inst in (a, b):
            if inst.proc is not None:
                assert inst.stop() == 0, inst.daemon_log()[-3000:]
            inst.close()
