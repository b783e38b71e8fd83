"""Filters as a person writes them (the CLI's options, the web view's fields): an import-log outcome with its
reason, a date or a time, a report's range. Each error names the filter and says what is allowed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from maild.clock import iso, parse
from maild.outcomes import BLOCKED_REASONS, OUTCOME_NAMES

DEFAULT_DAYS = 30     # a report's range when none is given: this many days up to now


class FilterError(ValueError):
    """A filter that cannot mean anything; the message says what is allowed."""


def parse_outcome(value: str, key: str = "--outcome") -> tuple[str, str | None]:
    """``NAME`` or ``NAME:REASON`` → (name, reason or None); reasons as the pipeline writes them."""
    name, sep, reason = value.strip().partition(":")
    allowed = (f"expected one of {', '.join(OUTCOME_NAMES)}, or blocked:REASON with REASON one of"
               f" {', '.join(BLOCKED_REASONS)} (also command:rejected, failed:EXCEPTION)")
    if name not in OUTCOME_NAMES:
        raise FilterError(f"{key} {value!r}: {allowed}")
    if not sep:
        return name, None
    if (name == "blocked" and reason in BLOCKED_REASONS) or (name == "command" and reason == "rejected") or (
            name == "failed" and reason.isidentifier()):
        return name, reason
    raise FilterError(f"{key} {value!r}: {allowed}")


def parse_instant(value: str, key: str = "--since") -> str:
    """A date or a date and time (ISO 8601; UTC unless it names an offset) → the stored form, for comparing."""
    text = value.strip()
    try:
        when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise FilterError(f"{key} {value!r}: expected a date or a date and time in ISO 8601, such as 2026-11-01,"
                          " 2026-11-01T12:00 or 2026-11-01T12:00:00+01:00 (UTC unless an offset is given)") from None
    try:
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        stamp = iso(when)
    except (OverflowError, ValueError):   # past the end of time once in UTC (9999-12-31T23:00-05:00)
        stamp = ""
    if not when.year >= 1000 or len(stamp) != len("2026-11-01T12:00:00.000000Z"):
        raise FilterError(f"{key} {value!r}: expected a date between the years 1000 and 9999")
    return stamp


def parse_period(since: str, until: str, now: datetime, keys: tuple[str, str] = ("--since", "--until")
           ) -> tuple[str, str]:
    """A report's range as a person writes it (a date, or a date and time; either may be ""): ``until``
    defaults to ``now``, ``since`` to :data:`DEFAULT_DAYS` days before ``until``. :class:`FilterError`, naming
    the field (``keys``), for a value that means nothing or a range with nothing in it."""

    end = parse_instant(until, keys[1]) if until.strip() else iso(now)
    if since.strip():
        start = parse_instant(since, keys[0])
    else:
        began = parse(end) - timedelta(days=DEFAULT_DAYS) if parse(end).year > 1000 else None
        if began is None or began.year < 1000:
            raise FilterError(f"{keys[1]} {until!r}: expected a date between the years 1000 and 9999")
        start = iso(began)
    if start >= end:
        raise FilterError(f"{keys[0]} {since or start!r} is not before {keys[1]} {until or end!r}:"
                          " the range holds nothing")
    return start, end
