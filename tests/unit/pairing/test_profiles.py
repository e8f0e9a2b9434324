"""What each participant event changes in a matching profile."""

from __future__ import annotations

import datetime as dt

from services.pairing import profiles
from shared.events import (
    ParticipantLeft,
    ParticipantRegistered,
    ParticipantTimezoneChanged,
    ParticipantUpdated,
    Role,
    WorkingHours,
)

NOW = dt.datetime(2027, 3, 1, 8, tzinfo=dt.UTC)
MONDAY = [WorkingHours(weekday=0, start=dt.time(9), end=dt.time(12))]


def test_registration_sets_the_whole_profile_and_makes_it_active():
    event = ParticipantRegistered(
        program_id="prog",
        occurred_at=NOW,
        participant_id="m-1",
        email="m-1@example.org",
        display_name="M One",
        role=Role.MENTOR,
        timezone="Asia/Tokyo",
        working_hours=MONDAY,
        languages=["EN"],
        capacity=2,
    )
    change = profiles.registered(event)
    assert change == {
        "role": "mentor",
        "timezone": "Asia/Tokyo",
        "working_hours": [{"weekday": 0, "start": "09:00:00", "end": "12:00:00"}],
        "languages": ["en"],
        "skills_offered": [],
        "skills_sought": [],
        "capacity": 2,
        "department": None,
        "manager_id": None,
        "goals": [],
        "channels": ["email"],
        "seniority": None,
        "avoid": [],
        "active": True,
        "registered_at": NOW,
    }


def test_a_mentee_registration_has_no_capacity():
    event = ParticipantRegistered(
        program_id="prog",
        occurred_at=NOW,
        participant_id="e-1",
        email="e-1@example.org",
        display_name="E One",
        role=Role.MENTEE,
        timezone="Europe/Berlin",
        working_hours=MONDAY,
        languages=["en"],
    )
    assert profiles.registered(event)["capacity"] == 0


def test_update_names_only_the_matching_fields_the_event_carries():
    event = ParticipantUpdated(
        program_id="prog",
        occurred_at=NOW,
        participant_id="e-1",
        display_name="New Name",
        skills_sought=["go"],
        manager_id="boss",
    )
    assert profiles.updated(event) == {"skills_sought": ["go"], "manager_id": "boss"}


def test_timezone_change_keeps_the_hours_unless_the_event_brings_new_ones():
    moved = ParticipantTimezoneChanged(
        program_id="prog",
        occurred_at=NOW,
        participant_id="e-1",
        old_timezone="Europe/Berlin",
        new_timezone="America/New_York",
        effective_date=NOW.date(),
    )
    assert profiles.timezone_changed(moved) == {"timezone": "America/New_York"}
    with_hours = moved.model_copy(update={"working_hours": MONDAY})
    assert profiles.timezone_changed(with_hours)["working_hours"] == [
        {"weekday": 0, "start": "09:00:00", "end": "12:00:00"}
    ]


def test_leaving_deactivates_the_profile():
    event = ParticipantLeft(program_id="prog", occurred_at=NOW, participant_id="e-1")
    assert profiles.left(event) == {"active": False}


def test_update_sets_seniority_avoid_goals_and_channels_it_carries():
    event = ParticipantUpdated(
        program_id="prog",
        occurred_at=NOW,
        participant_id="e-1",
        seniority=4,
        avoid=["m-9"],
        goals=["lead a team"],
        preferred_channels=["chat"],
    )
    assert profiles.updated(event) == {
        "seniority": 4,
        "avoid": ["m-9"],
        "goals": ["lead a team"],
        "channels": ["chat"],
    }
