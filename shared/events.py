"""The event catalogue: every fact the services exchange, as pydantic models with their subjects.

This module is the public contract. Outside systems publish and consume these same shapes
(see docs/asyncapi/). Keep changes backward compatible; a breaking change needs a new
schema_version and a period in which both versions are accepted.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    field_validator,
    model_validator,
)

SUBJECT_PREFIX = "mentorship"
SCHEMA_VERSION = 1


def _known_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: 'Europe', too long
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. 'Europe/Berlin')") from exc
    return name


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC)


TimeZoneName = Annotated[str, AfterValidator(_known_zone)]
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_as_utc)]
Id = Annotated[str, Field(min_length=1, max_length=200)]
# a name ends up in mail headers and calendar properties: one line, no control characters
DisplayName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


class Role(StrEnum):
    MENTOR = "mentor"
    MENTEE = "mentee"


class Channel(StrEnum):
    EMAIL = "email"
    CHAT = "chat"
    SMS = "sms"


class SessionKind(StrEnum):
    KICKOFF = "kickoff"
    REGULAR = "regular"
    FEEDBACK_MOMENT = "feedback_moment"
    COFFEE_CHAT = "coffee_chat"
    SHADOWING = "shadowing"
    QUARTERLY_REFLECTION = "quarterly_reflection"


class WorkingHours(BaseModel):
    """One stretch of working time on a weekday, in the person's own local time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weekday: int = Field(ge=0, le=6, description="0 = Monday ... 6 = Sunday")
    start: dt.time
    end: dt.time

    @model_validator(mode="after")
    def _start_before_end(self) -> WorkingHours:
        if self.start >= self.end:
            raise ValueError(f"working hours start {self.start} must be before end {self.end}")
        return self


def _envelope_required(schema: dict[str, Any]) -> None:
    # emitters get defaults in code; on the wire both fields are required
    required = schema.setdefault("required", [])
    for name in ("event_id", "occurred_at"):
        if name not in required:
            required.insert(0, name)


