"""The command line: help, configuration errors, import log, reprocess, tickets."""

from __future__ import annotations

import json
import re
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
    assert out["web"] == {"listen": "127.0.0.1:8025", "public_url": "http://127.0.0.1:8025", "thread_order": "newest",
                          "metrics_allow": ["127.0.0.1", "::1"], "trusted_proxies": [], "client_link_days": 60}
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


@pytest.mark.sqlite_only   # the failure is injected with a SQLite trigger
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


# -- issue 9: the rough edges a new user hit ---------------------------------------------------------------

LISTS = [["import-log"], ["ticket", "list"], ["outbox", "list"], ["ban", "list"], ["clients", "list"],
         ["staff", "list"]]


@pytest.mark.parametrize("cmd", LISTS, ids=" ".join)
def test_every_list_documents_limit_and_all_in_help(cmd):
    out = subprocess.run([*TICKETD, *cmd, "--help"], capture_output=True, timeout=60, cwd=ROOT).stdout.decode()
    assert "--limit N" in out and "--all" in out
    assert "(default 50)" in " ".join(out.split())


def test_no_silent_cap_every_list_says_when_it_was_cut_short(instance: Instance, tmp_path):
    folder = tmp_path / "mails"
    folder.mkdir()
    for i in range(51):
        (folder / f"{i:03}.eml").write_bytes(make_mail(subject=f"n{i}", sender=f"c{i}@client.example").as_bytes())
    assert instance.cli_json("ingest", str(folder))["messages"] == 51
    out = instance.cli_json("ticket", "list")
    assert (out["count"], out["limit"], out["truncated"], len(out["items"])) == (50, 50, True, 50)
    out = instance.cli_json("ticket", "list", "--all")
    assert (out["count"], out["limit"], out["truncated"]) == (51, None, False)
    assert len({t["tid"] for t in out["items"]}) == 51
    out = instance.cli_json("ticket", "list", "--limit", "51")
    assert (out["count"], out["truncated"]) == (51, False)
    table = instance.cli("ticket", "list", "--limit", "3")
    assert len(table.stdout.decode().splitlines()) == 4  # header + 3
    assert b"--all" in table.stderr and b"first 3" in table.stderr
    assert instance.cli("ticket", "list", "--all").stderr == b""
    # The other lists: two rows each, cut to one.
    for pattern in ("a@spam.example", "b@spam.example"):
        instance.cli("ban", "add", pattern)
    for email in ("ann@helpdesk.example", "ben@helpdesk.example"):
        instance.cli("staff", "add", email)
    instance.cli("clients", "add", "o@acme.example", "--account", "Acme")
    instance.cli("clients", "add", "p@acme.example", "--account", "Acme", "--role", "user")
    for cmd in (["import-log"], ["outbox", "list"], ["ban", "list"], ["staff", "list"], ["clients", "list"]):
        cut = instance.cli_json(*cmd, "--limit", "1")
        assert (cut["count"], cut["limit"], cut["truncated"], len(cut["items"])) == (1, 1, True, 1), cmd
        whole = instance.cli_json(*cmd, "--all")
        assert whole["truncated"] is False and whole["count"] == len(whole["items"]) >= 2, cmd
        assert whole["items"][0] == cut["items"][0], cmd


def test_readme_opening_quick_start_and_layout():
    text = (ROOT / "README.md").read_text()
    opening = text.split("\n## ", 1)[0]
    assert "IMAP" in opening and "ticketd ingest" in opening
    assert not re.search(r"IMAP[^.]*not (built|yet)", opening)
    quick = text.split("## Quick start", 1)[1].split("\n## How it works", 1)[0]
    assert "ticket show 840928" in quick and "use the one your `ticket list` printed" in quick
    test_line = next(line for line in quick.splitlines() if "../shared/corpus" in line)
    assert test_line, "the corpus the tests need is named in the quick start"
    assert "make run ARGS=" in quick and "--smtp" in quick
    # The layout names every module and folder of the tree.
    layout = text.split("The package `maild/` is laid out", 1)[1].split("```", 2)[1]
    tracked = subprocess.run(["git", "ls-files"], capture_output=True, cwd=ROOT, text=True, check=True).stdout.split()
    for path in tracked:
        parts = path.split("/")
        if parts[0] == "maild" and len(parts) == 2:
            assert parts[1] in layout or parts[1] == "__init__.py", f"{path} missing from the README's layout"
        elif parts[0] == "maild":
            assert f"{parts[1]}/" in layout, f"maild/{parts[1]}/ missing from the README's layout"
            if parts[1] in ("pipeline", "receive", "desk", "notify") and len(parts) == 3:
                assert parts[2] in layout or parts[2] == "__init__.py", f"{path} missing from the README's layout"
        elif len(parts) > 1:
            assert f"\n{parts[0]}/" in layout, f"{parts[0]}/ missing from the README's layout"


