"""Who mentors whom: hard constraints as properties, preferences as examples."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from services.pairing.matching import (
    MIN_WEEKLY_OVERLAP_MINUTES,
    MatchResult,
    Profile,
    propose_pairs,
)
from shared.events import WorkingHours
from shared.worktime import Availability, shared_working_time, weekly_overlap_minutes

WEEK = dt.date(2027, 3, 1)


def hours(start: int, end: int, days: range = range(5)) -> list[WorkingHours]:
    return [WorkingHours(weekday=d, start=dt.time(start), end=dt.time(end)) for d in days]


def availability(zone: str = "Europe/Berlin", start: int = 9, end: int = 17) -> Availability:
    return Availability(timezone=zone, hours=hours(start, end))


def mentor(
    pid: str,
    *,
    capacity: int = 1,
    languages=("en",),
    offered=(),
    zone="Europe/Berlin",
    start: int = 9,
    end: int = 17,
    manager_id: str | None = None,
) -> Profile:
    return Profile(
        participant_id=pid,
        availability=availability(zone, start, end),
        languages=tuple(languages),
        skills_offered=frozenset(offered),
        manager_id=manager_id,
        capacity=capacity,
    )


def mentee(
    pid: str,
    *,
    languages=("en",),
    sought=(),
    zone="Europe/Berlin",
    start: int = 9,
    end: int = 17,
    manager_id: str | None = None,
) -> Profile:
    return Profile(
        participant_id=pid,
        availability=availability(zone, start, end),
        languages=tuple(languages),
        skills_sought=frozenset(sought),
        manager_id=manager_id,
    )


def pairs_of(result: MatchResult) -> dict[str, str]:
    return {p.mentee_id: p.mentor_id for p in result.pairs}


# --- examples -------------------------------------------------------------------------------


def test_mentee_without_a_shared_language_stays_unmatched():
    result = propose_pairs(
        [mentor("m1", languages=("de", "fr"))],
        [mentee("e1", languages=("ja",))],
        current_load={},
        week_of=WEEK,
    )
    assert result.pairs == []
    assert result.unmatched_mentee_ids == ["e1"]


def test_pair_uses_the_first_of_the_mentees_languages_the_mentor_speaks():
    result = propose_pairs(
        [mentor("m1", languages=("en", "es"))],
        [mentee("e1", languages=("es", "en"))],
        current_load={},
        week_of=WEEK,
    )
    (pair,) = result.pairs
    assert pair.language == "es"
    assert "shared language: es" in pair.reasons


def test_mentor_offering_sought_skills_is_preferred_over_more_shared_time():
    skilled = mentor("m-skilled", offered=("python", "sql"), start=13, end=17)  # 4 h a day
    unskilled = mentor("m-plain", offered=("design",), start=9, end=17)  # 8 h a day
    result = propose_pairs(
        [unskilled, skilled], [mentee("e1", sought=("python",))], current_load={}, week_of=WEEK
    )
    (pair,) = result.pairs
    assert pair.mentor_id == "m-skilled"
    assert "skills: python" in pair.reasons


def test_more_shared_working_time_breaks_a_tie_in_skills():
    short = mentor("m-a", start=16, end=17)  # 5 h a week: half the hours points
    long = mentor("m-b", start=9, end=17)
    result = propose_pairs([short, long], [mentee("e1")], current_load={}, week_of=WEEK)
    assert pairs_of(result) == {"e1": "m-b"}


def test_less_loaded_mentor_breaks_a_tie_in_skills_and_time():
    busy = mentor("m-a", capacity=3)
    free = mentor("m-b", capacity=3)
    result = propose_pairs([busy, free], [mentee("e1")], current_load={"m-a": 2}, week_of=WEEK)
    assert pairs_of(result) == {"e1": "m-b"}


def test_pairs_with_under_an_hour_of_weekly_shared_time_are_not_formed():
    los_angeles = mentor("m1", zone="America/Los_Angeles")
    kolkata = mentee("e1", zone="Asia/Kolkata")
    assert weekly_overlap_minutes(los_angeles.availability, kolkata.availability, week_of=WEEK) == 0
    result = propose_pairs([los_angeles], [kolkata], current_load={}, week_of=WEEK)
    assert result.pairs == []
    assert result.unmatched_mentee_ids == ["e1"]


def test_exactly_an_hour_of_weekly_shared_time_is_enough():
    # one shared day of 60 minutes: mentor Monday 09-10, mentee Monday 09-17
    one_hour = Profile(
        "m1", Availability("Europe/Berlin", hours(9, 10, range(1))), ("en",), capacity=1
    )
    result = propose_pairs([one_hour], [mentee("e1")], current_load={}, week_of=WEEK)
    assert pairs_of(result) == {"e1": "m1"}


def test_fifty_nine_minutes_of_weekly_shared_time_is_not_enough():
    short = Profile(
        "m1",
        Availability(
            "Europe/Berlin", [WorkingHours(weekday=0, start=dt.time(9), end=dt.time(9, 59))]
        ),
        ("en",),
        capacity=1,
    )
    result = propose_pairs([short], [mentee("e1")], current_load={}, week_of=WEEK)
    assert MIN_WEEKLY_OVERLAP_MINUTES == 60
    assert result.pairs == []


def test_nobody_is_paired_with_their_manager_in_either_direction():
    boss = mentor("boss", capacity=5)
    report = mentee("report", manager_id="boss")
    managed_mentor = mentor("lead", capacity=5, manager_id="manager-mentee")
    manager_mentee = mentee("manager-mentee")
    result = propose_pairs(
        [boss, managed_mentor], [report, manager_mentee], current_load={}, week_of=WEEK
    )
    assert pairs_of(result) == {"report": "lead", "manager-mentee": "boss"}


def test_full_mentor_takes_no_one_more():
    result = propose_pairs(
        [mentor("m1", capacity=2)], [mentee("e1")], current_load={"m1": 2}, week_of=WEEK
    )
    assert result.pairs == []
    assert result.unmatched_mentee_ids == ["e1"]


def test_most_constrained_mentee_chooses_first():
    # "a-flexible" sorts first by id but can also go to m2; "z-picky" only speaks what m1 speaks
    m1 = mentor("m1", languages=("en", "pt"))
    m2 = mentor("m2", languages=("en",))
    flexible = mentee("a-flexible", languages=("en",))
    picky = mentee("z-picky", languages=("pt",))
    result = propose_pairs([m1, m2], [flexible, picky], current_load={}, week_of=WEEK)
    assert pairs_of(result) == {"z-picky": "m1", "a-flexible": "m2"}
    assert result.unmatched_mentee_ids == []


def test_unmatched_mentee_ids_are_sorted_whatever_order_they_were_found_in():
    # "z" (no shared language) is handled first, "b" loses the only seat to "a" afterwards
    m1 = mentor("m1", capacity=1)
    mentees = [mentee("a"), mentee("b"), mentee("z", languages=("ja",))]
    result = propose_pairs([m1], mentees, current_load={}, week_of=WEEK)
    assert pairs_of(result) == {"a": "m1"}
    assert result.unmatched_mentee_ids == ["b", "z"]


def test_each_unmatched_mentee_is_told_why():
    # two mentors fit "a" and "b"; "report" fits only its own manager; "night" shares no time
    mentors = [mentor("m1", capacity=1), mentor("boss", capacity=1, zone="Asia/Tokyo")]
    mentees = [
        mentee("a"),
        mentee("b"),
        mentee("report", zone="Asia/Tokyo", manager_id="boss"),
        mentee("night", zone="Europe/Berlin", start=20, end=23),
        mentee("ja", languages=("ja",)),
    ]
    result = propose_pairs(mentors, mentees, current_load={}, week_of=WEEK)
    why = {u.mentee_id: u.reason for u in result.unmatched}
    assert set(why) == {"b", "report", "night", "ja"}
    assert why["b"] == "capacity: the 1 mentor(s) who fit are full with mentees they fit better"
    assert why["report"].startswith("every mentor who fits is ruled out (reporting line")
    assert why["night"].startswith("no shared time:")
    assert why["ja"] == "no mentor shares a language (ja)"


def test_unmatched_mentee_ids_are_sorted():
    result = propose_pairs(
        [], [mentee("c"), mentee("a"), mentee("b")], current_load={}, week_of=WEEK
    )
    assert result.unmatched_mentee_ids == ["a", "b", "c"]


# --- properties -----------------------------------------------------------------------------

ZONES = [
    "Europe/Berlin",
    "Europe/London",
    "America/New_York",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "America/Los_Angeles",
]
LANGUAGES = ["en", "de", "es", "ja"]
SKILLS = ["python", "sql", "leadership", "design"]


@st.composite
def availabilities(draw: st.DrawFn) -> Availability:
    start = draw(st.integers(min_value=0, max_value=20))
    end = draw(st.integers(min_value=start + 1, max_value=23))
    days = draw(st.sampled_from([range(5), range(3), range(2, 7)]))
    return Availability(timezone=draw(st.sampled_from(ZONES)), hours=hours(start, end, days))


@st.composite
def populations(draw: st.DrawFn):
    n_mentors = draw(st.integers(min_value=0, max_value=5))
    n_mentees = draw(st.integers(min_value=0, max_value=8))
    mentor_ids = [f"m{i}" for i in range(n_mentors)]
    mentee_ids = [f"e{i}" for i in range(n_mentees)]
    everyone = mentor_ids + mentee_ids + ["outsider"]

    def profile(pid: str, capacity: int) -> Profile:
        return Profile(
            participant_id=pid,
            availability=draw(availabilities()),
            languages=tuple(
                draw(st.lists(st.sampled_from(LANGUAGES), min_size=1, max_size=3, unique=True))
            ),
            skills_offered=frozenset(draw(st.lists(st.sampled_from(SKILLS), max_size=3))),
            skills_sought=frozenset(draw(st.lists(st.sampled_from(SKILLS), max_size=3))),
            manager_id=draw(st.none() | st.sampled_from(everyone)),
            capacity=capacity,
        )

    mentors = [profile(pid, draw(st.integers(min_value=1, max_value=3))) for pid in mentor_ids]
    mentees = [profile(pid, 0) for pid in mentee_ids]
    load = {
        pid: draw(st.integers(min_value=0, max_value=4))
        for pid in mentor_ids
        if draw(st.booleans())
    }
    return mentors, mentees, load


def above(person: Profile, everyone: dict[str, Profile]) -> set[str]:
    """Everyone up the person's reporting line."""
    found: set[str] = set()
    boss = person.manager_id
    while boss is not None and boss not in found:
        found.add(boss)
        boss = everyone[boss].manager_id if boss in everyone else None
    return found


