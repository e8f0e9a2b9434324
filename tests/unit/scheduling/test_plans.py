"""Planning whole cohorts: a person's planned sessions are busy time for every later plan."""

from __future__ import annotations

import datetime as dt
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from services.scheduling import plans, series
from services.scheduling.planning import Planner, Rules
from shared.worktime import Availability, Hours, Interval
from tests.unit.scheduling.test_planning import inside, planners

UTC = dt.UTC
RULES = Rules(notice=dt.timedelta(hours=24), buffer=dt.timedelta(minutes=15))


@st.composite
def workers(draw: st.DrawFn, pid: str) -> Planner:
    """Mostly overlapping people (nearby zones, long days), so pairs compete for time."""
    zone = draw(st.sampled_from(["Europe/Berlin", "Europe/London", "Africa/Lagos", "Asia/Kolkata"]))
    start = draw(st.integers(6, 10))
    length = draw(st.integers(4, 9))
    hours = [Hours(d, dt.time(start), dt.time((start + length) % 24)) for d in range(5)]
    return Planner(pid, Availability(zone, hours))


@st.composite
def cohorts(draw: st.DrawFn) -> tuple[list[Planner], list[Planner], list[tuple[int, int]]]:
    people = st.one_of(workers("x"), planners("x"))
    mentors = [draw(workers(f"m{i}")) for i in range(draw(st.integers(1, 2)))]
    mentees = [
        draw(people.map(lambda p, i=i: Planner(f"e{i}", p.availability)))
        for i in range(draw(st.integers(2, 6)))
    ]
    pairs = [(draw(st.integers(0, len(mentors) - 1)), j) for j in range(len(mentees))]
    return mentors, mentees, pairs


@settings(max_examples=25, deadline=None)
@given(
    cohorts(),
    st.datetimes(
        min_value=dt.datetime(2026, 1, 1),
        max_value=dt.datetime(2028, 6, 30),
        timezones=st.just(UTC),
    ),
    st.sampled_from(list(series.Cadence)),
)
def test_nobody_is_ever_in_two_sessions_at_once(cohort, now, cadence):
    mentors, mentees, pairs = cohort
    busy: dict[str, list[Interval]] = {p.participant_id: [] for p in [*mentors, *mentees]}
    for n, (i, j) in enumerate(pairs):
        mentor, mentee = mentors[i], mentees[j]
        current = [
            Planner(p.participant_id, p.availability, list(busy[p.participant_id]))
            for p in (mentor, mentee)
        ]
        plan = plans.plan_pair(
            "prog", f"p{n}", *current, now=now, lead_days=1, rules=RULES, cadence=cadence
        )
        meetings = [plan.kickoff] + ([plan.series] if plan.series else [])
        for meeting in meetings:
            for occurrence in meeting.occurrences:
                if occurrence.slot is None:
                    assert occurrence.note  # impossible, with the reason
                    continue
                assert inside(mentor, occurrence.slot) and inside(mentee, occurrence.slot)
                for person in (mentor, mentee):
                    busy[person.participant_id].append(occurrence.slot)
    for spans in busy.values():
        for a, b in itertools.pairwise(sorted(spans)):
            assert a.end + RULES.buffer <= b.start, (a, b)