def test_make_run_passes_args_to_serve():
    proc = subprocess.run(["make", "-n", "run", 'ARGS=--smtp 127.0.0.1:2526 --lmtp off'], capture_output=True,
                          cwd=ROOT, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "ticketd --config ticketd.toml serve --smtp 127.0.0.1:2526 --lmtp off" in proc.stdout


def test_bad_log_level_names_the_variable_and_check_config_shows_the_effective_level(instance: Instance):
    for args in (["check-config"], ["ticket", "list"], ["serve"]):
        proc = instance.cli(*args, env={"TICKETD_LOG_LEVEL": "verbose"}, check=False)
        err = proc.stderr.decode()
        assert proc.returncode == 78, (args, err)
        assert "$TICKETD_LOG_LEVEL" in err and "log.level" in err and "'verbose'" in err
        assert "Traceback" not in err
    assert json.loads(instance.cli("check-config").stdout)["log"]["level"] == "info"
    shown = json.loads(instance.cli("check-config", env={"TICKETD_LOG_LEVEL": "WARNING"}).stdout)
    assert shown["log"]["level"] == "warning"
    # The level is the one used: at error, the INFO line of each processed message is not written.
    instance.cli("pipe", input=make_mail().as_bytes())
    quiet = instance.cli("process", env={"TICKETD_LOG_LEVEL": "error"})
    assert b" processed queue_id=" not in quiet.stderr


@pytest.mark.parametrize(("args", "allowed"), [
    (["import-log", "--since", "yesterday"], "2026-11-01"),
    (["import-log", "--outcome", "blocked:nonsense"], "unknown_recipient"),
    (["import-log", "--outcome", "lost"], "new_ticket"),
    (["ticket", "list", "--status", "Bogus"], "Customer-Reply"),
    (["outbox", "list", "--state", "gone"], "queued"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_bad_filters_exit_64_saying_what_is_allowed(instance: Instance, args, allowed):
    instance.cli("pipe", input=make_mail().as_bytes())
    instance.cli("process")
    proc = instance.cli(*args, check=False)
    assert proc.returncode == 64 and proc.stdout == b""  # not an empty table
    assert allowed in proc.stderr.decode()


def test_good_filters_still_match(instance: Instance):
    instance.cli("pipe", input=make_mail().as_bytes())
    instance.cli("pipe", input=make_mail(to="x@elsewhere.example").as_bytes())
    instance.cli("process")
    assert instance.cli_json("import-log", "--outcome", "blocked:unknown_recipient")["count"] == 1
    assert instance.cli_json("import-log", "--outcome", "new_ticket")["count"] == 1
    assert instance.cli_json("import-log", "--since", "2000-01-01 00:00")["count"] == 2
    assert instance.cli_json("import-log", "--since", "2000-01-01T00:00:00+01:00")["count"] == 2
    assert instance.cli_json("import-log", "--since", "2999-01-01Z")["count"] == 0
    assert instance.cli_json("ticket", "list", "--status", "open")["count"] == 1
    assert instance.cli_json("ticket", "list", "--status", "on hold")["count"] == 0


def test_import_of_a_blocked_message_without_a_ticket(tmp_path):
    inst = Instance(tmp_path, rate_limit=1)
    inst.cli("pipe", input=make_mail(subject="Alice's", sender="alice@client.example").as_bytes())
    inst.cli("pipe", input=make_mail(subject="Lost", sender="bob@other.example", to="x@elsewhere.example").as_bytes())
    inst.cli("pipe", input=make_mail(subject="Too many", sender="alice@client.example").as_bytes())
    out = inst.cli_json("process")
    assert [i["outcome"] + ":" + i["reason"] for i in out["items"]] == [
        "new_ticket:", "blocked:unknown_recipient", "blocked:rate_limited"]
    alice_tid = out["items"][0]["ticket"]
    ids = {r["queue_id"]: str(r["id"]) for r in inst.cli_json("import-log", "--all")["items"]}
    lost, limited = (ids[i["queue_id"]] for i in out["items"][1:])

    # No ticket to go to: say where.
    proc = inst.cli("import-log", "import", lost, check=False)
    assert proc.returncode == 64 and b"--ticket TID" in proc.stderr and b"--new" in proc.stderr
    # Bob's mail is not put into Alice's ticket without --force.
    proc = inst.cli("import-log", "import", lost, "--ticket", alice_tid, check=False)
    assert proc.returncode == 65 and b"bob@other.example" in proc.stderr and b"--force" in proc.stderr
    assert len(inst.cli_json("ticket", "show", alice_tid)["messages"]) == 1
    # As a new ticket: routed nowhere, so it needs a department.
    proc = inst.cli("import-log", "import", lost, "--new", check=False)
    assert proc.returncode == 64 and b"--department" in proc.stderr and b"Billing" in proc.stderr
    assert inst.cli("import-log", "import", lost, "--new", "--department", "Nope", check=False).returncode == 66
    assert inst.cli("import-log", "import", lost, "--department", "Sales", check=False).returncode == 64
    assert inst.cli("import-log", "import", lost, "--new", "--department", "Sales", "--as", "note",
                    check=False).returncode == 64
    done = inst.cli("import-log", "import", lost, "--new", "--department", "billing").stdout.decode()
    new_tid = re.search(r"new ticket #(\d+)", done).group(1)
    t = inst.cli_json("ticket", "show", new_tid)
    assert (t["department"], t["client_email"], t["subject"], t["status"]) == (
        "Billing", "bob@other.example", "Lost", "Open")
    assert [m["author_email"] for m in t["messages"]] == ["bob@other.example"]
    assert t["log"][-1]["event"] == "blocked_mail_imported" and t["log"][-1]["detail"]["kind"] == "new_ticket"
    row = json.loads(inst.cli("import-log", "show", lost, "--json").stdout)
    assert row["ticket"] == new_tid and row["imported_by"].startswith("cli:") and row["outcome"] == "blocked"
    assert inst.cli("import-log", "import", lost, "--new", "--department", "Billing", check=False).returncode == 65
    # Rate-limited mail keeps the department it was routed to; a second ticket of Alice's.
    done = inst.cli("import-log", "import", limited, "--new").stdout.decode()
    second = re.search(r"new ticket #(\d+)", done).group(1)
    assert second != alice_tid
    t = inst.cli_json("ticket", "show", second)
    assert (t["department"], t["client_email"], t["subject"]) == ("Technical Support", "alice@client.example",
                                                                  "Too many")


def test_new_ticket_only_for_mail_that_would_have_opened_one(tmp_path):
    inst = Instance(tmp_path)
    first = make_mail(subject="Mine", sender="alice@client.example")
    inst.cli("pipe", input=first.as_bytes())
    auto = make_mail(subject="Out of office", sender="alice@client.example")
    auto["Auto-Submitted"] = "auto-replied"
    inst.cli("pipe", input=auto.as_bytes())
    inst.cli("process")
    (blocked,) = inst.cli_json("import-log", "--outcome", "blocked:auto_reply")["items"]
    proc = inst.cli("import-log", "import", str(blocked["id"]), "--new", check=False)
    assert proc.returncode == 65 and b"auto_reply" in proc.stderr and b"rate_limited" in proc.stderr
    # Alice's own ticket takes her blocked mail without --force.
    tid = inst.cli_json("ticket", "list")["items"][0]["tid"]
    assert f"#{tid}" in inst.cli("import-log", "import", str(blocked["id"]), "--ticket", tid).stdout.decode()


def test_ticket_show_numbers_messages_within_the_ticket(instance: Instance):
    instance.cli("pipe", input=make_mail(subject="Earlier").as_bytes())
    first = make_mail(subject="Later")
    instance.cli("pipe", input=first.as_bytes())
    instance.cli("pipe", input=make_mail(subject="Re: Later", in_reply_to=first["Message-ID"]).as_bytes())
    instance.cli("process")
    tid = next(t["tid"] for t in instance.cli_json("ticket", "list")["items"] if t["subject"] == "Later")
    shown = instance.cli_json("ticket", "show", tid)
    assert [m["number"] for m in shown["messages"]] == [1, 2]
    assert [m["id"] for m in shown["messages"]] == [2, 3]   # the database's ids: the first ticket has 1
    text = instance.cli("ticket", "show", tid).stdout.decode()
    assert re.findall(r"^--- (\d+)\. ", text, flags=re.M) == ["1", "2"]
    assert not re.search(r"^--- .*#\d", text, flags=re.M)   # no global number ("reply #3") on a message line


def test_summaries_count_what_was_processed_with_plurals(instance: Instance, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    (one / "a.eml").write_bytes(make_mail().as_bytes())
    out = instance.cli("ingest", str(one)).stdout.decode()
    assert out.startswith("1 message processed in ") and "messages" not in out.splitlines()[0]
    two = tmp_path / "two"
    two.mkdir()
    for name in ("a", "b"):
        (two / f"{name}.eml").write_bytes(make_mail(subject=name).as_bytes())
    out = instance.cli("ingest", str(two)).stdout.decode()
    assert out.startswith("2 messages processed in ")
    assert instance.cli("process").stdout.decode().startswith("0 messages processed in ")


def test_clients_add_registered_with_an_account_is_refused(instance: Instance):
    proc = instance.cli("clients", "add", "x@client.example", "--role", "registered", "--account", "Acme",
                        check=False)
    assert proc.returncode == 64 and b"--account" in proc.stderr and b"registered" in proc.stderr
    assert instance.cli_json("clients", "list")["items"] == []   # nothing added, nothing dropped silently
    bad = instance.root / "people.csv"
    bad.write_text("account,email,name,role\nAcme,x@client.example,X,registered\n")
    proc = instance.cli("clients", "import", str(bad), check=False)
    assert proc.returncode == 65 and b"people.csv:2" in proc.stderr


def test_imap_sync_once_says_an_error_once(instance: Instance):
    from tests.helpers import free_port

    port = free_port()  # nothing listens there
    instance.extra_config = (f'\n[[imap]]\nname = "down"\nhost = "127.0.0.1"\nport = {port}\n'
                             'security = "none"\nusername = "u"\npassword = "p"\ntimeout = 5\n')
    instance.write_config()
    proc = instance.cli("imap", "sync", "--once", check=False)
    assert proc.returncode == 75
    both = proc.stdout.decode() + proc.stderr.decode()
    assert both.count(f"127.0.0.1:{port}") == 1 and "Connection refused" in proc.stderr.decode(), both
    assert "down: 0 messages imported" in proc.stdout.decode()


def test_ingest_counts_its_own_messages_when_others_wait_in_the_spool(tmp_path):
    """The worker of ``ingest`` also processes what was waiting before it; that never stands in for its own
    (one message a batch makes the waiting ones finish first)."""
    inst = Instance(tmp_path, extra_config="\n[worker]\nbatch = 1\nparsers = 0\n")
    for n in range(3):
        inst.cli("pipe", input=make_mail(subject=f"waiting {n}").as_bytes())
    folder = tmp_path / "files"
    folder.mkdir()
    for n in range(2):
        (folder / f"{n}.eml").write_bytes(make_mail(subject=f"file {n}").as_bytes())
    out = inst.cli("ingest", str(folder)).stdout.decode()
    assert out.startswith("2 messages processed in ") and "3 messages that waited in the spool" in out
    assert inst.query("SELECT count(*) AS n FROM inbound WHERE state != 'done'")[0]["n"] == 0
    summary = inst.cli_json("ingest", str(folder))
    assert (summary["messages"], summary["also_processed"], summary["outcomes"]) == (2, 0, {"duplicate": 2})


def test_import_into_a_ticket_of_the_senders_own_account_needs_no_force(tmp_path):
    inst = Instance(tmp_path)
    inst.cli("clients", "add", "olga@acme.example", "--account", "Acme")
    inst.cli("clients", "add", "uwe@acme.example", "--account", "Acme", "--role", "user")
    inst.cli("pipe", input=make_mail(subject="Acme's", sender="olga@acme.example").as_bytes())
    for sender in ("uwe@acme.example", "eve@elsewhere.example"):
        auto = make_mail(subject=f"Away: {sender}", sender=sender)
        auto["Auto-Submitted"] = "auto-replied"
        inst.cli("pipe", input=auto.as_bytes())
    inst.cli("process")
    tid = inst.cli_json("ticket", "list")["items"][0]["tid"]
    by_sender = {r["from"]: str(r["id"]) for r in inst.cli_json("import-log", "--outcome", "blocked")["items"]}
    inst.cli("import-log", "import", by_sender["uwe@acme.example"], "--ticket", tid)   # a person of its account
    proc = inst.cli("import-log", "import", by_sender["eve@elsewhere.example"], "--ticket", tid, check=False)
    assert proc.returncode == 65 and b"--force" in proc.stderr
    assert [m["author_email"] for m in inst.cli_json("ticket", "show", tid)["messages"]] == [
        "olga@acme.example", "uwe@acme.example"]