def feasible(m: Profile, e: Profile, everyone: dict[str, Profile] | None = None) -> bool:
    people = everyone or {m.participant_id: m, e.participant_id: e}
    return (
        bool(set(m.languages) & set(e.languages))
        and m.participant_id not in above(e, people)
        and e.participant_id not in above(m, people)
        and weekly_overlap_minutes(m.availability, e.availability, week_of=WEEK) >= 60
        and max(
            (
                i.minutes
                for i in shared_working_time(m.availability, e.availability, from_day=WEEK, days=7)
            ),
            default=0,
        )
        >= 60
    )


PROPERTY = settings(max_examples=60, deadline=None)


@PROPERTY
@given(populations())
def test_no_mentor_exceeds_capacity_counting_current_load(population):
    mentors, mentees, load = population
    result = propose_pairs(mentors, mentees, current_load=load, week_of=WEEK)
    taken = Counter(p.mentor_id for p in result.pairs)
    for m in mentors:
        assert taken[m.participant_id] <= max(0, m.capacity - load.get(m.participant_id, 0))


@PROPERTY
@given(populations())
def test_every_pair_meets_the_hard_constraints(population):
    mentors, mentees, load = population
    by_id = {p.participant_id: p for p in mentors + mentees}
    result = propose_pairs(mentors, mentees, current_load=load, week_of=WEEK)
    for pair in result.pairs:
        m, e = by_id[pair.mentor_id], by_id[pair.mentee_id]
        assert m in mentors and e in mentees
        assert pair.language in m.languages and pair.language in e.languages
        assert e.manager_id != m.participant_id
        assert m.manager_id != e.participant_id
        overlap = weekly_overlap_minutes(m.availability, e.availability, week_of=WEEK)
        assert overlap >= MIN_WEEKLY_OVERLAP_MINUTES


