"""Finding a slot: both people's hours on real dates, notice, buffers, quarter hours, fairness."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from services.scheduling import planning
from services.scheduling.planning import (
    NoSlot,
    Planner,
    Rules,
    Slot,
    find_slot,
    fits,
    organizer_quarter,
)
from shared.worktime import Availability, Hours, Interval

UTC = dt.UTC
RULES = Rules(notice=dt.timedelta(0), buffer=dt.timedelta(minutes=15))


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def person(
    pid: str, zone: str, start: str = "09:00", end: str = "17:00", days=range(5), **kw
) -> Planner:
    hours = [Hours(d, dt.time.fromisoformat(start), dt.time.fromisoformat(end)) for d in days]
    return Planner(pid, Availability(zone, hours), **kw)


def slot_of(found: Slot | NoSlot) -> Interval:
    assert isinstance(found, Slot), found
    return found.interval


def test_a_kathmandu_organizer_gets_a_slot_on_a_local_quarter_hour():
    organizer = person("m", "Asia/Kathmandu", "10:10", "17:00")
    other = person("e", "Asia/Kathmandu")
    found = slot_of(
        find_slot(
            organizer,
            other,
            minutes=60,
            not_before=utc(2027, 1, 4),
            until=utc(2027, 1, 6),
            rules=RULES,
        )
    )
    local = found.start.astimezone(ZoneInfo("Asia/Kathmandu"))
    assert local.minute % 15 == 0 and local.time() >= dt.time(10, 10)


def test_organizer_quarter_rounds_up_in_local_time():
    at = utc(2027, 1, 4, 4, 31)  # 10:16 in Kathmandu (+05:45)
    assert organizer_quarter(at, "Asia/Kathmandu").astimezone(
        ZoneInfo("Asia/Kathmandu")
    ).time() == dt.time(10, 30)


def test_another_session_of_either_person_is_busy_time_with_a_buffer():
    busy = [Interval(utc(2027, 1, 4, 9), utc(2027, 1, 4, 10))]
    mentor = person("m", "UTC", busy=busy)
    mentee = person("e", "UTC")
    found = slot_of(
        find_slot(
            mentor,
            mentee,
            minutes=60,
            not_before=utc(2027, 1, 4, 9),
            until=utc(2027, 1, 5),
            rules=RULES,
        )
    )
    assert found.start >= utc(2027, 1, 4, 10, 15)


def test_a_night_shift_worker_meets_inside_the_night():
    nurse = person("m", "Europe/Berlin", "22:00", "06:00", days=range(7))
    owl = person("e", "Asia/Tokyo", "06:00", "14:00")  # 22:00 Berlin = 06:00 Tokyo in winter
    found = slot_of(
        find_slot(
            nurse, owl, minutes=60, not_before=utc(2027, 1, 4), until=utc(2027, 1, 8), rules=RULES
        )
    )
    local = found.start.astimezone(ZoneInfo("Europe/Berlin")).time()
    assert local >= dt.time(22) or local < dt.time(5)


def test_no_shared_hour_is_reported_with_both_zones():
    found = find_slot(
        person("m", "Europe/Berlin"), person("e", "Pacific/Auckland", "09:00", "10:00"),
        minutes=60, not_before=utc(2027, 1, 4), until=utc(2027, 1, 11), rules=RULES,
    )  # fmt: skip
    assert isinstance(found, NoSlot)
    assert "share no working hour" in found.reason and "Pacific/Auckland" in found.reason


def test_too_short_an_overlap_says_how_long_it_is():
    found = find_slot(
        person("m", "UTC", "09:00", "17:00"), person("e", "UTC", "16:30", "20:00"),
        minutes=60, not_before=utc(2027, 1, 4), until=utc(2027, 1, 11), rules=RULES,
    )  # fmt: skip
    assert isinstance(found, NoSlot) and "at most 30 minutes" in found.reason


def test_a_fully_booked_overlap_blames_the_other_sessions():
    busy = [Interval(utc(2027, 1, d, 16), utc(2027, 1, d, 17)) for d in range(4, 12)]
    found = find_slot(
        person("m", "UTC", "09:00", "17:00", busy=busy), person("e", "UTC", "16:00", "20:00"),
        minutes=30, not_before=utc(2027, 1, 4), until=utc(2027, 1, 11), rules=RULES,
    )  # fmt: skip
    assert isinstance(found, NoSlot) and "taken by their other sessions" in found.reason


def test_a_slot_away_from_everyones_edge_is_preferred():
    found = find_slot(
        person("m", "UTC"), person("e", "UTC"),
        minutes=60, not_before=utc(2027, 1, 4), until=utc(2027, 1, 5), rules=RULES,
    )  # fmt: skip
    assert isinstance(found, Slot) and found.edge_of == ()
    assert found.interval.start == utc(2027, 1, 4, 10)


def test_at_the_edge_of_the_day_the_less_burdened_person_takes_it():
    # Berlin 08:00-12:00 and New York 06:00-10:00 overlap 12:00-16:00 Berlin ... not at all;
    # use a two-hour overlap: Berlin's last and New York's first hours
    berlin = dict(zone="Europe/Berlin", start="09:00", end="17:00")
    york = dict(zone="America/New_York", start="09:00", end="17:00")
    # winter: 15:00-17:00 Berlin == 09:00-11:00 New York; a 60-min slot is at someone's edge
    args = dict(minutes=60, not_before=utc(2027, 1, 4), until=utc(2027, 1, 5), rules=RULES)
    fresh = find_slot(person("m", **berlin), person("e", **york, edge_burden=0), **args)
    tired = find_slot(person("m", **berlin), person("e", **york, edge_burden=3), **args)
    assert isinstance(fresh, Slot) and isinstance(tired, Slot)
    assert tired.edge_of == ("m",)  # e carried the edge often: now it is m's late hour
    assert tired.interval.end == utc(2027, 1, 4, 16)
    burdened_m = find_slot(person("m", **berlin, edge_burden=3), person("e", **york), **args)
    assert isinstance(burdened_m, Slot) and burdened_m.edge_of == ("e",)


def test_fits_says_why_a_time_does_not_work():
    mentor, mentee = person("m", "UTC"), person("e", "UTC", "12:00", "17:00")
    slot = Interval(utc(2027, 1, 4, 10), utc(2027, 1, 4, 11))
    assert fits(mentor, mentee, slot, rules=RULES, not_before=utc(2027, 1, 1)) == (
        "outside the working hours of e"
    )
    assert "minimum notice" in fits(mentor, mentee, slot, rules=RULES, not_before=utc(2027, 1, 5))


# --- properties: random zones, hours (overnight too) and dates through 2028 --------------------

ZONES = [
    "Europe/Berlin", "Europe/London", "America/New_York", "America/Los_Angeles",
    "America/St_Johns", "America/Sao_Paulo", "Asia/Kolkata", "Asia/Kathmandu", "Asia/Tokyo",
    "Australia/Sydney", "Australia/Lord_Howe", "Pacific/Auckland", "Pacific/Chatham", "UTC",
]  # fmt: skip


@st.composite
def planners(draw: st.DrawFn, pid: str) -> Planner:
    days = draw(st.lists(st.integers(0, 6), min_size=1, max_size=7, unique=True))
    blocks = []
    for day in days:
        start = draw(st.integers(0, 95))  # quarter hours
        length = draw(st.integers(4, 48))  # 1 to 12 hours; may cross midnight
        end = (start + length) % 96
        blocks.append(
            Hours(day, dt.time(start // 4, 15 * (start % 4)), dt.time(end // 4, 15 * (end % 4)))
        )
    return Planner(pid, Availability(draw(st.sampled_from(ZONES)), blocks))


def inside(who: Planner, slot: Interval) -> bool:
    """Independent oracle: walk the slot minute by minute on the person's own wall clock."""
    zone = ZoneInfo(who.availability.timezone)
    at = slot.start
    while at < slot.end:
        local = at.astimezone(zone)
        ok = False
        for b in who.availability.hours:
            for back in (0, 1):  # a block that started today, or a night shift from yesterday
                day = local.date() - dt.timedelta(days=back)
                if b.weekday != day.weekday():
                    continue
                begin = dt.datetime.combine(day, b.start, tzinfo=zone)
                finish_day = day + dt.timedelta(days=1) if b.end <= b.start else day
                finish = dt.datetime.combine(finish_day, b.end, tzinfo=zone)
                ok = ok or begin.astimezone(UTC) <= at < finish.astimezone(UTC)
        if not ok:
            return False
        at += dt.timedelta(minutes=5)
    return True


