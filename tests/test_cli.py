"""The command line: help, configuration errors, import log, reprocess, tickets."""

from __future__ import annotations

import json
import sqlite3
import subprocess

import pytest

from tests.helpers import ROOT, TICKETD, Instance, make_mail

COMMANDS = [["serve"], ["pipe"], ["ingest"], ["process"], ["check-config"], ["import-log"],
            ["import-log", "show"], ["import-log", "import"], ["reprocess"], ["ticket"], ["ticket", "list"],
            ["ticket", "show"], ["imap"], ["imap", "status"], ["imap", "sync"], ["imap", "test"], ["ban"],
            ["ban", "add"], ["ban", "remove"], ["ban", "list"], ["clients"], ["clients", "add"],
            ["clients", "import"], ["clients", "list"], ["staff"], ["staff", "add"], ["staff", "list"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=" ".join)
def test_help_on_every_command(cmd):
    proc = subprocess.run([*TICKETD, *cmd, "--help"], capture_output=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0
    assert b"usage: ticketd" in proc.stdout
    assert b"--config" in proc.stdout and b"--state-dir" in proc.stdout


def test_check_config_prints_effective_settings(instance: Instance, tmp_path):
    out = json.loads(instance.cli("check-config").stdout)
    assert out["smtp"]["listen"] == f"127.0.0.1:{instance.smtp_port}"
    assert [d["name"] for d in out["departments"]] == ["Technical Support", "Billing", "Sales"]
    # --state-dir overrides the file, before or after the subcommand.
    other = tmp_path / "elsewhere"
    for args in (["--state-dir", str(other), "check-config"], ["check-config", "--state-dir", str(other)]):
        proc = subprocess.run([*TICKETD, "--config", str(instance.config), *args], capture_output=True,
                              timeout=60, cwd=ROOT)
        assert json.loads(proc.stdout)["state_dir"] == str(other)


def test_repository_default_config_is_valid():
    proc = subprocess.run([*TICKETD, "--config", str(ROOT / "ticketd.toml"), "check-config"],
                          capture_output=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["smtp"]["listen"] == "127.0.0.1:2525" and out["lmtp"]["listen"] == "127.0.0.1:2424"
    assert out["web"] == {"listen": "127.0.0.1:8025", "public_url": "http://127.0.0.1:8025"}
    assert out["outbound"]["transport"] == "maildir" and out["notifications"]["rules"] == {}
    assert out["state_dir"] == str(ROOT / "var")
    assert out["mail"]["domain"] == "helpdesk.example"
    assert {d["name"]: d["addresses"] for d in out["departments"]} == {
        "Technical Support": ["support@helpdesk.example"],
        "Billing": ["billing@helpdesk.example"],
        "Sales": ["sales@helpdesk.example"],
    }


def test_production_example_config_is_valid(tmp_path):
    proc = subprocess.run([*TICKETD, "--config", str(ROOT / "config" / "ticketd.production.toml"),
                           "--state-dir", str(tmp_path), "check-config"], capture_output=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["mail"]["trusted_authserv_ids"] == ["mx.helpdesk.example"]
    assert out["outbound"]["transport"] == "smtp" and out["outbound"]["security"] == "starttls"
    assert out["outbound"]["password_file"] == "/etc/ticketd/smtp-relay.secret" and "password" not in out["outbound"]


def test_config_from_environment(instance: Instance):
    proc = subprocess.run([*TICKETD, "check-config"], capture_output=True, timeout=60, cwd="/",
                          env={"TICKETD_CONFIG": str(instance.config), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("edit", "key", "words"),
    [
        (lambda t: t.replace("[smtp]", "[smtp]\nlisen = 1"), "smtp.lisen", "unknown setting"),
        (lambda t: t.replace("max_message_size = ", "max_message_size = -"), "mail.max_message_size", "size"),
        (lambda t: t.replace('domain = "helpdesk.example"', "domain = 42"), "mail.domain", "expected str"),
        (lambda t: t.replace('addresses = ["billing@helpdesk.example"]', 'addresses = ["billing"]'),
         "departments[1].addresses", "not a plain address"),
        (lambda t: t.replace('"billing@helpdesk.example"', '"support@helpdesk.example"'),
         "departments[1].addresses", "already used"),
        (lambda t: t + "\n[log]\nlevel = 'loud'\n", "log.level", "must be one of"),
        (lambda t: t.replace("[storage]", "[storage"), "", "not valid TOML"),
        (lambda t: t.replace("[smtp]", 'trusted_authserv_ids = ["mx example"]\n[smtp]'),
         "mail.trusted_authserv_ids", "Authentication-Results"),
        (lambda t: t + '\n[notifications.rules]\nticket_eaten = ["watchers"]\n', "notifications.rules.ticket_eaten",
         "unknown event"),
    ],
    ids=["unknown-key", "bad-size", "bad-type", "bad-address", "address-twice", "bad-level", "toml-syntax",
         "bad-authserv", "bad-rule"],
)
def test_bad_config_fails_at_start_naming_file_and_key(instance: Instance, edit, key, words):
    instance.config.write_text(edit(instance.config.read_text()))
    for args in (["check-config"], ["serve"], ["ticket", "list"]):
        proc = instance.cli(*args, check=False)
        assert proc.returncode == 78, (args, proc.stderr)
        err = proc.stderr.decode()
        assert str(instance.config) in err and words in err
        if key:
            assert f"'{key}'" in err


def test_missing_config_file(tmp_path):
    proc = subprocess.run([*TICKETD, "--config", str(tmp_path / "none.toml"), "serve"], capture_output=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 78 and b"none.toml" in proc.stderr and b"not found" in proc.stderr


def test_import_log_filters_show_and_reprocess_of_a_failure(instance: Instance):
    # A real failure inside the pipeline: a trigger makes ticket creation abort for one subject.
    instance.cli("pipe", input=make_mail(subject="fine").as_bytes())
    instance.cli("process")
    conn = sqlite3.connect(instance.db_path, isolation_level=None)
    conn.execute("CREATE TRIGGER boom BEFORE INSERT ON tickets WHEN NEW.subject = 'boom'"
                 " BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
    instance.cli("pipe", input=make_mail(subject="boom").as_bytes())
    instance.cli("pipe", input=make_mail(to="x@elsewhere.example").as_bytes())
    out = instance.cli_json("process")
    assert out["outcomes"] == {"failed": 1, "blocked:unknown_recipient": 1}

    failed = instance.cli_json("import-log", "--outcome", "failed")["items"]
    assert len(failed) == 1 and failed[0]["subject"] == "boom"
    blocked = instance.cli_json("import-log", "--outcome", "blocked:unknown_recipient")["items"]
    assert [r["reason"] for r in blocked] == ["unknown_recipient"]
    assert len(instance.cli_json("import-log", "--limit", "2")["items"]) == 2
    assert len(instance.cli_json("import-log", "--since", "2000-01-01")["items"]) == 3
    assert instance.cli_json("import-log", "--since", "2999-01-01")["items"] == []
    shown = json.loads(instance.cli("import-log", "show", str(failed[0]["id"]), "--json").stdout)
    assert "injected failure" in shown["detail"] and "Traceback" in shown["detail"]
    assert b"Subject: boom" in instance.cli("import-log", "show", str(failed[0]["id"]), "--raw").stdout

    # Only failed entries can be reprocessed; a fixed failure then gets its real outcome.
    ok_id = str(instance.cli_json("import-log", "--outcome", "new_ticket")["items"][0]["id"])
    assert instance.cli("reprocess", ok_id, check=False).returncode == 65
    conn.execute("DROP TRIGGER boom")
    conn.close()
    again = json.loads(instance.cli("reprocess", str(failed[0]["id"]), "--json").stdout)
    assert again["outcome"] == "new_ticket" and again["id"] == failed[0]["id"]
    assert len(instance.cli_json("import-log")["items"]) == 3  # still one row per message
    assert instance.cli("import-log", "--outcome", "bogus", check=False).returncode == 64
    assert instance.cli("reprocess", "999", check=False).returncode == 66


def test_ticket_list_and_show(instance: Instance):
    first = make_mail(subject="List me")
    instance.cli("pipe", input=first.as_bytes())
    instance.cli("pipe", input=make_mail(subject="Re: List me", in_reply_to=first["Message-ID"]).as_bytes())
    instance.cli("pipe", input=make_mail(subject="Other").as_bytes())
    instance.cli("process")
    listed = instance.cli_json("ticket", "list")["items"]
    assert {t["subject"] for t in listed} == {"List me", "Other"}
    replied = instance.cli_json("ticket", "list", "--status", "customer-reply")["items"]
    assert [t["subject"] for t in replied] == ["List me"]
    tid = next(t["tid"] for t in listed if t["subject"] == "List me")
    shown = instance.cli_json("ticket", "show", tid)
    for key in ("tid", "subject", "status", "priority", "department", "client_email", "created_at",
                "last_reply_at", "messages"):
        assert key in shown
    for key in ("id", "kind", "author_email", "author_name", "badge", "body", "body_full", "created_at",
                "attachments"):
        assert key in shown["messages"][0]
    text = instance.cli("ticket", "show", tid).stdout.decode()
    assert f"#{tid}" in text and "Customer-Reply" in text
    assert instance.cli("ticket", "show", "000000", check=False).returncode == 66


def test_serve_with_port_in_use_says_which_setting(instance: Instance):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", instance.smtp_port))
        busy.listen()
        proc = instance.cli("serve", check=False)
    assert proc.returncode == 69
    err = proc.stderr.decode()
    assert f"127.0.0.1:{instance.smtp_port}" in err and "smtp.listen" in err
    assert "Traceback" not in err
