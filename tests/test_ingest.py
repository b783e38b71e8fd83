"""``ticketd ingest``: .eml files, mbox, Maildir; and the whole shared corpus with no failure."""

from __future__ import annotations

import json
import mailbox
import re
from collections import Counter

import pytest

from tests.helpers import Instance, corpus_files, make_mail


@pytest.mark.parametrize("parsers", [0, 2], ids=["parse-in-thread", "parser-processes"])
def test_every_corpus_message_gets_exactly_one_outcome_and_none_fails(tmp_path, parsers):
    instance = Instance(tmp_path, extra_config=f"\n[worker]\nparsers = {parsers}\n")
    files = corpus_files()
    proc = instance.cli("ingest", "--department", "Technical Support", str(files[0].parent.parent), "--json")
    out = json.loads(proc.stdout)
    assert out["messages"] == len(files)
    # The log an admin greps: one line per message with its outcome and queue id, and no library chatter.
    log = proc.stderr.decode().splitlines()
    processed = [line for line in log if " processed queue_id=" in line and " outcome=" in line]
    assert len(processed) == len(files)
    stray = [line for line in log if not re.match(r"\d{4}-\d\d-\d\dT[\d:.]+Z (INFO|WARNING|ERROR) ", line)
             or "mailparser" in line or "not handled" in line]
    assert not stray, stray[:5]
    assert [i["source_ref"] for i in out["items"]] == [str(f) for f in files]  # in order
    failed = [i for i in out["items"] if i["outcome"] == "failed"]
    assert not failed, f"failed: {failed[:5]}"
    rows = instance.query("SELECT inbound_id, outcome FROM import_log")
    assert len(rows) == len(files)
    assert len({r["inbound_id"] for r in rows}) == len(files)
    assert instance.query("SELECT count(*) AS n FROM inbound WHERE state != 'done'")[0]["n"] == 0
    # Ingesting the same files again changes nothing: all duplicates.
    again = instance.cli_json("ingest", "--department", "Technical Support", str(files[0].parent.parent))
    assert again["outcomes"] == {"duplicate": len(files)}


def test_ingest_mbox_maildir_and_eml_in_order(instance: Instance, tmp_path):
    box_path = tmp_path / "old.mbox"
    box = mailbox.mbox(box_path)
    first = make_mail(subject="From the mbox")
    box.add(first)
    box.add(make_mail(subject="Re: From the mbox", in_reply_to=first["Message-ID"]))
    box.close()
    md = mailbox.Maildir(tmp_path / "Maildir")
    md.add(make_mail(subject="From the Maildir", to="billing@helpdesk.example"))
    eml = tmp_path / "one.eml"
    eml.write_bytes(make_mail(subject="From a file", to="sales@helpdesk.example").as_bytes())
    out = instance.cli_json("ingest", str(box_path), str(tmp_path / "Maildir"), str(eml))
    assert [i["outcome"] for i in out["items"]] == ["new_ticket", "reply", "new_ticket", "new_ticket"]
    tickets = instance.cli_json("ticket", "list")["items"]
    assert Counter(t["department"] for t in tickets) == {"Technical Support": 1, "Billing": 1, "Sales": 1}


def test_ingest_missing_path_and_bad_department(instance: Instance, tmp_path):
    proc = instance.cli("ingest", str(tmp_path / "nope.mbox"), check=False)
    assert proc.returncode == 66 and b"nope.mbox" in proc.stderr
    proc = instance.cli("ingest", "--department", "Nope", str(tmp_path), check=False)
    assert proc.returncode == 66 and b"Nope" in proc.stderr  # no such department: as for pipe and the desk


def test_ingest_human_summary(instance: Instance, tmp_path):
    (tmp_path / "a.eml").write_bytes(make_mail().as_bytes())
    out = instance.cli("ingest", str(tmp_path)).stdout.decode()
    assert "1 message processed" in out and "new_ticket" in out


def test_ingest_beside_a_running_daemon(daemon: Instance, tmp_path):
    """Two workers on one spool: each message is processed once, by whichever claims it first."""
    folder = tmp_path / "mails"
    folder.mkdir()
    for i in range(600):
        (folder / f"{i:04}.eml").write_bytes(make_mail(subject=f"migrated {i}").as_bytes())
    out = daemon.cli_json("ingest", str(folder))
    assert out["messages"] == 600
    assert out["outcomes"] == {"new_ticket": 600}
    assert daemon.query("SELECT count(*) AS n FROM tickets")[0]["n"] == 600
    assert daemon.query("SELECT count(*) AS n FROM import_log")[0]["n"] == 600
    assert daemon.query("SELECT max(attempts) AS n FROM inbound")[0]["n"] == 1
