"""Planning the kickoff: inside both people's working hours, for real dates around DST switches."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from services.scheduling.planning import (
    KICKOFF_MINUTES,
    SLOT_STEP_MINUTES,
    local_wall_time,
    plan_kickoff,
)
from shared.events import WorkingHours
from shared.worktime import Availability, Interval

UTC = dt.UTC


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def person(zone: str, start: str = "09:00", end: str = "17:00", days=range(5)) -> Availability:
    return Availability(
        timezone=zone,
        hours=[
            WorkingHours(
                weekday=d, start=dt.time.fromisoformat(start), end=dt.time.fromisoformat(end)
            )
            for d in days
        ],
    )


def inside_working_hours(who: Availability, slot: Interval) -> bool:
    """The slot, seen on the person's own wall clock, falls inside one of their blocks."""
    zone = ZoneInfo(who.timezone)
    start, end = slot.start.astimezone(zone), slot.end.astimezone(zone)
    return start.date() == end.date() and any(
        block.weekday == start.weekday() and block.start <= start.time() and end.time() <= block.end
        for block in who.hours
    )


# --- examples around the 2027 DST switches (US 2027-03-14, EU 2027-03-28) --------------------


def test_kickoff_lands_inside_both_working_days_across_dst_change():
    berlin, new_york = person("Europe/Berlin"), person("America/New_York")
    slot = plan_kickoff(berlin, new_york, now=utc(2027, 3, 26, 10), lead_days=2)
    # earliest day is Sunday 28 March, the day Berlin moves to CEST; Monday 29 March:
    # New York 09:00 EDT = 13:00 UTC = 15:00 CEST in Berlin
    assert slot == Interval(utc(2027, 3, 29, 13), utc(2027, 3, 29, 14))
    assert local_wall_time(slot.start, "Europe/Berlin").time() == dt.time(15)
    assert local_wall_time(slot.start, "America/New_York").time() == dt.time(9)
    assert inside_working_hours(berlin, slot)
    assert inside_working_hours(new_york, slot)


def test_long_session_fits_before_the_eu_switch_but_on_no_day_after_it():
    # Berlin CET 17:00 = 16:00 UTC, New York EDT 09:00 = 13:00 UTC: 3 shared hours until
    # Berlin moves to CEST on 28 March; then 17:00 CEST = 15:00 UTC leaves only 2 hours
    berlin, new_york = person("Europe/Berlin"), person("America/New_York")
    before = plan_kickoff(berlin, new_york, now=utc(2027, 3, 25, 12), lead_days=1, minutes=150)
    assert before == Interval(utc(2027, 3, 26, 13), dt.datetime(2027, 3, 26, 15, 30, tzinfo=UTC))
    after = plan_kickoff(berlin, new_york, now=utc(2027, 3, 27, 12), lead_days=1, minutes=150)
    assert after is None


def test_kickoff_found_only_while_us_and_eu_clocks_are_out_of_step():
    # London 09:00-14:00 and New York 09:00-17:00 share nothing while both are on standard or
    # both on summer time (NY 09:00 = London 14:00), but one hour (13:00-14:00 UTC) while NY is
    # already on EDT and London still on GMT (14-27 March 2027)
    london, new_york = person("Europe/London", "09:00", "14:00"), person("America/New_York")
    slot = plan_kickoff(london, new_york, now=utc(2027, 3, 1, 12), lead_days=2)
    assert slot == Interval(utc(2027, 3, 15, 13), utc(2027, 3, 15, 14))
    assert inside_working_hours(london, slot) and inside_working_hours(new_york, slot)
    assert plan_kickoff(london, new_york, now=utc(2027, 3, 29, 12), lead_days=2) is None


def test_kickoff_respects_the_us_switch_for_the_new_york_side():
    berlin, new_york = person("Europe/Berlin"), person("America/New_York")
    # Friday 12 March: New York still EST, 09:00 EST = 14:00 UTC
    assert plan_kickoff(new_york, berlin, now=utc(2027, 3, 10, 15), lead_days=2) == Interval(
        utc(2027, 3, 12, 14), utc(2027, 3, 12, 15)
    )
    # Monday 15 March: New York on EDT, 09:00 EDT = 13:00 UTC
    assert plan_kickoff(new_york, berlin, now=utc(2027, 3, 12, 15), lead_days=2) == Interval(
        utc(2027, 3, 15, 13), utc(2027, 3, 15, 14)
    )


def test_lead_days_count_in_the_organizers_zone_not_utc():
    # 23:30 UTC on Monday is already Tuesday 08:30 in Tokyo: two days ahead means Thursday
    tokyo = person("Asia/Tokyo")
    slot = plan_kickoff(tokyo, tokyo, now=dt.datetime(2027, 1, 4, 23, 30, tzinfo=UTC), lead_days=2)
    assert slot is not None
    assert local_wall_time(slot.start, "Asia/Tokyo") == dt.datetime(
        2027, 1, 7, 9, tzinfo=ZoneInfo("Asia/Tokyo")
    )


def test_lead_day_starts_at_the_organizers_local_midnight_west_of_utc():
    # Tuesday 00:00 UTC is still Monday 16:00 in Los Angeles: Monday's last hour must not count
    los_angeles = person("America/Los_Angeles")
    slot = plan_kickoff(los_angeles, los_angeles, now=utc(2027, 1, 4, 20), lead_days=1)
    assert slot == Interval(utc(2027, 1, 5, 17), utc(2027, 1, 5, 18))  # Tuesday 09:00 PST


