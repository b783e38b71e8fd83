"""store/db.py: the two ways a Database runs its queries (an aiosqlite thread, or inline on the loop's
thread in the worker and sender processes) behave the same way."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from maild.store.db import Database


@pytest.fixture(params=[False, True], ids=["threaded", "inline"])
async def db(request, tmp_path):
    database = await Database.open(tmp_path / "t.sqlite3", inline=request.param)
    await database.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)")
    yield database
    await database.close()


async def test_inserts_return_row_ids_and_updates_row_counts(db: Database):
    async with db.transaction():
        first = await db.execute("INSERT INTO t (v) VALUES (?)", ("a",))
        second = await db.execute("INSERT INTO t (v) VALUES (?)", ("b",))
        await db.executemany("INSERT INTO t (v) VALUES (?)", [("c",), ("d",)])
    assert (first, second) == (1, 2)
    assert await db.execute("UPDATE t SET v = v || '!' WHERE id > ?", (1,)) == 3
    rows = await db.fetchall("SELECT v FROM t ORDER BY id")
    assert [r["v"] for r in rows] == ["a", "b!", "c!", "d!"]   # rows are read by column name
    assert await db.scalar("SELECT count(*) FROM t") == 4
    assert await db.fetchone("SELECT v FROM t WHERE id = 99") is None


async def test_a_failed_transaction_leaves_nothing_and_a_savepoint_undoes_only_its_part(db: Database):
    with pytest.raises(sqlite3.IntegrityError):
        async with db.transaction():
            await db.execute("INSERT INTO t (v) VALUES (?)", ("x",))
            await db.execute("INSERT INTO t (v) VALUES (?)", ("x",))
    assert await db.scalar("SELECT count(*) FROM t") == 0
    async with db.transaction():
        await db.execute("INSERT INTO t (v) VALUES (?)", ("kept",))
        with pytest.raises(sqlite3.IntegrityError):
            async with db.savepoint():
                await db.execute("INSERT INTO t (v) VALUES (?)", ("gone",))
                await db.execute("INSERT INTO t (v) VALUES (?)", ("kept",))
    assert [r["v"] for r in await db.fetchall("SELECT v FROM t")] == ["kept"]


async def test_a_writer_of_another_connection_waits_for_the_lock_instead_of_failing(db: Database, tmp_path):
    other = await Database.open(tmp_path / "t.sqlite3")
    try:
        async with db.transaction():
            await db.execute("INSERT INTO t (v) VALUES ('first')")
            # The other connection (another gate: as if another process) cannot begin yet; it retries.
            assert await other.scalar("SELECT count(*) FROM t") == 0   # reads never wait (WAL), see the last commit
            blocked = asyncio.ensure_future(_write(other, "second"))
            await asyncio.sleep(0.05)
            assert not blocked.done()
        await asyncio.wait_for(blocked, 5)
        assert [r["v"] for r in await db.fetchall("SELECT v FROM t ORDER BY id")] == ["first", "second"]
    finally:
        await other.close()


async def _write(db: Database, value: str) -> None:
    async with db.transaction():
        await db.execute("INSERT INTO t (v) VALUES (?)", (value,))
