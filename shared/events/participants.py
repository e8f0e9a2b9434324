"""Participants: who registers, changes and leaves."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field, model_validator

from shared.events.envelope import (
    Channel,
    DisplayName,
    EmailAddress,
    Event,
    Id,
    Language,
    Role,
    TimeZoneName,
    WorkingHours,
    no_items,
)

NotificationFrequency = Literal["immediate", "daily"]


class ParticipantRegistered(Event):
    subject = "mentorship.participant.registered"

    participant_id: Id
    email: EmailAddress
    display_name: DisplayName
    role: Role
    timezone: TimeZoneName
    working_hours: list[WorkingHours] = Field(min_length=1)
    languages: list[Language] = Field(min_length=1)
    skills_offered: list[str] = no_items()
    skills_sought: list[str] = no_items()
    goals: list[str] = no_items()
    preferred_channels: list[Channel] = Field(
        default_factory=lambda: [Channel.EMAIL], json_schema_extra={"default": ["email"]}
    )
    capacity: int | None = Field(default=None, ge=1, le=50, description="mentors only")
    department: str | None = None
    manager_id: str | None = None
    seniority: int | None = Field(
        default=None,
        ge=0,
        le=60,
        description="years of professional experience; matching "
        "prefers a mentor a program-set number of years above the mentee",
    )
    avoid: list[Id] = no_items(
        description="participant ids this person must never be paired with (either side)"
    )
    demographics: dict[str, str] | None = Field(
        default=None, description="only with the participant's consent; used for equity views"
    )
    notification_frequency: NotificationFrequency | None = Field(
        default=None,
        description="low-urgency mail (celebrations, feedback requests, surveys, touchpoints): "
        "immediate, or one daily digest; unset: keep the person's choice (immediate at first)",
    )

    @model_validator(mode="after")
    def _capacity_for_mentors(self) -> ParticipantRegistered:
        if self.role is Role.MENTOR and self.capacity is None:
            raise ValueError("a mentor needs a capacity (how many mentees at once)")
        if self.role is Role.MENTEE and self.capacity is not None:
            raise ValueError("capacity is for mentors only")
        return self


class ParticipantUpdated(Event):
    subject = "mentorship.participant.updated"

    participant_id: Id
    email: EmailAddress | None = None
    display_name: DisplayName | None = None
    languages: list[str] | None = None
    skills_offered: list[str] | None = None
    skills_sought: list[str] | None = None
    goals: list[str] | None = None
    preferred_channels: list[Channel] | None = None
    capacity: int | None = Field(default=None, ge=1, le=50)
    department: str | None = None
    manager_id: str | None = None
    seniority: int | None = Field(default=None, ge=0, le=60, description="years of experience")
    avoid: list[Id] | None = Field(
        default=None, description="replaces the avoid list (participant ids); unset: unchanged"
    )
    notification_frequency: NotificationFrequency | None = Field(
        default=None, description="immediate or daily digest of low-urgency mail; unset: unchanged"
    )


class ParticipantTimezoneChanged(Event):
    subject = "mentorship.participant.timezone_changed"

    participant_id: Id
    old_timezone: TimeZoneName
    new_timezone: TimeZoneName
    working_hours: list[WorkingHours] | None = Field(
        default=None, description="new local working hours, when they change too"
    )
    effective_date: dt.date


class ParticipantUnavailable(Event):
    subject = "mentorship.participant.unavailable"

    participant_id: Id
    start_date: dt.date
    end_date: dt.date
    reason: str | None = None


class ParticipantLeft(Event):
    subject = "mentorship.participant.left"

    participant_id: Id
    reason: str | None = None


EVENTS: tuple[type[Event], ...] = (
    ParticipantRegistered,
    ParticipantUpdated,
    ParticipantTimezoneChanged,
    ParticipantUnavailable,
    ParticipantLeft,
)
