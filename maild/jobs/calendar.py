"""Business time: a calendar's weekly opening hours in its own time zone, less its holidays.

Opening hours are local times; each day's ranges are turned into UTC instants through ``zoneinfo``, so a
day on which the clocks change is as long as it really is (a 09:00-17:00 day is 8 hours on either side of a
change; a range across the missing hour of a spring-forward night is an hour shorter, one across the
repeated hour of an autumn night an hour longer). Holidays are local dates.

Everything here is pure: the jobs turn "N business minutes since X" into "X at or before the instant N
business minutes ago" (:meth:`Calendar.back`), which the database then answers for every ticket at once,
and due times into :meth:`Calendar.forward`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
OFFICE_WEEK = {d: "09:00-17:00" for d in DAYS[:5]}
SEARCH_DAYS = 3 * 366      # how far back or forward an answer is looked for (a calendar open once a year)

_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class CalendarError(ValueError):
    """A weekly-hours text, time zone or holiday that cannot be used (the message says which)."""


def parse_ranges(text: str) -> tuple[tuple[time, time], ...]:
    """``"09:00-12:00, 13:00-17:30"`` (``""``: closed that day); ``24:00`` ends a range at midnight."""
    out: list[tuple[time, time]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = _RANGE.match(part)
        if not m:
            raise CalendarError(f"{part!r} is not a range like 09:00-17:00")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
            raise CalendarError(f"{part!r}: not a time of day")
        start, end = time(h1, m1), (time.max if h2 == 24 else time(h2, m2))
        if end <= start:
            raise CalendarError(f"{part!r} ends before it starts (a night shift is two ranges on two days)")
        if out and start < out[-1][1]:
            raise CalendarError(f"{part!r} overlaps or precedes the range before it")
        out.append((start, end))
    return tuple(out)


@dataclass(frozen=True)
class Calendar:
    name: str
    timezone: str = "UTC"
    week: dict[str, tuple[tuple[time, time], ...]] = field(default_factory=dict)   # mon..sun → ranges
    holidays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except Exception:
            raise CalendarError(f"unknown time zone {self.timezone!r} (an IANA name such as Europe/Berlin)"
                                ) from None
        if not any(self.week.get(d) for d in DAYS):
            raise CalendarError("no opening hours on any day of the week")

    @classmethod
    def build(cls, name: str, timezone: str = "UTC", week: dict[str, str] | None = None,
              holidays: Sequence[str | date] = ()) -> Calendar:
        texts = OFFICE_WEEK if week is None else week
        unknown = set(texts) - set(DAYS)
        if unknown:
            raise CalendarError(f"unknown day(s) {', '.join(sorted(unknown))}; use {', '.join(DAYS)}")
        for day, text in texts.items():
            if not isinstance(text, str):
                raise CalendarError(f"{day} = {text!r}: expected a text such as \"09:00-17:00\" (\"\" for closed)")
        days: set[date] = set()
        for h in holidays:
            try:
                if isinstance(h, datetime):   # a TOML date-time: a holiday is a whole local day
                    raise ValueError
                days.add(h if isinstance(h, date) else date.fromisoformat(h.strip()))
            except (ValueError, AttributeError, TypeError):
                raise CalendarError(f"holiday {h!r} is not a date like \"2026-12-25\"") from None
        return cls(name, timezone, {d: parse_ranges(texts.get(d, "")) for d in DAYS}, frozenset(days))

    def week_text(self) -> dict[str, str]:
        """The opening hours as the configuration writes them."""
        def hhmm(t: time) -> str:
            return "24:00" if t == time.max else f"{t:%H:%M}"

        return {d: ", ".join(f"{hhmm(a)}-{hhmm(b)}" for a, b in self.week[d]) for d in DAYS if self.week.get(d)}

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def open_on(self, day: date) -> list[tuple[datetime, datetime]]:
        """The opening intervals of local date ``day``, in UTC, in order."""
        if day in self.holidays:
            return []
        zone = self.zone
        out = []
        for start, end in self.week.get(DAYS[day.weekday()], ()):
            a = datetime.combine(day, start, zone).astimezone(UTC)
            b = (datetime.combine(day + timedelta(days=1), time(0), zone) if end == time.max
                 else datetime.combine(day, end, zone)).astimezone(UTC)
            if b > a:
                out.append((a, b))
        return out

    def _days(self, around: datetime, step: int) -> Iterator[date]:
        day = around.astimezone(self.zone).date()
        for _ in range(SEARCH_DAYS):
            yield day
            day += timedelta(days=step)

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Business time from ``start`` to ``end`` (nothing when ``end`` is not after ``start``)."""
        if end <= start:
            return timedelta(0)
        total = timedelta(0)
        day = start.astimezone(self.zone).date() - timedelta(days=1)
        last = end.astimezone(self.zone).date() + timedelta(days=1)
        while day <= last:
            for a, b in self.open_on(day):
                lo, hi = max(a, start), min(b, end)
                if hi > lo:
                    total += hi - lo
            day += timedelta(days=1)
        return total

    def back(self, now: datetime, minutes: float) -> datetime:
        """The latest instant from which ``minutes`` of business time have passed by ``now``: "at least N
        business minutes since X" is "X at or before this"."""
        left = timedelta(minutes=minutes)
        for day in self._days(now + timedelta(days=1), -1):
            for a, b in reversed(self.open_on(day)):
                if a >= now:
                    continue
                b = min(b, now)
                if left <= b - a:
                    return b - left
                left -= b - a
        return datetime.min.replace(tzinfo=UTC)   # never: no opening hours within the search

    def forward(self, start: datetime, minutes: float) -> datetime:
        """When ``minutes`` of business time after ``start`` have passed (a due time)."""
        left = timedelta(minutes=minutes)
        for day in self._days(start - timedelta(days=1), 1):
            for a, b in self.open_on(day):
                if b <= start:
                    continue
                a = max(a, start)
                if left <= b - a:
                    return a + left
                left -= b - a
        return datetime.max.replace(tzinfo=UTC)


class WallClock:
    """Wall time, for departments without a calendar: the same questions, answered with plain minutes."""

    name = ""

    def between(self, start: datetime, end: datetime) -> timedelta:
        return max(end - start, timedelta(0))

    def back(self, now: datetime, minutes: float) -> datetime:
        return now - timedelta(minutes=minutes)

    def forward(self, start: datetime, minutes: float) -> datetime:
        return start + timedelta(minutes=minutes)
