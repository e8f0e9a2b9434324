"""Working time across zones, for real dates: DST switches, interval algebra, slot finding."""

from __future__ import annotations

import datetime as dt
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.events import WorkingHours
from shared.worktime import (
    Availability,
    Interval,
    first_slot,
    intersect,
    merge,
    shared_working_time,
    weekly_overlap_minutes,
    working_intervals,
)

UTC = dt.UTC
MONDAY_TO_FRIDAY = range(5)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def weekdays(
    start: str, end: str, days: range | list[int] = MONDAY_TO_FRIDAY
) -> list[WorkingHours]:
    return [
        WorkingHours(weekday=d, start=dt.time.fromisoformat(start), end=dt.time.fromisoformat(end))
        for d in days
    ]


def person(
    zone: str, start: str = "09:00", end: str = "17:00", days=MONDAY_TO_FRIDAY
) -> Availability:
    return Availability(timezone=zone, hours=weekdays(start, end, days))


# --- working_intervals: local hours on real dates -------------------------------------------


def test_berlin_nine_oclock_is_eight_utc_in_winter():
    berlin = person("Europe/Berlin")
    monday = dt.date(2027, 1, 4)
    assert working_intervals(berlin, monday, 1) == [
        Interval(utc(2027, 1, 4, 8), utc(2027, 1, 4, 16))
    ]


def test_berlin_nine_oclock_is_seven_utc_in_summer():
    berlin = person("Europe/Berlin")
    monday = dt.date(2027, 7, 5)
    assert working_intervals(berlin, monday, 1) == [
        Interval(utc(2027, 7, 5, 7), utc(2027, 7, 5, 15))
    ]


def test_half_hour_offset_zone_is_converted_exactly():
    kolkata = person("Asia/Kolkata")
    monday = dt.date(2027, 1, 4)
    assert working_intervals(kolkata, monday, 1) == [
        Interval(
            dt.datetime(2027, 1, 4, 3, 30, tzinfo=UTC), dt.datetime(2027, 1, 4, 11, 30, tzinfo=UTC)
        )
    ]


def test_working_intervals_cover_only_the_requested_dates_and_weekdays():
    berlin = person("Europe/Berlin")
    # Wednesday 2027-01-06 .. Tuesday 2027-01-12: Wed, Thu, Fri, (Sat, Sun off), Mon, Tue
    found = working_intervals(berlin, dt.date(2027, 1, 6), 7)
    assert [i.start.date() for i in found] == [
        dt.date(2027, 1, 6),
        dt.date(2027, 1, 7),
        dt.date(2027, 1, 8),
        dt.date(2027, 1, 11),
        dt.date(2027, 1, 12),
    ]
    assert all(i.minutes == 8 * 60 for i in found)


def test_working_intervals_follow_the_dst_switch_within_one_week():
    berlin = person("Europe/Berlin")
    # Friday 2027-03-26 is CET (+1), Monday 2027-03-29 is CEST (+2)
    friday, monday = working_intervals(berlin, dt.date(2027, 3, 26), 4)
    assert friday.start == utc(2027, 3, 26, 8)
    assert monday.start == utc(2027, 3, 29, 7)


def test_spring_forward_gap_start_moves_later_not_earlier():
    # 2027-03-28 (Sunday) Berlin clocks jump 02:00 CET -> 03:00 CEST: 02:30 does not exist
    berlin = person("Europe/Berlin", "02:30", "05:00", days=[6])
    (interval,) = working_intervals(berlin, dt.date(2027, 3, 28), 1)
    assert interval.start == dt.datetime(2027, 3, 28, 1, 30, tzinfo=UTC)  # 03:30 CEST
    assert interval.end == utc(2027, 3, 28, 3)  # 05:00 CEST


def test_spring_forward_gap_start_moves_later_in_new_york():
    # 2027-03-14 (Sunday) New York jumps 02:00 EST -> 03:00 EDT
    new_york = person("America/New_York", "02:30", "06:00", days=[6])
    (interval,) = working_intervals(new_york, dt.date(2027, 3, 14), 1)
    assert interval.start == dt.datetime(2027, 3, 14, 7, 30, tzinfo=UTC)  # 03:30 EDT
    assert interval.start.astimezone(dt.timezone(dt.timedelta(hours=-4))).time() == dt.time(3, 30)


