from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Instance
from tests.relay import relay  # noqa: F401  (the SMTP relay fixture, for everyone's tests)


@pytest.fixture
def instance(tmp_path: Path) -> Instance:
    """A configuration and empty state directory, no daemon."""
    return Instance(tmp_path)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Instance]:
    """A running ``ticketd serve`` on free loopback ports; stopped with SIGTERM, which must exit 0."""
    inst = Instance(tmp_path)
    inst.start()
    try:
        yield inst
    finally:
        if inst.proc is not None:
            code = inst.stop()
            assert code == 0, f"ticketd serve exited {code} on SIGTERM:\n{inst.daemon_log()[-3000:]}"
