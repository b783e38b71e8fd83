from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Instance, PgReader
from tests.relay import relay  # noqa: F401  (the SMTP relay fixture, for everyone's tests)

ENGINES = ("sqlite", "postgres")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``both_engines`` (a module's ``pytestmark``, or one test) run once per storage engine,
    through the ``engine`` fixture that ``instance``, ``daemon`` and ``database_url`` depend on; the others
    run on SQLite only, as do tests marked ``sqlite_only`` (they read the SQLite file itself).
    ``TICKETD_TEST_ENGINES=postgres`` (or ``sqlite,postgres``) runs every test that can on those engines."""
    node = metafunc.definition
    if "engine" not in metafunc.fixturenames or node.get_closest_marker("sqlite_only"):
        return
    forced = [e for e in os.environ.get("TICKETD_TEST_ENGINES", "").split(",") if e]
    if forced:
        unknown = set(forced) - set(ENGINES)
        assert not unknown, f"TICKETD_TEST_ENGINES: unknown engine(s) {unknown}; use {', '.join(ENGINES)}"
        metafunc.parametrize("engine", forced, indirect=True)
    elif node.get_closest_marker("both_engines"):
        metafunc.parametrize("engine", ENGINES, indirect=True)


@pytest.fixture(autouse=True)
def _close_pg_readers() -> Iterator[None]:
    """Instances made by a module's own fixtures are not closed by them: their PostgreSQL readers are here."""
    yield
    for reader in list(PgReader.live):
        reader.close()


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[object]:
    """One throwaway PostgreSQL for the session (started on first use); each test gets a database of its own."""
    from tests.postgres import PostgresServer

    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def database_url(engine: str, request: pytest.FixtureRequest) -> str:
    """The ``[database] url`` for this test's engine: "" (the default SQLite file) or a fresh PostgreSQL
    database."""
    if engine == "sqlite":
        return ""
    return request.getfixturevalue("pg_server").new_database()


@pytest.fixture
def instance(tmp_path: Path, database_url: str) -> Iterator[Instance]:
    """A configuration and empty state directory, no daemon."""
    inst = Instance(tmp_path, database_url=database_url)
    yield inst
    inst.close()


@pytest.fixture
def daemon(tmp_path: Path, database_url: str) -> Iterator[Instance]:
    """A running ``ticketd serve`` on free loopback ports; stopped with SIGTERM, which must exit 0."""
    inst = Instance(tmp_path, database_url=database_url)
    inst.start()
    try:
        yield inst
    finally:
        if inst.proc is not None:
            code = inst.stop()
            assert code == 0, f"ticketd serve exited {code} on SIGTERM:\n{inst.daemon_log()[-3000:]}"
        inst.close()
