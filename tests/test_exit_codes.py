"""One meaning per exit code, across commands: the real ``ticketd`` command, run against a real state
directory, gives the code that the README's exit-code table lists for a bad filter, a bad argument, an
unknown ID, an unknown department and a bad environment override."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from maild.cli import build_parser
from tests.helpers import ROOT, Instance, make_mail

TICKETD = Path(sys.executable).with_name("ticketd")   # the console script `pip install` made

# What each case is, in the words that start its row of the README's table.
USAGE, REFUSED, NOT_FOUND, CONFIG = "usage", "a value refused", "not found", "configuration error"


def readme_codes() -> dict[str, int]:
    """The README's table under "### Exit codes": the first words of each meaning → its code."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Exit codes", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| `(\d+)` \| *[A-Z_]* *\| ([^|]+?) *\|$", section, flags=re.M)
    assert len(rows) >= 9, f"the README's exit-code table has {len(rows)} rows"
    table: dict[str, int] = {}
    for code, meaning in rows:
        key = meaning.split(":")[0].strip()
        assert key not in table, f"two codes for {key!r} in the README"
        table[key] = int(code)
    codes = list(table.values())
    assert len(codes) == len(set(codes)), "a code is listed twice in the README's table"
    return table


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> tuple[Instance, dict[str, str]]:
    """One ticket, one staff admin, a blocked message with no ticket."""
    inst = Instance(tmp_path_factory.mktemp("exit-codes"))
    inst.cli("staff", "add", "ada@helpdesk.example", "--admin")
    inst.cli("pipe", input=make_mail(subject="A ticket").as_bytes())
    inst.cli("pipe", input=make_mail(to="nobody@elsewhere.example").as_bytes())
    out = inst.cli_json("process")
    assert out["outcomes"] == {"new_ticket": 1, "blocked:unknown_recipient": 1}
    blocked = inst.cli_json("import-log", "--outcome", "blocked")["items"][0]
    (ticket,) = inst.cli_json("ticket", "list")["items"]
    mail = inst.root / "one.eml"
    mail.write_bytes(make_mail().as_bytes())
    return inst, {"blocked": str(blocked["id"]), "eml": str(mail), "tid": ticket["tid"]}


