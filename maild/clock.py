"""Time, in one place, so that tests and the scheduler can inject their own clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    """ISO 8601 UTC with a 'Z', microseconds, sortable as text."""
    return dt.astimezone(UTC).strftime(FORMAT)


def parse(text: str) -> datetime:
    return datetime.strptime(text, FORMAT).replace(tzinfo=UTC)


class Clock:
    """Returns the current time; a test passes its own ``source``."""

    def __init__(self, source: Callable[[], datetime] = utcnow) -> None:
        self._source = source

    def now(self) -> datetime:
        return self._source()

    def stamp(self) -> str:
        return iso(self._source())


async def wait_any(timeout: float, *events: asyncio.Event) -> None:
    """Sleep up to ``timeout`` seconds, less if one of ``events`` is set. Leaves no waiter behind (a loop
    that waits twice a second for a day must not pile up tasks)."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
