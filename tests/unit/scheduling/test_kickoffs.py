"""The kickoff decisions: ids that never collide across programs, status, note and invitation."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from services.scheduling.invitations import Person
from services.scheduling.kickoffs import (
    NO_SLOT_NOTE,
    Attendee,
    SessionStatus,
    kickoff_session_id,
    plan_kickoff_session,
)
from shared.events import PairFormed
from shared.worktime import Availability

NOW = dt.datetime(2027, 3, 1, 8, tzinfo=dt.UTC)
ids = st.text(min_size=1, max_size=20)


def attendee(participant_id: str, zone: str, start: str = "09:00", end: str = "17:00") -> Attendee:
    hours = [{"weekday": d, "start": start, "end": end} for d in range(5)]
    return Attendee(
        participant_id,
        f"{participant_id}@example.org",
        participant_id.title(),
        Availability.from_json(zone, hours),
    )


def pair_formed(program: str = "prog", pair: str = "pair-1") -> PairFormed:
    return PairFormed(
        program_id=program,
        occurred_at=NOW,
        pair_id=pair,
        round_id="r1",
        mentor_id="ana",
        mentee_id="bo",
        language="en",
    )


@given(ids, ids, ids, ids)
def test_kickoff_ids_differ_whenever_program_or_pair_differ(program_a, pair_a, program_b, pair_b):
    same = (program_a, pair_a) == (program_b, pair_b)
    assert (kickoff_session_id(program_a, pair_a) == kickoff_session_id(program_b, pair_b)) == same


def test_kickoff_ids_keep_slashes_in_ids_apart():
    assert kickoff_session_id("a/b", "c") != kickoff_session_id("a", "b/c")


def test_a_kickoff_with_a_slot_is_scheduled_and_announced_in_the_mentors_zone():
    kickoff = plan_kickoff_session(
        pair_formed(),
        attendee("ana", "Europe/Lisbon"),
        attendee("bo", "Europe/Berlin"),
        organizer=Person("team@example.org", "Team"),
        now=NOW,
        lead_days=1,
    )
    assert kickoff.status is SessionStatus.SCHEDULED
    assert kickoff.note is None
    assert kickoff.uid == f"{kickoff.session_id}@mentorship"
    assert kickoff.scheduled is not None
    assert kickoff.scheduled.anchor_timezone == "Europe/Lisbon"
    assert kickoff.slot is not None and kickoff.scheduled.start == kickoff.slot.start
    assert "TZID=Europe/Lisbon" in kickoff.scheduled.ical


def test_a_kickoff_without_a_shared_hour_is_unschedulable_and_announces_nothing():
    kickoff = plan_kickoff_session(
        pair_formed(),
        attendee("ana", "Europe/Berlin", "09:00", "10:00"),
        attendee("bo", "America/Los_Angeles", "09:00", "10:00"),
        organizer=Person("team@example.org", "Team"),
        now=NOW,
        lead_days=1,
    )
    assert (kickoff.status, kickoff.slot, kickoff.scheduled) == (
        SessionStatus.UNSCHEDULABLE,
        None,
        None,
    )
    assert kickoff.note == NO_SLOT_NOTE
    assert kickoff.attendee_ids == ("ana", "bo")
