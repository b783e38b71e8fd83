"""The throwaway PostgreSQL server against the real binaries: databases per test, and a stop that leaves
nothing behind."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.postgres import HOST, PostgresServer


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    pg = PostgresServer()
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()


def accepts_connections(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1).close()
    except OSError:
        return False
    return True


def test_new_databases_are_distinct_and_usable(server: PostgresServer):
    first, second = server.new_database(), server.new_database()
    assert first != second
    for url in (first, second):
        assert url.startswith(f"postgresql://ticketd@127.0.0.1:{server.port}/")
        server.psql("CREATE TABLE x (id int)", url)  # a second CREATE in the same database would fail
    names = server.psql("SELECT datname FROM pg_database ORDER BY datname", server.url()).split()
    assert {first.rsplit("/", 1)[1], second.rsplit("/", 1)[1], "ticketd_template"} <= set(names)


def test_stop_frees_the_port_and_removes_the_temp_dir():
    pg = PostgresServer()
    pg.start()
    try:
        port, temp_dir = pg.port, pg.dir
        assert temp_dir is not None and temp_dir.is_dir()
        assert accepts_connections(port)
        pg.psql("SELECT 1", pg.new_database())
    finally:
        pg.stop()
    assert not accepts_connections(port)
    assert not temp_dir.exists()
    pg.stop()  # a second stop does nothing