class Event(BaseModel):
    """The envelope every event carries; subclasses add the payload."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_envelope_required)

    subject: ClassVar[str]

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    occurred_at: UtcDatetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))
    program_id: Id
    schema_version: Literal[1] = 1

    @classmethod
    def event_type(cls) -> str:
        """The CloudEvents type, e.g. 'mentorship.session.held'."""
        return cls.subject


# --- participants ------------------------------------------------------------------------


class ParticipantRegistered(Event):
    subject = "mentorship.participant.registered"

    participant_id: Id
    email: EmailStr
    display_name: DisplayName
    role: Role
    timezone: TimeZoneName
    working_hours: list[WorkingHours] = Field(min_length=1)
    languages: list[str] = Field(min_length=1)
    skills_offered: list[str] = []
    skills_sought: list[str] = []
    goals: list[str] = []
    preferred_channels: list[Channel] = [Channel.EMAIL]
    capacity: int | None = Field(default=None, ge=1, le=50, description="mentors only")
    department: str | None = None
    manager_id: str | None = None
    demographics: dict[str, str] | None = Field(
        default=None, description="only with the participant's consent; used for equity views"
    )

    @field_validator("languages")
    @classmethod
    def _lowercase_languages(cls, value: list[str]) -> list[str]:
        return [language.strip().lower() for language in value]

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
    email: EmailStr | None = None
    display_name: DisplayName | None = None
    languages: list[str] | None = None
    skills_offered: list[str] | None = None
    skills_sought: list[str] | None = None
    goals: list[str] | None = None
    preferred_channels: list[Channel] | None = None
    capacity: int | None = Field(default=None, ge=1, le=50)
    department: str | None = None
    manager_id: str | None = None


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


# --- matching and pairs ------------------------------------------------------------------


class MatchingRequested(Event):
    subject = "mentorship.matching.requested"

    round_id: Id
    requested_by: str | None = None


class MatchingCompleted(Event):
    subject = "mentorship.matching.completed"

    round_id: Id
    pairs_formed: int = Field(ge=0)
    unmatched_mentee_ids: list[str] = []


class PairProposed(Event):
    subject = "mentorship.pair.proposed"

    pair_id: Id
    round_id: Id
    mentor_id: Id
    mentee_id: Id
    score: float
    reasons: list[str] = []


class PairAccepted(Event):
    subject = "mentorship.pair.accepted"

    pair_id: Id
    participant_id: Id


class PairDeclined(Event):
    subject = "mentorship.pair.declined"

    pair_id: Id
    participant_id: Id
    reason: str | None = None


class PairFormed(Event):
    subject = "mentorship.pair.formed"

    pair_id: Id
    round_id: Id
    mentor_id: Id
    mentee_id: Id
    language: str
    reasons: list[str] = []


class PairPaused(Event):
    subject = "mentorship.pair.paused"

    pair_id: Id
    reason: str | None = None
    until: dt.date | None = None


class PairResumed(Event):
    subject = "mentorship.pair.resumed"

    pair_id: Id


class PairEnded(Event):
    subject = "mentorship.pair.ended"

    pair_id: Id
    reason: str | None = None


class CharterAgreed(Event):
    subject = "mentorship.charter.agreed"

    pair_id: Id
    cadence_days: int = Field(ge=1, le=92)
    session_minutes: int = Field(ge=15, le=240)
    norms: str = ""


class GoalSet(Event):
    subject = "mentorship.goal.set"

    pair_id: Id
    goal_id: Id
    title: str
    target_date: dt.date | None = None


class MilestoneReached(Event):
    subject = "mentorship.milestone.reached"

    pair_id: Id
    milestone_id: Id
    title: str
    goal_id: str | None = None
    source: str | None = Field(default=None, description="the outside system that reported it")


class OpportunityOffered(Event):
    subject = "mentorship.opportunity.offered"

    opportunity_id: Id
    participant_id: Id
    kind: str
    title: str


# --- sessions and check-ins --------------------------------------------------------------


class SessionScheduled(Event):
    subject = "mentorship.session.scheduled"

    session_id: Id
    pair_id: Id
    kind: SessionKind
    start: UtcDatetime
    end: UtcDatetime
    anchor_timezone: TimeZoneName = Field(description="zone the invitation is written in")
    attendee_ids: list[str] = Field(min_length=1)
    uid: str = Field(description="iCalendar UID, stable across updates")
    sequence: int = Field(ge=0)
    ical: str = Field(description="RFC 5545 VCALENDAR, METHOD:REQUEST")


class SessionRescheduled(Event):
    subject = "mentorship.session.rescheduled"

    session_id: Id
    pair_id: Id
    previous_start: UtcDatetime
    start: UtcDatetime
    end: UtcDatetime
    attendee_ids: list[str] = Field(min_length=1)
    uid: str
    sequence: int = Field(ge=1)
    ical: str
    reason: str | None = None


class SessionCancelled(Event):
    subject = "mentorship.session.cancelled"

    session_id: Id
    pair_id: Id
    attendee_ids: list[str] = Field(min_length=1)
    uid: str
    sequence: int = Field(ge=1)
    ical: str = Field(description="RFC 5545 VCALENDAR, METHOD:CANCEL")
    reason: str | None = None


class SessionHeld(Event):
    subject = "mentorship.session.held"

    session_id: Id
    pair_id: Id
    held_at: UtcDatetime
    duration_minutes: int = Field(ge=1, le=600)
    present_ids: list[str] = []


class SessionMissed(Event):
    subject = "mentorship.session.missed"

    session_id: Id
    pair_id: Id
    no_show_ids: list[str] = []


class CheckinDue(Event):
    subject = "mentorship.checkin.due"

    checkin_id: Id
    pair_id: Id
    participant_id: Id
    due_at: UtcDatetime


class CheckinSubmitted(Event):
    subject = "mentorship.checkin.submitted"

    checkin_id: Id
    pair_id: Id
    participant_id: Id
    progress: int = Field(ge=1, le=5)
    notes: str = ""


class CheckinOverdue(Event):
    subject = "mentorship.checkin.overdue"

    checkin_id: Id
    pair_id: Id
    participant_id: Id
    due_at: UtcDatetime
    escalation_level: int = Field(ge=0, description="0 mentee, 1 mentor, 2 coordinator")


class FeedbackGiven(Event):
    subject = "mentorship.feedback.given"

    pair_id: Id
    from_id: Id
    about_id: Id
    rating: int = Field(ge=1, le=5)
    session_id: str | None = None
    comment: str = ""


class AssessmentSubmitted(Event):
    subject = "mentorship.assessment.submitted"

    participant_id: Id
    instrument: str
    scores: dict[str, float]
    pair_id: str | None = None


# --- notifications and insights ----------------------------------------------------------


class NotificationSent(Event):
    subject = "mentorship.notification.sent"

    delivery_id: Id
    recipient_id: Id
    kind: str
    channel: Channel
    source_event_id: uuid.UUID
    message_id: str


class NotificationFailed(Event):
    subject = "mentorship.notification.failed"

    delivery_id: Id
    recipient_id: Id
    kind: str
    channel: Channel
    source_event_id: uuid.UUID
    attempts: int = Field(ge=1)
    reason: str


class PairAtRisk(Event):
    subject = "mentorship.pair.at_risk"

    pair_id: Id
    reasons: list[str] = Field(min_length=1)
    score: float


CATALOGUE: tuple[type[Event], ...] = (
    ParticipantRegistered,
    ParticipantUpdated,
    ParticipantTimezoneChanged,
    ParticipantUnavailable,
    ParticipantLeft,
    MatchingRequested,
    MatchingCompleted,
    PairProposed,
    PairAccepted,
    PairDeclined,
    PairFormed,
    PairPaused,
    PairResumed,
    PairEnded,
    CharterAgreed,
    GoalSet,
    MilestoneReached,
    OpportunityOffered,
    SessionScheduled,
    SessionRescheduled,
    SessionCancelled,
    SessionHeld,
    SessionMissed,
    CheckinDue,
    CheckinSubmitted,
    CheckinOverdue,
    FeedbackGiven,
    AssessmentSubmitted,
    NotificationSent,
    NotificationFailed,
    PairAtRisk,
)

BY_SUBJECT: dict[str, type[Event]] = {event.subject: event for event in CATALOGUE}


def dead_letter_subject(service: str) -> str:
    """Where a service parks the messages it cannot process."""
    return f"{SUBJECT_PREFIX}.dlq.{service}"
