"""The event catalogue as a public contract: envelope, validation rules, subjects, JSON shape."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared import events
from shared.events import (
    BY_SUBJECT,
    CATALOGUE,
    Event,
    PairFormed,
    ParticipantRegistered,
    Role,
    SessionScheduled,
    WorkingHours,
    dead_letter_subject,
)
from tests.unit.shared import event_samples_insights as insights_samples
from tests.unit.shared import event_samples_notifications as notifications_samples
from tests.unit.shared import event_samples_pairing as pairing_samples
from tests.unit.shared import event_samples_scheduling as scheduling_samples
from tests.unit.shared.samples import NINE_TO_FIVE, registration

AT = "2027-03-29T13:00:00Z"
LATER = "2027-03-29T14:00:00Z"
ICAL = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n"
SOURCE = "5f0c6a9e-3f59-4a8e-8d36-0c3f5a1d2b7e"


# One valid payload (beyond the envelope's program_id) for every event in the catalogue.
OCCURRED = "2027-03-01T09:00:00+00:00"

SAMPLES: dict[type[Event], dict[str, Any]] = {
    events.ParticipantRegistered: registration(
        role="mentor",
        capacity=2,
        skills_offered=["python"],
        manager_id="boss",
        demographics={"region": "emea"},
    ),
    events.ParticipantUpdated: {"participant_id": "ana", "languages": ["de"], "capacity": 3},
    events.ParticipantTimezoneChanged: {
        "participant_id": "ana",
        "old_timezone": "Europe/Berlin",
        "new_timezone": "America/New_York",
        "working_hours": NINE_TO_FIVE,
        "effective_date": "2027-04-01",
    },
    events.ParticipantUnavailable: {
        "participant_id": "ana",
        "start_date": "2027-04-01",
        "end_date": "2027-04-10",
        "reason": "leave",
    },
    events.ParticipantLeft: {"participant_id": "ana", "reason": "moved on"},
    events.MatchingRequested: {"round_id": "r1", "requested_by": "coordinator"},
    events.MatchingCompleted: {"round_id": "r1", "pairs_formed": 2, "unmatched_mentee_ids": ["x"]},
    events.MenteeUnmatched: {
        "round_id": "r1",
        "participant_id": "x",
        "reason": "no_shared_time",
        "detail": "no mentor sharing en has 60 weekly minutes with x",
    },
    events.PairProposed: {
        "pair_id": "p1",
        "round_id": "r1",
        "mentor_id": "m",
        "mentee_id": "ana",
        "score": 0.75,
        "reasons": ["shared language: en"],
    },
    events.PairAccepted: {"pair_id": "p1", "participant_id": "ana"},
    events.PairDeclined: {"pair_id": "p1", "participant_id": "ana", "reason": "busy"},
    events.PairFormed: {
        "pair_id": "p1",
        "round_id": "r1",
        "mentor_id": "m",
        "mentee_id": "ana",
        "language": "en",
        "reasons": ["shared language: en"],
    },
    events.PairPaused: {"pair_id": "p1", "reason": "holiday", "until": "2027-05-01"},
    events.PairResumed: {"pair_id": "p1"},
    events.PairEnded: {"pair_id": "p1", "reason": "done"},
    events.CharterAgreed: {"pair_id": "p1", "cadence_days": 14, "session_minutes": 45},
    events.GoalSet: {"pair_id": "p1", "goal_id": "g1", "title": "Lead a project"},
    events.MilestoneReached: {
        "pair_id": "p1",
        "milestone_id": "ms1",
        "title": "First talk",
        "source": "lms",
    },
    events.OpportunityOffered: {
        "opportunity_id": "o1",
        "participant_id": "ana",
        "kind": "stretch",
        "title": "Lead",
    },
    events.SessionScheduled: {
        "session_id": "s1",
        "pair_id": "p1",
        "kind": "kickoff",
        "start": AT,
        "end": LATER,
        "anchor_timezone": "Europe/Berlin",
        "attendee_ids": ["m", "ana"],
        "uid": "s1@x",
        "sequence": 0,
        "ical": ICAL,
    },
    events.SessionRescheduled: {
        "session_id": "s1",
        "pair_id": "p1",
        "previous_start": AT,
        "start": LATER,
        "end": "2027-03-29T15:00:00Z",
        "attendee_ids": ["m", "ana"],
        "uid": "s1@x",
        "sequence": 1,
        "ical": ICAL,
    },
    events.SessionCancelled: {
        "session_id": "s1",
        "pair_id": "p1",
        "attendee_ids": ["m"],
        "uid": "s1@x",
        "sequence": 2,
        "ical": ICAL,
    },
    events.SessionResponded: {
        "session_id": "s1",
        "pair_id": "p1",
        "participant_id": "m",
        "uid": "s1@x",
        "sequence": 2,
        "recurrence_id": AT,
        "response": "declined",
        "comment": "on leave that week",
    },
    events.SessionUnschedulable: {
        "pair_id": "p1",
        "kind": "kickoff",
        "reason": "no shared working time in the next four weeks",
    },
    events.SessionHeld: {
        "session_id": "s1",
        "pair_id": "p1",
        "held_at": AT,
        "duration_minutes": 55,
        "present_ids": ["m", "ana"],
    },
    events.SessionMissed: {"session_id": "s1", "pair_id": "p1", "no_show_ids": ["ana"]},
    events.CheckinDue: {"checkin_id": "c1", "pair_id": "p1", "participant_id": "ana", "due_at": AT},
    events.CheckinSubmitted: {
        "checkin_id": "c1",
        "pair_id": "p1",
        "participant_id": "ana",
        "progress": 4,
    },
    events.CheckinOverdue: {
        "checkin_id": "c1",
        "pair_id": "p1",
        "participant_id": "ana",
        "due_at": AT,
        "escalation_level": 1,
    },
    events.FeedbackGiven: {"pair_id": "p1", "from_id": "ana", "about_id": "m", "rating": 5},
    events.AssessmentSubmitted: {
        "participant_id": "ana",
        "instrument": "self-efficacy",
        "scores": {"confidence": 3.5},
    },
    events.NotificationSent: {
        "delivery_id": "d1",
        "recipient_id": "ana",
        "kind": "invitation",
        "channel": "email",
        "source_event_id": SOURCE,
        "message_id": "<d1@example.org>",
    },
    events.NotificationFailed: {
        "delivery_id": "d1",
        "recipient_id": "ana",
        "kind": "invitation",
        "channel": "email",
        "source_event_id": SOURCE,
        "attempts": 3,
        "reason": "550 no such user",
    },
    events.PairAtRisk: {"pair_id": "p1", "reasons": ["two missed sessions"], "score": 0.8},
}
for _more in (pairing_samples, scheduling_samples, notifications_samples, insights_samples):
    SAMPLES.update(_more.SAMPLES)


def build(model: type[Event], **changes: Any) -> Event:
    return model.model_validate(
        {"program_id": "prog-1", "occurred_at": OCCURRED, **SAMPLES[model], **changes}
    )


def error_types(exc: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    return {e["type"] for e in exc.value.errors()}


# --- envelope -------------------------------------------------------------------------------


def test_occurred_at_is_normalised_to_utc_keeping_the_instant():
    berlin_time = dt.datetime(2027, 7, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    event = build(PairFormed, occurred_at=berlin_time)
    assert event.occurred_at.utcoffset() == dt.timedelta(0)
    assert event.occurred_at == berlin_time
    assert event.occurred_at.hour == 10


def test_occurred_at_from_json_with_offset_is_normalised_to_utc():
    event = build(PairFormed, occurred_at="2027-07-01T12:00:00+02:00")
    assert event.occurred_at.utcoffset() == dt.timedelta(0)
    assert event.occurred_at.hour == 10


@pytest.mark.parametrize("naive", [dt.datetime(2027, 7, 1, 12, 0), "2027-07-01T12:00:00"])
def test_naive_occurred_at_is_rejected(naive):
    with pytest.raises(ValidationError) as exc:
        build(PairFormed, occurred_at=naive)
    assert "timezone_aware" in error_types(exc)


def test_naive_session_start_is_rejected():
    with pytest.raises(ValidationError):
        build(SessionScheduled, start="2027-03-29T13:00:00")


def test_session_times_are_normalised_to_utc():
    event = build(SessionScheduled, start="2027-03-29T15:00:00+02:00")
    assert event.start == dt.datetime(2027, 3, 29, 13, tzinfo=dt.UTC)
    assert event.start.utcoffset() == dt.timedelta(0)


def test_envelope_defaults_to_a_fresh_id_and_schema_version_1():
    first, second = build(PairFormed), build(PairFormed)
    assert isinstance(first.event_id, uuid.UUID)
    assert first.event_id != second.event_id
    assert first.schema_version == 1


def test_occurred_at_has_no_default_so_every_emitter_takes_it_from_the_clock():
    body = {"program_id": "prog-1", **SAMPLES[PairFormed]}
    with pytest.raises(ValidationError) as exc:
        PairFormed.model_validate(body)
    assert [e["loc"] for e in exc.value.errors()] == [("occurred_at",)]


@pytest.mark.parametrize("version", [0, 2, "2"])
def test_schema_version_other_than_1_is_rejected(version):
    with pytest.raises(ValidationError):
        build(PairFormed, schema_version=version)


def test_schema_version_1_is_accepted():
    assert build(PairFormed, schema_version=1).schema_version == 1


def test_events_are_frozen():
    event = build(PairFormed)
    with pytest.raises(ValidationError):
        event.pair_id = "other"  # type: ignore[misc]
    assert event.pair_id == "p1"


def test_working_hours_are_frozen():
    hours = WorkingHours(weekday=0, start=dt.time(9), end=dt.time(17))
    with pytest.raises(ValidationError):
        hours.start = dt.time(8)  # type: ignore[misc]


@pytest.mark.parametrize("model", CATALOGUE, ids=lambda m: m.__name__)
def test_extra_fields_are_forbidden(model):
    with pytest.raises(ValidationError) as exc:
        build(model, surprise="not in the contract")
    assert "extra_forbidden" in error_types(exc)


def test_extra_fields_in_working_hours_are_forbidden():
    hours = [{"weekday": 0, "start": "09:00", "end": "17:00", "lunch": "12:00"}]
    with pytest.raises(ValidationError) as exc:
        ParticipantRegistered.model_validate(registration(working_hours=hours))
    assert "extra_forbidden" in error_types(exc)


# --- participant rules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus_Mons", "Europe/berlin", "", "../../etc/passwd", "CET+1"]
)
def test_unknown_time_zone_is_rejected_with_a_helpful_message(zone):
    with pytest.raises(ValidationError) as exc:
        ParticipantRegistered.model_validate(registration(timezone=zone))
    (error,) = exc.value.errors()
    assert error["loc"] == ("timezone",)
    assert "is not an IANA time zone" in error["msg"]
    assert "Europe/Berlin" in error["msg"]  # shows an example of a valid name


@pytest.mark.parametrize("zone", ["Europe", "America", "x" * 300])
def test_region_name_or_overlong_zone_is_a_validation_error_not_a_crash(zone):
    with pytest.raises(ValidationError) as exc:
        ParticipantRegistered.model_validate(registration(timezone=zone))
    assert "is not an IANA time zone" in str(exc.value)


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/Argentina/Buenos_Aires", "UTC"])
def test_iana_time_zones_are_accepted(zone):
    assert ParticipantRegistered.model_validate(registration(timezone=zone)).timezone == zone


def test_mentor_without_capacity_is_rejected():
    with pytest.raises(ValidationError, match="a mentor needs a capacity"):
        ParticipantRegistered.model_validate(registration(role="mentor"))


def test_mentee_with_capacity_is_rejected():
    with pytest.raises(ValidationError, match="capacity is for mentors only"):
        ParticipantRegistered.model_validate(registration(role="mentee", capacity=2))


def test_mentor_with_capacity_and_mentee_without_are_accepted():
    mentor = ParticipantRegistered.model_validate(registration(role="mentor", capacity=3))
    mentee = ParticipantRegistered.model_validate(registration(role="mentee"))
    assert (mentor.role, mentor.capacity) == (Role.MENTOR, 3)
    assert (mentee.role, mentee.capacity) == (Role.MENTEE, None)


@pytest.mark.parametrize("capacity", [0, -1, 51])
def test_mentor_capacity_out_of_range_is_rejected(capacity):
    with pytest.raises(ValidationError):
        ParticipantRegistered.model_validate(registration(role="mentor", capacity=capacity))


def test_languages_are_normalised_to_lowercase():
    event = ParticipantRegistered.model_validate(registration(languages=[" EN ", "De"]))
    assert event.languages == ["en", "de"]


@pytest.mark.parametrize("field", ["working_hours", "languages"])
def test_participant_needs_at_least_one_working_hour_and_language(field):
    with pytest.raises(ValidationError):
        ParticipantRegistered.model_validate(registration(**{field: []}))


def test_invalid_email_is_rejected():
    with pytest.raises(ValidationError):
        ParticipantRegistered.model_validate(registration(email="not-an-email"))


def test_working_hours_may_not_start_and_end_at_the_same_minute():
    with pytest.raises(ValidationError, match="an end before the start means the next day"):
        WorkingHours.model_validate({"weekday": 0, "start": "09:00", "end": "09:00"})


def test_working_hours_ending_before_they_start_are_a_night_shift():
    block = WorkingHours.model_validate({"weekday": 0, "start": "22:00", "end": "06:00"})
    assert (block.start.hour, block.end.hour) == (22, 6)


@pytest.mark.parametrize("weekday", [-1, 7])
def test_working_hours_weekday_must_be_monday_to_sunday(weekday):
    with pytest.raises(ValidationError):
        WorkingHours(weekday=weekday, start=dt.time(9), end=dt.time(17))


# --- catalogue ------------------------------------------------------------------------------

SUBJECT = re.compile(r"^mentorship\.[a-z]+(_[a-z]+)*\.[a-z]+(_[a-z]+)*$")


@pytest.mark.parametrize("model", CATALOGUE, ids=lambda m: m.__name__)
def test_subject_has_the_form_mentorship_entity_verb(model):
    assert SUBJECT.match(model.subject), model.subject
    assert model.event_type() == model.subject


def test_every_subject_in_the_catalogue_is_unique():
    subjects = [model.subject for model in CATALOGUE]
    assert len(subjects) == len(set(subjects))
    assert len(set(CATALOGUE)) == len(CATALOGUE)


def test_catalogue_lists_every_event_class_in_the_module():
    defined = {
        obj
        for obj in vars(events).values()
        if isinstance(obj, type) and issubclass(obj, Event) and obj is not Event
    }
    assert defined == set(CATALOGUE)


def test_by_subject_finds_each_event_class():
    assert len(BY_SUBJECT) == len(CATALOGUE)
    for model in CATALOGUE:
        assert BY_SUBJECT[model.subject] is model


def test_dead_letter_subjects_do_not_clash_with_event_subjects():
    assert dead_letter_subject("pairing") == "mentorship.dlq.pairing"
    assert dead_letter_subject("pairing") not in BY_SUBJECT


def test_samples_cover_the_whole_catalogue():
    assert set(SAMPLES) == set(CATALOGUE)


@pytest.mark.parametrize("model", CATALOGUE, ids=lambda m: m.__name__)
def test_json_round_trip_preserves_the_event(model):
    event = build(model, occurred_at="2027-03-29T15:00:00+02:00")
    text = event.model_dump_json()
    again = model.model_validate_json(text)
    assert again == event
    assert again.model_dump_json() == text
    assert BY_SUBJECT[model.subject].model_validate_json(text) == event


def test_json_of_a_registration_uses_plain_contract_values():
    event = build(ParticipantRegistered)
    body = event.model_dump(mode="json")
    assert body["role"] == "mentor"
    assert body["working_hours"][0] == {"weekday": 0, "start": "09:00:00", "end": "17:00:00"}
    assert body["schema_version"] == 1
    assert body["occurred_at"].endswith("Z")
    uuid.UUID(body["event_id"])


def test_session_scheduled_json_keeps_its_instants_in_utc():
    event = build(SessionScheduled, start="2027-03-29T15:00:00+02:00")
    again = SessionScheduled.model_validate_json(event.model_dump_json())
    assert again.start == dt.datetime(2027, 3, 29, 13, tzinfo=dt.UTC)
    assert again.start.utcoffset() == dt.timedelta(0)
    assert again.ical == ICAL


# --- email addresses: the fast path agrees with email-validator ------------------------------

_LOCAL = st.text("abcXYZ019.!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=70)
_LABEL = st.text("abcXYZ019-", min_size=1, max_size=70)
_ADDRESSES = st.builds(
    lambda local, labels, tld: f"{local}@{'.'.join([*labels, tld])}",
    _LOCAL,
    st.lists(_LABEL, min_size=1, max_size=3),
    st.sampled_from(["org", "COM", "io", "test", "local", "x", "museum", "9z", "onion"]),
)


@settings(max_examples=500)
@given(_ADDRESSES)
def test_fast_email_check_accepts_and_normalises_exactly_as_email_validator(address):
    from pydantic.networks import validate_email

    from shared.events.envelope import _email

    try:
        expected = validate_email(address)[1]
    except ValueError:
        with pytest.raises(ValueError):
            _email(address)
        return
    assert _email(address) == expected


@given(
    st.integers(0, 6),
    st.times(),
    st.times(),
)
def test_working_hours_to_json_is_model_dump_json(weekday, a, b):
    if a == b:
        return
    start, end = sorted([a, b])
    hours = WorkingHours(weekday=weekday, start=start, end=end)
    assert hours.to_json() == hours.model_dump(mode="json")
