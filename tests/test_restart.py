"""Nothing lost across restarts: spooled rows are processed when the daemon comes back."""

from __future__ import annotations

import signal
import smtplib
import threading

from tests.helpers import Instance, make_mail


def test_unprocessed_spool_rows_are_processed_after_start(instance: Instance):
    # Mail piped while the daemon is down waits in the spool ...
    mails = [make_mail(subject=f"while down {i}") for i in range(5)]
    for msg in mails:
        assert instance.cli("pipe", input=msg.as_bytes()).returncode == 0
    assert instance.query("SELECT count(*) AS n FROM inbound WHERE state = 'new'")[0]["n"] == 5
    instance.start()
    try:
        rows = instance.wait_outcomes(5)
        assert [r["outcome"] for r in rows] == ["new_ticket"] * 5
        # ... and mail piped while it runs is picked up without a wake-up call.
        assert instance.cli("pipe", input=make_mail(subject="while up").as_bytes()).returncode == 0
        assert instance.wait_outcomes(6)[5]["outcome"] == "new_ticket"
    finally:
        assert instance.stop() == 0
    subjects = sorted(r["subject"] for r in instance.query("SELECT subject FROM tickets"))
    assert subjects == sorted([f"while down {i}" for i in range(5)] + ["while up"])


def test_sigkill_under_load_loses_nothing_and_doubles_nothing(instance: Instance):
    """Every message that got a 250 before a SIGKILL becomes exactly one ticket after the restart;
    the client retries what got no answer, and the retry is a duplicate at most."""
    instance.start()
    accepted: list[str] = []
    unanswered: list = []
    stop = threading.Event()

    def client(n: int) -> None:
        for i in range(400):
            if stop.is_set():
                return
            msg = make_mail(subject=f"load {n}-{i}")
            try:
                with smtplib.SMTP("127.0.0.1", instance.smtp_port, timeout=10) as smtp:
                    smtp.send_message(msg)
                accepted.append(msg["Message-ID"])
            except (OSError, smtplib.SMTPException):
                unanswered.append(msg)
                return

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    instance.wait_outcomes(40, timeout=60)
    instance.stop(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(accepted) >= 40

    instance.start()
    try:
        for msg in unanswered:  # the client's retry of whatever got no 250
            with smtplib.SMTP("127.0.0.1", instance.smtp_port, timeout=10) as smtp:
                smtp.send_message(msg)
        total = instance.query("SELECT count(*) AS n FROM inbound")[0]["n"]
        rows = instance.wait_outcomes(total, timeout=60)
    finally:
        assert instance.stop() == 0
    assert len(rows) == total  # exactly one outcome per spooled message
    ids = [r["message_id"] for r in instance.query("SELECT message_id FROM messages")]
    assert len(ids) == len(set(ids)), "a message became two ticket messages"
    assert set(accepted) <= set(ids), "a message acknowledged with 250 was lost"
    assert {r["outcome"] for r in rows} <= {"new_ticket", "duplicate"}
    assert len(instance.query("SELECT * FROM tickets")) == len(ids)


def test_sigterm_finishes_and_exits_zero(daemon: Instance):
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=10) as smtp:
        smtp.send_message(make_mail())
    daemon.wait_outcomes(1)
    assert daemon.stop(signal.SIGTERM) == 0
    assert "stopped" in daemon.daemon_log()


def test_restart_delay_grows_with_deaths_in_a_row_and_starts_again_after_a_good_run():
    from maild.app import RestartBackoff

    now = [1000.0]
    backoff = RestartBackoff(clock=lambda: now[0], healthy=60)
    delays = []
    for _ in range(7):  # each child dies a second after its start
        backoff.started()
        now[0] += 1
        delays.append(backoff.died())
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    backoff.started()
    now[0] += 3600  # an hour of good work, then a crash: back to the first delay
    assert backoff.died() == 1
    backoff.started()
    now[0] += 1
    assert backoff.died() == 2
    assert backoff.died() == 4  # a start that failed (no started()) counts as a death in a row