def test_working_day_spanning_spring_forward_is_an_hour_shorter():
    berlin = person("Europe/Berlin", "01:00", "05:00", days=[6])
    (interval,) = working_intervals(berlin, dt.date(2027, 3, 28), 1)
    assert interval.minutes == 3 * 60


def test_ambiguous_autumn_time_takes_the_first_occurrence():
    # 2027-10-31 (Sunday) Berlin 03:00 CEST -> 02:00 CET: 02:30 happens twice
    berlin = person("Europe/Berlin", "02:30", "06:00", days=[6])
    (interval,) = working_intervals(berlin, dt.date(2027, 10, 31), 1)
    assert interval.start == dt.datetime(2027, 10, 31, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert interval.end == utc(2027, 10, 31, 5)  # 06:00 CET


# --- overlap between zones and the out-of-step DST weeks -------------------------------------


def test_new_york_london_overlap_is_three_hours_a_day_when_dst_is_in_step():
    new_york, london = person("America/New_York"), person("Europe/London")
    assert weekly_overlap_minutes(new_york, london, week_of=dt.date(2027, 3, 1)) == 5 * 180
    assert weekly_overlap_minutes(new_york, london, week_of=dt.date(2027, 3, 29)) == 5 * 180


def test_new_york_london_overlap_grows_while_only_the_us_is_on_summer_time():
    # US switched 2027-03-14, the UK only on 2027-03-28: NY is UTC-4 while London is UTC+0
    new_york, london = person("America/New_York"), person("Europe/London")
    assert weekly_overlap_minutes(new_york, london, week_of=dt.date(2027, 3, 15)) == 5 * 240
    shared = shared_working_time(new_york, london, from_day=dt.date(2027, 3, 15), days=1)
    assert shared == [Interval(utc(2027, 3, 15, 13), utc(2027, 3, 15, 17))]


def test_los_angeles_and_kolkata_office_hours_never_overlap():
    los_angeles, kolkata = person("America/Los_Angeles"), person("Asia/Kolkata")
    assert weekly_overlap_minutes(los_angeles, kolkata, week_of=dt.date(2027, 1, 4)) == 0
    assert weekly_overlap_minutes(los_angeles, kolkata, week_of=dt.date(2027, 7, 5)) == 0


def test_shared_time_includes_local_days_that_start_on_the_previous_utc_date():
    # Auckland (NZDT, +13) Monday 09:00-17:00 is Sunday 20:00 UTC - Monday 04:00 UTC
    auckland = person("Pacific/Auckland", days=[0])
    sunday = dt.date(2027, 1, 3)
    assert shared_working_time(auckland, auckland, from_day=sunday, days=1) == [
        Interval(utc(2027, 1, 3, 20), utc(2027, 1, 4, 0))
    ]


def test_shared_time_is_clipped_to_the_utc_days_asked_for():
    auckland = person("Pacific/Auckland", days=[0, 1])
    monday = dt.date(2027, 1, 4)
    # Monday local (Sun 20:00 - Mon 04:00 UTC) clipped at the start, Tuesday local
    # (Mon 20:00 - Tue 04:00 UTC) clipped at the end
    assert shared_working_time(auckland, auckland, from_day=monday, days=1) == [
        Interval(utc(2027, 1, 4, 0), utc(2027, 1, 4, 4)),
        Interval(utc(2027, 1, 4, 20), utc(2027, 1, 5, 0)),
    ]


def test_shared_time_includes_local_days_that_end_on_the_next_utc_date():
    # Los Angeles (PST, -8) Sunday 17:00-23:00 is Monday 01:00-07:00 UTC
    los_angeles = person("America/Los_Angeles", "17:00", "23:00", days=[6])
    monday = dt.date(2027, 1, 4)
    assert shared_working_time(los_angeles, los_angeles, from_day=monday, days=1) == [
        Interval(utc(2027, 1, 4, 1), utc(2027, 1, 4, 7))
    ]


def test_merge_joins_touching_intervals():
    morning = Interval(utc(2027, 1, 4, 9), utc(2027, 1, 4, 12))
    afternoon = Interval(utc(2027, 1, 4, 12), utc(2027, 1, 4, 17))
    assert merge([afternoon, morning]) == [Interval(utc(2027, 1, 4, 9), utc(2027, 1, 4, 17))]


def test_merge_keeps_separate_intervals_apart_and_sorted():
    late = Interval(utc(2027, 1, 4, 13), utc(2027, 1, 4, 17))
    early = Interval(utc(2027, 1, 4, 9), utc(2027, 1, 4, 12))
    assert merge([late, early]) == [early, late]


def test_split_working_day_blocks_that_touch_become_one_interval():
    berlin = Availability(
        "Europe/Berlin",
        weekdays("09:00", "12:00", [0]) + weekdays("12:00", "17:00", [0]),
    )
    assert working_intervals(berlin, dt.date(2027, 1, 4), 1) == [
        Interval(utc(2027, 1, 4, 8), utc(2027, 1, 4, 16))
    ]


# --- interval algebra (hypothesis) ---------------------------------------------------------

BASE = utc(2027, 1, 4)


@st.composite
def intervals(draw: st.DrawFn) -> Interval:
    start = draw(st.integers(min_value=0, max_value=24 * 60))
    length = draw(st.integers(min_value=1, max_value=6 * 60))
    return Interval(BASE + dt.timedelta(minutes=start), BASE + dt.timedelta(minutes=start + length))


interval_lists = st.lists(intervals(), max_size=8)


def minute_set(items: list[Interval]) -> set[int]:
    covered: set[int] = set()
    for item in items:
        first = int((item.start - BASE).total_seconds() // 60)
        covered.update(range(first, first + item.minutes))
    return covered


def total(items: list[Interval]) -> int:
    return sum(i.minutes for i in items)


@settings(max_examples=100, deadline=None)
@given(interval_lists)
def test_merge_is_sorted_disjoint_and_covers_the_same_time(items):
    merged = merge(items)
    assert all(i.start < i.end for i in merged)
    for before, after in itertools.pairwise(merged):
        assert before.end < after.start  # touching intervals are joined too
    assert minute_set(merged) == minute_set(items)


@settings(max_examples=100, deadline=None)
@given(interval_lists, interval_lists)
def test_intersection_is_exactly_the_time_inside_both(a, b):
    a, b = merge(a), merge(b)
    both = intersect(a, b)
    assert minute_set(both) == minute_set(a) & minute_set(b)
    for item in both:
        assert item.start < item.end
        assert any(x.start <= item.start and item.end <= x.end for x in a)
        assert any(y.start <= item.start and item.end <= y.end for y in b)


@settings(max_examples=100, deadline=None)
@given(interval_lists, interval_lists)
def test_intersection_is_commutative_and_no_longer_than_either_input(a, b):
    a, b = merge(a), merge(b)
    assert intersect(a, b) == intersect(b, a)
    assert total(intersect(a, b)) <= min(total(a), total(b))


@settings(max_examples=100, deadline=None)
@given(interval_lists)
def test_intersection_with_itself_is_identity(a):
    a = merge(a)
    assert intersect(a, a) == a


ZONES = [
    "Europe/Berlin",
    "Europe/London",
    "America/New_York",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "America/St_Johns",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
    "UTC",
]


@st.composite
def availabilities(draw: st.DrawFn) -> Availability:
    zone = draw(st.sampled_from(ZONES))
    days = draw(st.lists(st.integers(0, 6), min_size=1, max_size=7, unique=True))
    hours = []
    for day in days:
        start = draw(st.integers(min_value=0, max_value=22 * 2))
        end = draw(st.integers(min_value=start + 1, max_value=23 * 2 + 1))
        hours.append(
            WorkingHours(
                weekday=day,
                start=dt.time(start // 2, 30 * (start % 2)),
                end=dt.time(end // 2, 30 * (end % 2)),
            )
        )
    return Availability(timezone=zone, hours=hours)


weeks = st.dates(min_value=dt.date(2026, 1, 1), max_value=dt.date(2028, 12, 31))


@settings(max_examples=60, deadline=None)
@given(availabilities(), availabilities(), weeks)
def test_weekly_overlap_is_symmetric_and_bounded_by_each_persons_week(first, second, week_of):
    overlap = weekly_overlap_minutes(first, second, week_of=week_of)
    assert overlap == weekly_overlap_minutes(second, first, week_of=week_of)
    assert 0 <= overlap <= weekly_overlap_minutes(first, first, week_of=week_of)
    assert overlap <= weekly_overlap_minutes(second, second, week_of=week_of)


@settings(max_examples=60, deadline=None)
@given(availabilities(), availabilities(), weeks)
def test_shared_time_lies_inside_both_peoples_working_time(first, second, day):
    shared = shared_working_time(first, second, from_day=day, days=3)
    around = day - dt.timedelta(days=1)
    mine = working_intervals(first, around, 5)
    theirs = working_intervals(second, around, 5)
    window_start = dt.datetime.combine(day, dt.time(), tzinfo=UTC)
    for item in shared:
        assert window_start <= item.start < item.end <= window_start + dt.timedelta(days=3)
        assert any(x.start <= item.start and item.end <= x.end for x in mine)
        assert any(y.start <= item.start and item.end <= y.end for y in theirs)


# --- first_slot -----------------------------------------------------------------------------


def test_first_slot_rounds_up_to_the_next_step_boundary():
    shared = [Interval(utc(2027, 1, 4, 9), utc(2027, 1, 4, 12))]
    slot = first_slot(shared, not_before=dt.datetime(2027, 1, 4, 10, 7, tzinfo=UTC), minutes=60)
    assert slot == Interval(dt.datetime(2027, 1, 4, 10, 15, tzinfo=UTC), utc(2027, 1, 4, 11, 15))


def test_first_slot_treats_seconds_past_a_boundary_as_past_it():
    shared = [Interval(utc(2027, 1, 4, 9), utc(2027, 1, 4, 12))]
    not_before = dt.datetime(2027, 1, 4, 10, 15, 1, tzinfo=UTC)
    slot = first_slot(shared, not_before=not_before, minutes=30, step_minutes=15)
    assert slot is not None
    assert slot.start == dt.datetime(2027, 1, 4, 10, 30, tzinfo=UTC)


def test_first_slot_skips_intervals_too_short_for_the_session():
    shared = [
        Interval(utc(2027, 1, 4, 9), dt.datetime(2027, 1, 4, 9, 45, tzinfo=UTC)),
        Interval(utc(2027, 1, 5, 9), utc(2027, 1, 5, 11)),
    ]
    slot = first_slot(shared, not_before=utc(2027, 1, 1), minutes=60)
    assert slot == Interval(utc(2027, 1, 5, 9), utc(2027, 1, 5, 10))


def test_first_slot_is_none_when_nothing_fits_after_not_before():
    shared = [Interval(utc(2027, 1, 4, 9), utc(2027, 1, 4, 12))]
    assert (
        first_slot(shared, not_before=dt.datetime(2027, 1, 4, 11, 1, tzinfo=UTC), minutes=60)
        is None
    )
    assert first_slot([], not_before=utc(2027, 1, 4), minutes=15) is None


slot_inputs = st.tuples(
    interval_lists,
    st.integers(min_value=-60 * 60, max_value=30 * 3600),  # not_before, seconds from BASE
    st.integers(min_value=5, max_value=180),
    st.sampled_from([5, 10, 15, 20, 30, 60]),
)


@settings(max_examples=100, deadline=None)
@given(slot_inputs)
def test_first_slot_is_the_earliest_fitting_step_aligned_slot(data):
    items, offset_seconds, minutes, step = data
    shared = merge(items)
    not_before = BASE + dt.timedelta(seconds=offset_seconds)
    slot = first_slot(shared, not_before=not_before, minutes=minutes, step_minutes=step)

    def fits(start: dt.datetime) -> bool:
        end = start + dt.timedelta(minutes=minutes)
        return any(i.start <= start and end <= i.end for i in shared)

    # every step boundary at or after not_before, up to the end of the generated range
    candidate = BASE - dt.timedelta(hours=2)
    while candidate < not_before:
        candidate += dt.timedelta(minutes=step)
    expected = None
    while candidate <= BASE + dt.timedelta(days=2):
        if fits(candidate):
            expected = Interval(candidate, candidate + dt.timedelta(minutes=minutes))
            break
        candidate += dt.timedelta(minutes=step)

    assert slot == expected
    if slot is not None:
        assert slot.start >= not_before
        assert slot.start.second == 0 and slot.start.microsecond == 0
        assert slot.start.minute % step == 0
        assert slot.minutes == minutes
        assert fits(slot.start)
