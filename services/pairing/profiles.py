"""What each participant event changes in a matching profile; the store applies the change."""

from __future__ import annotations

import datetime as dt
from typing import Any, TypedDict

from shared.events import (
    ParticipantLeft,
    ParticipantRegistered,
    ParticipantTimezoneChanged,
    ParticipantUpdated,
    WorkingHours,
)


class ProfileChange(TypedDict, total=False):
    """Profile fields to set, by column name; a field left out keeps its value."""

    role: str
    timezone: str
    working_hours: list[dict[str, Any]]
    languages: list[str]
    skills_offered: list[str]
    skills_sought: list[str]
    capacity: int
    department: str | None
    manager_id: str | None
    goals: list[str]
    channels: list[str]
    seniority: int | None
    avoid: list[str]
    active: bool
    registered_at: dt.datetime


def _hours(hours: list[WorkingHours]) -> list[dict[str, Any]]:
    return [h.to_json() for h in hours]


def registered(event: ParticipantRegistered) -> ProfileChange:
    """The whole profile a registration sets: a re-registration replaces it and reactivates."""
    return ProfileChange(
        role=event.role.value,
        timezone=event.timezone,
        working_hours=_hours(event.working_hours),
        languages=list(event.languages),
        skills_offered=list(event.skills_offered),
        skills_sought=list(event.skills_sought),
        capacity=event.capacity or 0,
        department=event.department,
        manager_id=event.manager_id,
        goals=list(event.goals),
        channels=[c.value for c in event.preferred_channels],
        seniority=event.seniority,
        avoid=list(event.avoid),
        active=True,
        registered_at=event.occurred_at,
    )


def updated(event: ParticipantUpdated) -> ProfileChange:
    """The matching fields an update names; contact fields (email, name) are not pairing's."""
    change = ProfileChange()
    if event.languages is not None:
        change["languages"] = list(event.languages)
    if event.skills_offered is not None:
        change["skills_offered"] = list(event.skills_offered)
    if event.skills_sought is not None:
        change["skills_sought"] = list(event.skills_sought)
    if event.goals is not None:
        change["goals"] = list(event.goals)
    if event.preferred_channels is not None:
        change["channels"] = [c.value for c in event.preferred_channels]
    if event.avoid is not None:
        change["avoid"] = list(event.avoid)
    if event.capacity is not None:
        change["capacity"] = event.capacity
    # None means "not sent" on the wire, so an update cannot clear these three
    if event.seniority is not None:
        change["seniority"] = event.seniority
    if event.department is not None:
        change["department"] = event.department
    if event.manager_id is not None:
        change["manager_id"] = event.manager_id
    return change


def timezone_changed(event: ParticipantTimezoneChanged) -> ProfileChange:
    """The new zone, and the new local hours when the event brings them."""
    change = ProfileChange(timezone=event.new_timezone)
    if event.working_hours is not None:
        change["working_hours"] = _hours(event.working_hours)
    return change


def left(event: ParticipantLeft) -> ProfileChange:
    """Someone who left keeps their profile but is not matched again."""
    return ProfileChange(active=False)
