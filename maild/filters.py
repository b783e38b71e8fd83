"""Filters of the mail import log, as a person writes them (the CLI's options, the web view's fields): an
outcome with its reason, and a date or a time. Each error names the filter and says what is allowed."""

from __future__ import annotations

from datetime import UTC, datetime

from maild.clock import iso
from maild.outcomes import BLOCKED_REASONS, OUTCOME_NAMES


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
