"""Business time (maild/jobs/calendar.py): nights, weekends, holidays and clock changes, in Europe/Berlin
and America/New_York."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maild.jobs.calendar import Calendar, CalendarError, parse_ranges

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def local(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone)


def office(zone: str, **kw: object) -> Calendar:
    return Calendar.build("office", zone, **kw)  # type: ignore[arg-type]


def test_nights_and_weekends_are_skipped():
    cal = office("Europe/Berlin")
    friday = local(BERLIN, 2026, 6, 12, 16, 0)
    assert cal.forward(friday, 120) == local(BERLIN, 2026, 6, 15, 10, 0)            # Monday 10:00
    assert cal.between(friday, local(BERLIN, 2026, 6, 15, 10, 0)) == timedelta(hours=2)
    assert cal.back(local(BERLIN, 2026, 6, 15, 10, 0), 120) == friday
    # Asked at night, the clock stands at the day's closing time.
    assert cal.back(local(BERLIN, 2026, 6, 16, 23, 0), 60) == local(BERLIN, 2026, 6, 16, 16, 0)
    assert cal.forward(local(BERLIN, 2026, 6, 13, 11, 0), 30) == local(BERLIN, 2026, 6, 15, 9, 30)  # a Saturday


def test_holidays_are_skipped():
    cal = office("Europe/Berlin", holidays=["2026-12-24", "2026-12-25"])
    assert cal.forward(local(BERLIN, 2026, 12, 23, 16, 0), 120) == local(BERLIN, 2026, 12, 28, 10, 0)
    assert cal.between(local(BERLIN, 2026, 12, 23, 17, 0), local(BERLIN, 2026, 12, 28, 9, 0)) == timedelta(0)


def test_office_hours_keep_their_local_times_across_a_clock_change():
    for zone, name, before, after in ((BERLIN, "Europe/Berlin", (2026, 3, 27), (2026, 3, 30)),   # CET -> CEST
                                      (BERLIN, "Europe/Berlin", (2026, 10, 23), (2026, 10, 26)),  # CEST -> CET
                                      (NEW_YORK, "America/New_York", (2026, 3, 6), (2026, 3, 9)),  # EST -> EDT
                                      (NEW_YORK, "America/New_York", (2026, 10, 30), (2026, 11, 2))):  # EDT -> EST
        cal = office(name)
        friday_late = local(zone, *before, 16, 0)
        # One hour on Friday, one on Monday: two hours, whatever the clocks did over the weekend.
        assert cal.forward(friday_late, 120) == local(zone, *after, 10, 0), name
        assert cal.back(local(zone, *after, 10, 0), 120) == friday_late, name
        monday = cal.between(local(zone, *after, 0, 0), local(zone, *after, 23, 59))
        assert monday == timedelta(hours=8), name


def test_a_day_of_a_clock_change_is_as_long_as_it_really_is():
    always = Calendar.build("24/7", "Europe/Berlin", week={d: "00:00-24:00" for d in
                                                           ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})
    spring = always.between(local(BERLIN, 2026, 3, 28, 12, 0), local(BERLIN, 2026, 3, 29, 12, 0))
    autumn = always.between(local(BERLIN, 2026, 10, 24, 12, 0), local(BERLIN, 2026, 10, 25, 12, 0))
    assert (spring, autumn) == (timedelta(hours=23), timedelta(hours=25))
    # A night shift across New York's missing hour is an hour short, across the repeated one an hour long.
    night = Calendar.build("night", "America/New_York", week={"sun": "01:00-04:00"})
    assert night.between(local(NEW_YORK, 2026, 3, 8, 0, 0), local(NEW_YORK, 2026, 3, 8, 12, 0)) == timedelta(hours=2)
    assert night.between(local(NEW_YORK, 2026, 11, 1, 0, 0), local(NEW_YORK, 2026, 11, 1, 12, 0)) == \
        timedelta(hours=4)


def test_new_york_answers_in_utc():
    cal = office("America/New_York")
    # Monday 10:00 EDT is 14:00Z; two business hours back is Friday 16:00 EST, 21:00Z.
    assert cal.back(datetime(2026, 3, 9, 14, 0, tzinfo=UTC), 120) == datetime(2026, 3, 6, 21, 0, tzinfo=UTC)


@settings(max_examples=60, deadline=None)
@given(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31)),
       st.integers(min_value=1, max_value=60 * 24 * 20),
       st.sampled_from(["Europe/Berlin", "America/New_York"]))
def test_back_and_forward_measure_what_between_measures(when: datetime, minutes: int, zone: str):
    cal = office(zone, holidays=["2026-12-25", "2027-01-01"])
    at = when.replace(tzinfo=UTC)
    assert cal.between(cal.back(at, minutes), at) == timedelta(minutes=minutes)
    assert cal.between(at, cal.forward(at, minutes)) == timedelta(minutes=minutes)


def test_bad_calendars_say_what_is_wrong():
    with pytest.raises(CalendarError, match="ends before it starts"):
        parse_ranges("17:00-09:00")
    with pytest.raises(CalendarError, match="not a range"):
        parse_ranges("9 to 5")
    with pytest.raises(CalendarError, match="unknown time zone"):
        office("Mars/Olympus")
    with pytest.raises(CalendarError, match="no opening hours"):
        Calendar.build("never", "UTC", week={})
    with pytest.raises(CalendarError, match="unknown day"):
        Calendar.build("x", "UTC", week={"monday": "09:00-17:00"})
    with pytest.raises(CalendarError, match="holiday"):
        office("UTC", holidays=["25 December"])
    with pytest.raises(CalendarError, match="holiday"):
        office("UTC", holidays=[20261225])   # type: ignore[list-item]
    with pytest.raises(CalendarError, match="expected a text"):
        Calendar.build("x", "UTC", week={"mon": 9})   # type: ignore[dict-item]
    assert parse_ranges("08:00-12:00, 13:00-17:30") == parse_ranges("08:00-12:00,13:00-17:30")
