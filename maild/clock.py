"""Time, in one place, so that tests and the scheduler can inject their own clock."""

from __future__ import annotations

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