@PROPERTY
@given(populations())
def test_every_mentee_is_paired_at_most_once_or_listed_as_unmatched(population):
    mentors, mentees, load = population
    result = propose_pairs(mentors, mentees, current_load=load, week_of=WEEK)
    paired = [p.mentee_id for p in result.pairs]
    assert len(paired) == len(set(paired))
    assert set(paired).isdisjoint(result.unmatched_mentee_ids)
    assert sorted(paired + result.unmatched_mentee_ids) == sorted(e.participant_id for e in mentees)


@PROPERTY
@given(populations())
def test_no_unmatched_mentee_could_have_had_a_mentor_with_room_left(population):
    mentors, mentees, load = population
    result = propose_pairs(mentors, mentees, current_load=load, week_of=WEEK)
    taken = Counter(p.mentor_id for p in result.pairs)
    room = {
        m.participant_id: m.capacity - load.get(m.participant_id, 0) - taken[m.participant_id]
        for m in mentors
    }
    by_id = {e.participant_id: e for e in mentees}
    everyone = {p.participant_id: p for p in (*mentors, *mentees)}
    for mentee_id in result.unmatched_mentee_ids:
        for m in mentors:
            if room[m.participant_id] > 0:
                assert not feasible(m, by_id[mentee_id], everyone)


@PROPERTY
@given(populations())
def test_output_is_deterministic_for_the_same_input(population):
    mentors, mentees, load = population
    first = propose_pairs(mentors, mentees, current_load=load, week_of=WEEK)
    second = propose_pairs(list(mentors), list(mentees), current_load=dict(load), week_of=WEEK)
    assert first == second


def test_shared_time_only_in_stretches_shorter_than_a_kickoff_is_not_a_match():
    # in July, Los Angeles 08:00-15:30 (UTC-7) and London 08:00-16:30 (UTC+1) share only
    # 15:00-15:30 UTC: 2.5 h a week, but never the unbroken hour a kickoff needs
    def hours(start: dt.time, end: dt.time) -> list[WorkingHours]:
        return [WorkingHours(weekday=d, start=start, end=end) for d in range(5)]

    la = Profile(
        "mentor-la",
        Availability("America/Los_Angeles", hours(dt.time(8), dt.time(15, 30))),
        ("en",),
        capacity=1,
    )
    london = Profile(
        "mentee-london", Availability("Europe/London", hours(dt.time(8), dt.time(16, 30))), ("en",)
    )
    week = dt.date(2027, 7, 5)
    assert weekly_overlap_minutes(la.availability, london.availability, week_of=week) >= 60
    result = propose_pairs([la], [london], current_load={}, week_of=week)
    assert result.pairs == []
    assert result.unmatched_mentee_ids == ["mentee-london"]
