"""``ticketd migrate-db``: a single-node SQLite install moved to PostgreSQL, verified, and working there."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from maild.commands import views
from maild.store import migrate, tickets
from maild.store.db import open_database, parse_url
from tests.helpers import CORPUS, Instance, corpus_files, make_mail


def test_the_corpus_install_moves_to_postgresql_and_every_ticket_reads_the_same(tmp_path: Path, pg_server):
    corpus_files()   # fails clearly when ../shared/corpus is missing
    (tmp_path / "lite").mkdir()
    lite = Instance(tmp_path / "lite")
    out = lite.cli_json("ingest", "--department", "Sales", str(CORPUS))
    assert out["messages"] >= 600
    lite.cli("staff", "add", "sam@helpdesk.example", "--name", "Sam Staff", "--admin")
    first, second = [r["tid"] for r in lite.query("SELECT tid FROM tickets ORDER BY id LIMIT 2")]
    lite.cli("ticket", "reply", first, "--as", "sam", "--body-file", "-", input=b"We are on it.\n")
    lite.cli("ticket", "set", first, "--as", "sam", "--tag", "corpus", "--tag", "moved", "--service", "srv1")
    lite.cli("predefined", "add", "Greeting", "--body-file", "-", input=b"Hello [NAME]\n")
    lite.execute("UPDATE tickets SET merged_into = (SELECT max(id) FROM tickets) WHERE tid = ?", (second,))

    url = pg_server.new_database()
    proc = lite.cli("migrate-db", "--from", "sqlite:///ticketd.sqlite3", "--to", url, "--json")
    report = json.loads(proc.stdout)
    assert report["verified"] and report["to"] == url
    assert report["tables"]["tickets"]["rows"] == len(lite.query("SELECT id FROM tickets"))
    assert report["tables"]["inbound"]["rows"] == out["messages"]
    assert report["tables"]["messages"]["rows"] > 400 and report["tables"]["attachments"]["rows"] > 100

    # Every ticket as `ticket show --json` prints it, read from both databases.
    async def shown(url_text: str) -> dict[str, dict]:
        db = await open_database(parse_url(url_text, lite.state))
        try:
            return {row.tid: await views.ticket_full(db, row) for row in await tickets.listing(db)}
        finally:
            await db.close()

    before, after = asyncio.run(shown("sqlite:///ticketd.sqlite3")), asyncio.run(shown(url))
    assert len(before) > 300 and before == after
    # ... and the CLI on the PostgreSQL install (the same state directory: attachments, secret) agrees.
    (tmp_path / "pg").mkdir()
    pg = Instance(tmp_path / "pg", database_url=url)
    pg.state = lite.state
    pg.write_config()
    for tid in (first, *list(before)[:3]):
        assert pg.cli_json("ticket", "show", tid) == lite.cli_json("ticket", "show", tid)
    assert pg.cli_json("ticket", "show", first)["tags"] == ["corpus", "moved"]
    assert pg.cli_json("predefined", "list") == lite.cli_json("predefined", "list")
    # The new install goes on: new rows get new ids (the identity sequences were moved past the copy).
    (tmp_path / "new.eml").write_bytes(make_mail(subject="after the move").as_bytes())
    assert pg.cli_json("ingest", str(tmp_path / "new.eml"))["outcomes"] == {"new_ticket": 1}
    pg.cli("ticket", "reply", first, "--as", "sam", "--body-file", "-", input=b"Still on it.\n")
    assert len(pg.cli_json("ticket", "show", first)["messages"]) == len(before[first]["messages"]) + 1
    pg.cli("predefined", "add", "Farewell", "--body-file", "-", input=b"Bye\n")   # a new id after the copied one

    # A target that holds data is refused, unless told to empty it first.
    proc = lite.cli("migrate-db", "--from", "sqlite:///ticketd.sqlite3", "--to", url, check=False)
    assert proc.returncode == 65 and b"--force" in proc.stderr and b"tickets:" in proc.stderr
    proc = lite.cli("migrate-db", "--from", "sqlite:///ticketd.sqlite3", "--to", url, "--force")
    assert b"counts and content hashes match" in proc.stdout
    assert asyncio.run(shown(url)) == before
    pg.close()
    lite.close()


def test_the_verification_sees_a_changed_row_and_a_missing_one(tmp_path: Path, pg_server):
    async def run() -> None:
        lite = await open_database(parse_url("sqlite:///a.sqlite3", tmp_path))
        pg = await open_database(parse_url(pg_server.new_database(), tmp_path))
        try:
            async with lite.transaction():
                await lite.execute("INSERT INTO banned_senders (pattern, reason, created_at) VALUES (?, ?, ?),"
                                   " (?, ?, ?)", ("*@spam.example", "spam\x00", "x", "b@c.example", "", "x"))
            await migrate.copy(lite, pg)
            key, columns = ("pattern",), ["pattern", "reason", "created_by", "created_at"]
            same = [await migrate.digest(db, "banned_senders", key, columns) for db in (lite, pg)]
            assert same[0] == same[1] and same[0].rows == 2   # NUL stored as U+FFFD there: the same content
            async with pg.transaction():
                await pg.execute("UPDATE banned_senders SET reason = 'ham' WHERE pattern = '*@spam.example'")
            changed = await migrate.digest(pg, "banned_senders", key, columns)
            assert changed.rows == 2 and changed.digest != same[0].digest
            async with pg.transaction():
                await pg.execute("DELETE FROM banned_senders WHERE pattern = 'b@c.example'")
            assert (await migrate.digest(pg, "banned_senders", key, columns)).rows == 1
        finally:
            await lite.close()
            await pg.close()

    asyncio.run(run())


def test_migrate_db_says_what_is_wrong_with_its_arguments(instance: Instance, tmp_path: Path):
    instance.cli("pipe", input=make_mail().as_bytes())
    for args, code, words in (
            (["--from", "mysql://x/y", "--to", "sqlite:///b.sqlite3"], 64, b"--from"),
            (["--from", "sqlite:///ticketd.sqlite3", "--to", "sqlite:///ticketd.sqlite3"], 64, b"same database"),
            # The same file under another name, with --force: refused, never emptied.
            (["--from", "sqlite:///ticketd.sqlite3", "--to", f"sqlite:///../{instance.state.name}/ticketd.sqlite3",
              "--force"], 64, b"same database"),
            (["--from", "sqlite:///ticketd.sqlite3", "--to", "postgresql://ticketd@127.0.0.1:1/none"], 75,
             b"127.0.0.1:1/none")):
        proc = instance.cli("migrate-db", *args, check=False)
        assert proc.returncode == code and words in proc.stderr and b"Traceback" not in proc.stderr, proc.stderr
    assert instance.query("SELECT count(*) AS n FROM inbound")[0]["n"] == 1   # nothing was deleted
    # SQLite to SQLite works too (and back: any engine to any engine).
    out = json.loads(instance.cli("migrate-db", "--from", "sqlite:///ticketd.sqlite3", "--to",
                                  f"sqlite:///{tmp_path / 'copy.sqlite3'}", "--json").stdout)
    assert out["verified"] and set(out["tables"]) == {t for t, _ in migrate.TABLES}
