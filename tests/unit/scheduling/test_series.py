"""Series: an RRULE in the organizer's zone, overrides in DST-mismatch weeks, calendar expansion."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import recurring_ical_events
from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar import Calendar

from services.scheduling import announcements, invitations, plans, series
from services.scheduling.planning import Planner, Rules
from shared.events import Role, SessionKind
from shared.worktime import Availability, Hours, Interval
from tests.unit.scheduling.test_planning import inside, planners

UTC = dt.UTC
RULES = Rules(notice=dt.timedelta(0), buffer=dt.timedelta(minutes=15))
BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def person(pid: str, zone: str, start: str, end: str, days=range(5)) -> Planner:
    hours = [Hours(d, dt.time.fromisoformat(start), dt.time.fromisoformat(end)) for d in days]
    return Planner(pid, Availability(zone, hours))


def test_rrules_for_each_cadence():
    tuesday = dt.datetime(2027, 2, 9, 16)
    assert (
        series.rrule_for(series.Cadence.WEEKLY, tuesday)
        == "FREQ=WEEKLY;INTERVAL=1;BYDAY=TU;COUNT=26"
    )
    assert (
        series.rrule_for(series.Cadence.BIWEEKLY, tuesday)
        == "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU;COUNT=13"
    )
    assert series.rrule_for(series.Cadence.MONTHLY, tuesday) == "FREQ=MONTHLY;BYDAY=2TU;COUNT=6"
    assert series.rrule_for(series.Cadence.MONTHLY, dt.datetime(2027, 3, 30, 9)).startswith(
        "FREQ=MONTHLY;BYDAY=-1TU"
    )
    assert [series.cadence_for(d) for d in (7, 14, 30)] == list(series.Cadence)[:3]
    # quarterly reflections: the same weekday of every third month, two in the 26 weeks
    quarterly = series.rrule_for(series.Cadence.QUARTERLY, tuesday)
    assert quarterly == "FREQ=MONTHLY;INTERVAL=3;BYDAY=2TU;COUNT=2"
    starts = series.rule_starts(quarterly, tuesday, "Europe/Berlin")
    assert [s.astimezone(ZoneInfo("Europe/Berlin")).replace(tzinfo=None) for s in starts] == [
        dt.datetime(2027, 2, 9, 16),
        dt.datetime(2027, 5, 11, 16),  # the second Tuesday of May, in summer time
    ]


def test_the_rule_keeps_the_organizers_wall_clock_across_dst():
    starts = series.rule_starts(
        "FREQ=WEEKLY;COUNT=10", dt.datetime(2027, 3, 9, 16), "Europe/Berlin"
    )
    assert {s.astimezone(BERLIN).time() for s in starts} == {dt.time(16)}
    assert starts[2] - starts[1] == dt.timedelta(days=7)
    assert starts[3] - starts[2] == dt.timedelta(days=7, hours=-1)  # Berlin springs forward 28 Mar


def mismatch_pair() -> tuple[Planner, Planner]:
    # winter and summer: 16:00 Berlin is 10:00 New York, inside 09:00-11:00; in the weeks
    # between the US switch (14 Mar 2027) and the EU one (28 Mar) it is 11:00: outside
    return person("m", "Europe/Berlin", "14:00", "18:00"), person(
        "e", "America/New_York", "09:00", "11:00"
    )


def test_a_dst_mismatch_week_moves_that_occurrence_and_only_that():
    mentor, mentee = mismatch_pair()
    starts = series.rule_starts("FREQ=WEEKLY;COUNT=8", dt.datetime(2027, 3, 2, 16), "Europe/Berlin")
    placed = series.plan_occurrences(
        mentor, mentee, starts, minutes=45, rules=RULES, not_before=utc(2027, 3, 1)
    )
    moved = [o for o in placed if o.moved]
    assert [o.recurrence_id.date() for o in moved] == [dt.date(2027, 3, 16), dt.date(2027, 3, 23)]
    for o in placed:
        assert o.slot is not None
        assert inside(mentor, o.slot.interval) and inside(mentee, o.slot.interval)
    assert "outside the working hours of e" in (moved[0].reason or "")


def meeting_of(plan: plans.MeetingPlan) -> announcements.Meeting:
    first = plan.first_local.replace(tzinfo=ZoneInfo(plan.timezone)).astimezone(UTC)
    return announcements.Meeting(
        program_id="prog", meeting_id=plan.meeting_id, pair_id="pair", kind=plan.kind,
        uid=plan.uid, sequence=0, timezone=plan.timezone, minutes=plan.minutes, rrule=plan.rrule,
        first_start=first,
        people=(
            announcements.Person("m", "m@example.org", "Mia", "Europe/Berlin", Role.MENTOR),
            announcements.Person("e", "e@example.org", "Eli", "America/New_York", Role.MENTEE),
        ),
        organizer=invitations.Person("team@example.org", "Team"),
    )  # fmt: skip


def occurrences_of(plan: plans.MeetingPlan) -> list[announcements.Occurrence]:
    return [
        announcements.Occurrence(
            o.session_id, o.recurrence_id, o.slot.start if o.slot else None,
            o.slot.end if o.slot else None, o.slot is not None,
        )
        for o in plan.occurrences
    ]  # fmt: skip


def test_calendar_apps_expand_the_series_to_the_planned_local_times():
    mentor, mentee = mismatch_pair()
    rrule, first = "FREQ=WEEKLY;INTERVAL=1;BYDAY=TU;COUNT=8", dt.datetime(2027, 3, 2, 16)
    placed = series.plan_occurrences(
        mentor, mentee, series.rule_starts(rrule, first, "Europe/Berlin"),
        minutes=45, rules=RULES, not_before=utc(2027, 3, 1),
    )  # fmt: skip
    plan = plans.MeetingPlan(
        "series-1", SessionKind.REGULAR, 45, "Europe/Berlin", rrule, first,
        tuple(
            plans.Planned(
                f"o{i}", o.recurrence_id, o.slot and o.slot.interval, plans.Status.SCHEDULED, None
            )
            for i, o in enumerate(placed)
        ),
    )  # fmt: skip
    event = announcements.scheduled(meeting_of(plan), occurrences_of(plan), utc(2027, 2, 20))
    assert event is not None and event.rrule == plan.rrule and event.series_id == plan.meeting_id
    calendar = Calendar.from_ical(event.ical)
    assert str(calendar["METHOD"]) == "REQUEST"
    tzids = {c["DTSTART"].params.get("TZID") for c in calendar.walk("VEVENT")}
    assert tzids <= {str(tz["TZID"]) for tz in calendar.walk("VTIMEZONE")}
    assert all(v.walk("VALARM") for v in calendar.walk("VEVENT"))
    expanded = recurring_ical_events.of(calendar).between(utc(2027, 2, 1), utc(2027, 12, 31))
    got = sorted(e["DTSTART"].dt.astimezone(UTC) for e in expanded)
    planned = sorted(o.slot.start for o in plan.occurrences if o.slot)
    assert got == planned
    for start in got:  # every expanded occurrence inside 09:00-11:00 New York
        local = start.astimezone(NEW_YORK)
        assert dt.time(9) <= local.time() and (local + dt.timedelta(minutes=45)).time() <= dt.time(
            11
        )
    overrides = [v for v in calendar.walk("VEVENT") if "RECURRENCE-ID" in v]
    assert len(overrides) == 2 and all(str(v["UID"]) == plan.uid for v in overrides)


def test_an_impossible_occurrence_is_excluded_and_reported():
    mentor = person("m", "Europe/Berlin", "14:00", "18:00", days=range(4))  # not on Fridays
    mentee = person("e", "America/New_York", "09:00", "11:00")
    starts = series.rule_starts("FREQ=WEEKLY;COUNT=3", dt.datetime(2027, 1, 4, 16), "Europe/Berlin")
    busy = Interval(utc(2027, 1, 9), utc(2027, 1, 16))  # the whole second week
    mentee = Planner("e", mentee.availability, [busy])
    placed = series.plan_occurrences(
        mentor, mentee, starts, minutes=45, rules=RULES, not_before=utc(2027, 1, 1)
    )
    assert [o.slot is None for o in placed] == [False, True, False]
    assert "e has another session then" in (placed[1].reason or "")


@settings(max_examples=40, deadline=None)
@given(
    planners("m"),
    planners("e"),
    st.datetimes(
        min_value=dt.datetime(2026, 1, 1),
        max_value=dt.datetime(2028, 6, 30),
        timezones=st.just(UTC),
    ),
    st.sampled_from(list(series.Cadence)),
)
def test_every_occurrence_is_inside_both_peoples_hours_or_reported_impossible(
    mentor, mentee, now, cadence
):
    plan = plans.plan_series(
        "prog", "pair", mentor, mentee, cadence=cadence, not_before=now, rules=RULES
    )
    if not isinstance(plan, plans.MeetingPlan):
        assert plan.reason
        return
    taken: list[Interval] = []
    for o in plan.occurrences:
        if o.slot is None:
            assert o.note
            continue
        assert inside(mentor, o.slot) and inside(mentee, o.slot)
        assert all(not (t.start < o.slot.end and o.slot.start < t.end) for t in taken)
        taken.append(o.slot)