def test_lead_day_starts_at_the_organizers_local_midnight_east_of_utc():
    # Thursday 07:00 in Tokyo is Wednesday 22:00 UTC: early hours on the lead day count
    tokyo = person("Asia/Tokyo", "07:00", "12:00")
    slot = plan_kickoff(tokyo, tokyo, now=utc(2027, 1, 5, 3), lead_days=2)  # Tuesday in Tokyo
    assert slot == Interval(utc(2027, 1, 6, 22), utc(2027, 1, 6, 23))


def test_horizon_counts_days_from_the_lead_day():
    berlin = person("Europe/Berlin")
    monday_only = person("Europe/Berlin", days=[0])
    now = utc(2027, 1, 5, 12)  # Tuesday; lead 1 -> Wednesday; Monday 11 Jan is the 6th day
    expected = Interval(utc(2027, 1, 11, 8), utc(2027, 1, 11, 9))
    assert plan_kickoff(berlin, monday_only, now=now, lead_days=1, horizon_days=6) == expected
    assert plan_kickoff(berlin, monday_only, now=now, lead_days=1, horizon_days=5) is None


def test_lead_days_skip_the_remaining_hours_of_today():
    berlin = person("Europe/Berlin")
    slot = plan_kickoff(berlin, berlin, now=utc(2027, 1, 4, 6), lead_days=1)  # Monday 07:00 CET
    assert slot == Interval(utc(2027, 1, 5, 8), utc(2027, 1, 5, 9))  # Tuesday 09:00 CET


def test_kickoff_is_never_planned_in_the_past_even_without_lead_days():
    berlin = person("Europe/Berlin")
    now = utc(2027, 1, 4, 14)  # Monday 15:00 CET, the 09:00-17:00 day is half over
    slot = plan_kickoff(berlin, berlin, now=now, lead_days=0)
    assert slot is not None
    assert slot.start >= now


def test_kickoff_is_none_when_there_is_no_shared_working_hour():
    los_angeles, kolkata = person("America/Los_Angeles"), person("Asia/Kolkata")
    assert plan_kickoff(los_angeles, kolkata, now=utc(2027, 1, 4, 12), lead_days=2) is None


def test_kickoff_is_none_when_the_only_shared_day_is_beyond_the_horizon():
    berlin = person("Europe/Berlin")
    # one working day a week, but the horizon is only 3 days long
    monday_only = person("Europe/Berlin", days=[0])
    assert (
        plan_kickoff(berlin, monday_only, now=utc(2027, 1, 5, 12), lead_days=1, horizon_days=3)
        is None
    )
    assert plan_kickoff(berlin, monday_only, now=utc(2027, 1, 5, 12), lead_days=1) == Interval(
        utc(2027, 1, 11, 8), utc(2027, 1, 11, 9)
    )


def test_local_wall_time_shows_the_instant_in_the_zone():
    at = utc(2027, 7, 1, 12)
    local = local_wall_time(at, "America/Los_Angeles")
    assert (local.hour, local.utcoffset()) == (5, dt.timedelta(hours=-7))
    assert local == at


# --- properties -----------------------------------------------------------------------------

# Working hours stay between 06:00 and 22:00 local, where none of these zones changes clocks,
# so a plain wall-clock check is an independent oracle.
ZONES = [
    "Europe/Berlin",
    "Europe/London",
    "America/New_York",
    "America/Los_Angeles",
    "America/St_Johns",
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
]


@st.composite
def availabilities(draw: st.DrawFn) -> Availability:
    days = draw(st.lists(st.integers(0, 6), min_size=1, max_size=7, unique=True))
    blocks = []
    for day in days:
        start = draw(st.integers(min_value=12, max_value=40))  # half hours: 06:00 .. 20:00
        end = draw(st.integers(min_value=start + 1, max_value=44))  # .. 22:00
        blocks.append(
            WorkingHours(
                weekday=day,
                start=dt.time(start // 2, 30 * (start % 2)),
                end=dt.time(end // 2, 30 * (end % 2)),
            )
        )
    return Availability(timezone=draw(st.sampled_from(ZONES)), hours=blocks)


nows = st.datetimes(
    min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2028, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=50, deadline=None)
@given(availabilities(), availabilities(), nows, st.integers(min_value=1, max_value=7))
def test_kickoff_is_the_earliest_slot_inside_both_working_hours(organizer, attendee, now, lead):
    slot = plan_kickoff(organizer, attendee, now=now, lead_days=lead, horizon_days=7)

    zone = ZoneInfo(organizer.timezone)
    earliest_day = now.astimezone(zone).date() + dt.timedelta(days=lead)
    length = dt.timedelta(minutes=KICKOFF_MINUTES)

    if slot is not None:
        assert slot.end - slot.start == length
        assert slot.start.astimezone(zone).date() >= earliest_day
        assert slot.start > now
        assert slot.start.minute % SLOT_STEP_MINUTES == 0 and slot.start.second == 0
        assert inside_working_hours(organizer, slot)
        assert inside_working_hours(attendee, slot)

    # brute force over every 30-minute boundary of the lead day and the week after it
    candidate = dt.datetime.combine(earliest_day, dt.time(), tzinfo=zone).astimezone(UTC)
    candidate -= dt.timedelta(minutes=candidate.minute % SLOT_STEP_MINUTES)
    expected = None
    limit = candidate + dt.timedelta(days=7)
    while candidate < limit and (slot is None or candidate < slot.start):
        if candidate.astimezone(zone).date() >= earliest_day:
            option = Interval(candidate, candidate + length)
            if inside_working_hours(organizer, option) and inside_working_hours(attendee, option):
                expected = option
                break
        candidate += dt.timedelta(minutes=SLOT_STEP_MINUTES)
    if slot is None:
        assert expected is None
    else:
        assert expected in (None, slot)  # nothing fits earlier than the slot chosen