# (arguments, what the README calls it); {blocked}, {tid} and {eml} come from the state above.
CASES = [
    # bad filters and arguments of every list
    (["import-log", "--since", "yesterday"], USAGE),
    (["import-log", "--since", "9999-12-31T23:00-05:00"], USAGE),   # past the end of time in UTC
    (["import-log", "--until", "0999-01-01"], USAGE),
    (["import-log", "--outcome", "blocked:nonsense"], USAGE),
    (["import-log", "--outcome", "bogus"], USAGE),
    (["import-log", "--limit", "0"], USAGE),
    (["ticket", "list", "--status", "Bogus"], USAGE),
    (["ticket", "list", "--limit", "many"], USAGE),
    (["ticket", "list", "--limit", "2", "--all"], USAGE),
    (["outbox", "list", "--state", "lost"], USAGE),
    (["outbox", "list", "--limit", "-1"], USAGE),
    (["ban", "list", "--limit", "0"], USAGE),
    (["clients", "list", "--limit", "0"], USAGE),
    (["staff", "list", "--limit", "0"], USAGE),
    (["clients", "add", "x@client.example", "--role", "registered", "--account", "Acme"], USAGE),
    (["import-log", "import", "{blocked}"], USAGE),                   # no ticket: --ticket or --new
    (["import-log", "show", "seven"], USAGE),
    (["ticket", "note", "000000", "--as", "ada", "--body-file", "{eml}", "--bogus"], USAGE),
    (["jobs", "run", "nonsense"], USAGE),
    (["feedback", "list", "--limit", "0"], USAGE),
    (["jobs", "run", "auto_close", "--now", "soon"], USAGE),
    (["predefined", "list", "--limit", "0"], USAGE),
    (["predefined", "show", "seven"], USAGE),
    (["ticket", "split", "{tid}", "--messages", "one", "--as", "ada"], USAGE),
    # unknown IDs
    (["import-log", "show", "999"], NOT_FOUND),
    (["import-log", "import", "999"], NOT_FOUND),
    (["import-log", "import", "{blocked}", "--ticket", "000000"], NOT_FOUND),
    (["reprocess", "999"], NOT_FOUND),
    (["ticket", "show", "000000"], NOT_FOUND),
    (["ticket", "log", "#000000"], NOT_FOUND),
    (["ticket", "reply", "000000", "--as", "ada", "--body-file", "{eml}"], NOT_FOUND),
    (["ticket", "note", "000000", "--as", "ada", "--body-file", "{eml}"], NOT_FOUND),
    (["ticket", "set", "000000", "--as", "ada", "--priority", "High"], NOT_FOUND),
    (["ticket", "close", "000000", "--as", "ada"], NOT_FOUND),
    (["ticket", "watch", "000000", "--as", "ada"], NOT_FOUND),
    (["ticket", "unwatch", "000000", "--as", "ada"], NOT_FOUND),
    (["ticket", "merge", "000000", "{tid}", "--as", "ada"], NOT_FOUND),
    (["ticket", "edit", "000000", "--message", "1", "--as", "ada", "--body-file", "{eml}"], NOT_FOUND),
    (["ticket", "delete", "000000", "--as", "ada"], NOT_FOUND),
    (["ticket", "split", "000000", "--messages", "1", "--as", "ada"], NOT_FOUND),
    (["ticket", "split", "{tid}", "--messages", "999999", "--as", "ada"], NOT_FOUND),
    (["ticket", "links", "000000"], NOT_FOUND),
    (["ticket", "revoke-links", "000000", "--as", "ada"], NOT_FOUND),
    (["outbox", "show", "999"], NOT_FOUND),
    (["outbox", "retry", "999"], NOT_FOUND),
    (["ban", "remove", "nobody@example.com"], NOT_FOUND),
    (["staff", "set", "nobody"], NOT_FOUND),
    (["staff", "passwd", "nobody", "--disable"], NOT_FOUND),
    (["imap", "sync", "nope", "--once"], NOT_FOUND),
    (["predefined", "show", "999"], NOT_FOUND),
    (["predefined", "delete", "999"], NOT_FOUND),
    (["imap", "test", "nope"], NOT_FOUND),
    (["ingest", "/nonexistent/mail.mbox"], NOT_FOUND),
    # unknown department: the same code for pipe, ingest and the rest
    (["pipe", "--department", "Nope"], NOT_FOUND),
    (["ingest", "--department", "Nope", "{eml}"], NOT_FOUND),
    (["ticket", "open", "--as", "ada", "--department", "Nope", "--to", "a@client.example", "--subject", "S",
      "--body-file", "{eml}"], NOT_FOUND),
    (["ticket", "set", "000000", "--as", "ada", "--department", "Nope"], NOT_FOUND),
    (["staff", "add", "bo@helpdesk.example", "--departments", "Nope"], NOT_FOUND),
    (["import-log", "import", "{blocked}", "--new", "--department", "Nope"], NOT_FOUND),
    # refused values
    (["ban", "add", "not a pattern"], REFUSED),
    (["reprocess", "1"], REFUSED),                                     # not a failed entry
    (["outbox", "test", "nobody"], REFUSED),
    (["staff", "add", "not-an-address"], REFUSED),
    (["ticket", "set", "{tid}", "--as", "ada", "--status", "Bogus"], REFUSED),
    (["predefined", "add", "  ", "--body-file", "{eml}"], REFUSED),                # no title
    (["ticket", "merge", "{tid}", "{tid}", "--as", "ada"], REFUSED),                # one ticket is no merge
    (["ticket", "revoke-links", "{tid}", "--as", "ada", "--recipient", "not an address"], REFUSED),
]


def run(args: list[str], inst: Instance, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(TICKETD), "--config", str(inst.config), *args], capture_output=True,
                          input=make_mail().as_bytes(), env={**os.environ, **(env or {})}, timeout=120)


@pytest.mark.parametrize(("args", "kind"), CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_exit_code_is_the_documented_one(state, args, kind):
    inst, values = state
    proc = run([a.format(**values) for a in args], inst)
    code = readme_codes()[kind]
    err = proc.stderr.decode()
    assert proc.returncode == code, f"ticketd {' '.join(args)}: exit {proc.returncode}, README says {code} " \
                                    f"for {kind!r}:\n{err}"
    assert "Traceback" not in err and err.strip(), "the error must say what was wrong"


@pytest.mark.parametrize("args", [["check-config"], ["ticket", "list"], ["pipe"], ["serve"]], ids=" ".join)
def test_bad_environment_override_is_a_configuration_error(state, args):
    inst, _ = state
    proc = run(args, inst, env={"TICKETD_LOG_LEVEL": "loud"})
    assert proc.returncode == readme_codes()[CONFIG], proc.stderr
    err = proc.stderr.decode()
    assert "$TICKETD_LOG_LEVEL" in err and "'loud'" in err and "debug, info, warning, error" in err
    assert "Traceback" not in err


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    """Every runnable command of the parser: ``("ticket", "show")`` → its parser."""
    found = {path: parser} if path else {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(leaves(sub, (*path, name)))
    return found


def test_every_command_with_an_id_or_a_list_is_covered():
    """A new command that takes an ID or a name, or lists, must be added to CASES above."""
    covered = {tuple(a for a in args[:2] if not a.startswith(("-", "{")) and not a[0].isdigit())
               for args, _ in CASES}
    for path, parser in leaves(build_parser()).items():
        positionals = {a.dest for a in parser._actions if not a.option_strings and a.dest not in ("help",)}
        lists = any("--limit" in a.option_strings for a in parser._actions)
        if positionals & {"id", "tid", "name", "pattern", "username"} or lists:
            assert any(c[:len(path)] == path for c in covered), f"no exit-code case for ticketd {' '.join(path)}"