starts = st.datetimes(
    min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2028, 12, 20), timezones=st.just(UTC)
)


@settings(max_examples=120, deadline=None)
@given(planners("m"), planners("e"), starts, st.sampled_from([30, 45, 60, 90]))
def test_every_slot_lies_in_both_peoples_hours_or_the_reason_is_given(
    mentor, mentee, start, minutes
):
    until = start + dt.timedelta(days=7)
    found = find_slot(mentor, mentee, minutes=minutes, not_before=start, until=until, rules=RULES)
    if isinstance(found, NoSlot):
        assert found.reason
        # nothing was missed: no quarter hour of the organizer's clock in the week fits
        at = organizer_quarter(start, mentor.availability.timezone)
        while at + dt.timedelta(minutes=minutes) <= until:
            candidate = Interval(at, at + dt.timedelta(minutes=minutes))
            assert not (inside(mentor, candidate) and inside(mentee, candidate)), candidate
            at += dt.timedelta(minutes=15)
        return
    slot = found.interval
    assert slot.end - slot.start == dt.timedelta(minutes=minutes)
    assert start <= slot.start and slot.end <= until
    assert slot.start.astimezone(ZoneInfo(mentor.availability.timezone)).minute % 15 == 0
    assert inside(mentor, slot) and inside(mentee, slot)


@given(
    zone=st.sampled_from(
        [
            "Europe/Berlin",
            "Asia/Kathmandu",
            "America/St_Johns",
            "Asia/Kolkata",
            "Australia/Lord_Howe",
            "Pacific/Chatham",
            "UTC",
        ]
    ),
    base=st.datetimes(min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2028, 12, 1)),
    gaps=st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 900)), min_size=1, max_size=4),
    minutes=st.sampled_from([15, 30, 45, 60, 90]),
    offset=st.integers(-5000, 8000),
)
def test_the_nearest_start_is_the_closest_of_every_start_listed(zone, base, gaps, minutes, offset):
    # the computed nearest quarter is what listing every quarter and taking the closest gives
    start, free = base.replace(tzinfo=dt.UTC), []
    for gap, span in gaps:
        start += dt.timedelta(minutes=gap, seconds=7)
        free.append(Interval(start, start + dt.timedelta(minutes=span)))
        start = free[-1].end
    length = dt.timedelta(minutes=minutes)
    near = base.replace(tzinfo=dt.UTC) + dt.timedelta(minutes=offset, seconds=13)
    listed = [s for i in free for s in planning._starts(i, length, zone)]
    expected = min(listed, key=lambda s: (abs(s - near), s)) if listed else None
    assert planning._nearest(free, length, zone, near) == expected
