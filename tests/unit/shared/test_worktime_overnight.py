"""Working hours that cross midnight (night shifts), and the interval algebra planning uses."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.events import WorkingHours
from shared.worktime import (
    Availability,
    Hours,
    Interval,
    covers,
    merge,
    shared_working_time,
    subtract,
    weekly_overlap_minutes,
    working_intervals,
)

UTC = dt.UTC


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def hours(start: str, end: str, days: range = range(5)) -> list[Hours]:
    return [Hours(d, dt.time.fromisoformat(start), dt.time.fromisoformat(end)) for d in days]


def test_a_night_shift_is_accepted_by_the_event_model():
    block = WorkingHours(weekday=0, start=dt.time(22), end=dt.time(6))
    assert (block.start, block.end) == (dt.time(22), dt.time(6))


def test_working_hours_that_start_and_end_at_the_same_minute_are_rejected_with_a_hint():
    with pytest.raises(ValidationError, match="an end before the start means the next day"):
        WorkingHours(weekday=0, start=dt.time(9), end=dt.time(9))


def test_a_night_shift_runs_into_the_next_local_day():
    nurse = Availability("Europe/Berlin", hours("22:00", "06:00", range(1)))  # Monday night
    [night] = working_intervals(nurse, dt.date(2027, 1, 4), 7)
    assert night == Interval(utc(2027, 1, 4, 21), utc(2027, 1, 5, 5))


def test_a_shift_ending_at_midnight_ends_at_the_next_days_start():
    late = Availability("UTC", hours("18:00", "00:00", range(1)))
    assert working_intervals(late, dt.date(2027, 1, 4), 1) == [
        Interval(utc(2027, 1, 4, 18), utc(2027, 1, 5, 0))
    ]


def test_a_night_shift_across_the_autumn_switch_is_an_hour_longer():
    # Saturday night into Sunday 31 October 2027, when Berlin goes back at 03:00
    nurse = Availability("Europe/Berlin", hours("22:00", "06:00", range(5, 6)))
    [night] = working_intervals(nurse, dt.date(2027, 10, 30), 1)
    assert night.minutes == 9 * 60


def test_a_night_worker_and_a_day_worker_far_east_share_time():
    # 22:00-06:00 in New York is 11:00-19:00 in Singapore in winter
    night = Availability("America/New_York", hours("22:00", "06:00", range(7)))
    day = Availability("Asia/Singapore", hours("09:00", "17:00"))
    assert weekly_overlap_minutes(night, day, week_of=dt.date(2027, 1, 4)) == 5 * 6 * 60


def test_shared_time_includes_a_night_shift_that_began_the_local_day_before():
    night = Availability("Pacific/Pago_Pago", hours("23:00", "10:00", range(7)))  # UTC-11
    always = Availability("UTC", hours("00:00", "23:59", range(7)))
    shared = shared_working_time(night, always, from_day=dt.date(2027, 1, 5), days=1)
    # Monday 23:00 local = Tuesday 10:00 UTC, until Tuesday 21:00 UTC
    assert shared[0] == Interval(utc(2027, 1, 5, 10), utc(2027, 1, 5, 21))


def test_subtract_cuts_busy_time_out_of_free_time():
    free = [Interval(utc(2027, 1, 4, 8), utc(2027, 1, 4, 16))]
    busy = [
        Interval(utc(2027, 1, 4, 9), utc(2027, 1, 4, 10)),
        Interval(utc(2027, 1, 4, 12), utc(2027, 1, 4, 17)),
    ]
    assert subtract(free, busy) == [
        Interval(utc(2027, 1, 4, 8), utc(2027, 1, 4, 9)),
        Interval(utc(2027, 1, 4, 10), utc(2027, 1, 4, 12)),
    ]


instants = st.integers(min_value=0, max_value=48).map(
    lambda h: utc(2027, 1, 1) + dt.timedelta(hours=h)
)
intervals = st.tuples(instants, instants).filter(lambda p: p[0] < p[1]).map(lambda p: Interval(*p))


@settings(max_examples=200, deadline=None)
@given(st.lists(intervals, max_size=6), st.lists(intervals, max_size=6))
def test_subtract_leaves_exactly_the_free_instants_nobody_took(free_raw, taken):
    free = merge(free_raw)
    left = subtract(free, taken)
    for hour in range(48):
        at = Interval(
            utc(2027, 1, 1) + dt.timedelta(hours=hour),
            utc(2027, 1, 1) + dt.timedelta(hours=hour + 1),
        )
        expected = covers(free, at) and not any(
            t.start < at.end and at.start < t.end for t in taken
        )
        assert covers(left, at) == expected
