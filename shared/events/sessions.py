"""Sessions, check-ins, feedback and assessments."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events.envelope import (
    DisplayName,
    EmailAddress,
    Event,
    Id,
    Role,
    SessionKind,
    TimeZoneName,
    UtcDatetime,
    no_items,
)


class SessionAttendee(BaseModel):
    """Who is invited, as the invitation names them (so a mailer need not guess)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    participant_id: Id
    email: EmailAddress
    display_name: DisplayName
    timezone: TimeZoneName
    role: Role


def _attendees() -> Any:
    return no_items(max_length=10, description="the attendees' addresses, names, zones and roles")


def _series_id() -> Any:
    return Field(default=None, description="the series this occurrence belongs to, if any")


def _recurrence_id() -> Any:
    return Field(
        default=None,
        description="RECURRENCE-ID: the rule time of the one occurrence of a series this is about",
    )


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
    series_id: str | None = _series_id()
    recurrence_id: UtcDatetime | None = _recurrence_id()
    rrule: str | None = Field(
        default=None, description="RRULE of a series, in anchor_timezone; start/end: its first"
    )
    agenda: str = Field(default="", max_length=2000, description="the session kind's prompt")
    video_url: str | None = None
    attendees: list[SessionAttendee] = _attendees()


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
    kind: SessionKind | None = None
    series_id: str | None = _series_id()
    recurrence_id: UtcDatetime | None = _recurrence_id()
    anchor_timezone: TimeZoneName | None = None
    agenda: str = Field(default="", max_length=2000)
    video_url: str | None = None
    attendees: list[SessionAttendee] = _attendees()


class SessionCancelled(Event):
    subject = "mentorship.session.cancelled"

    session_id: Id
    pair_id: Id
    attendee_ids: list[str] = Field(min_length=1)
    uid: str
    sequence: int = Field(ge=1)
    ical: str = Field(description="RFC 5545 VCALENDAR, METHOD:CANCEL")
    reason: str | None = None
    kind: SessionKind | None = None
    series_id: str | None = _series_id()
    recurrence_ids: list[UtcDatetime] = no_items(
        max_length=400,
        description="the occurrences cancelled (RECURRENCE-ID); empty: the whole session",
    )
    session_ids: list[str] = no_items(
        max_length=400, description="the cancelled occurrences' ids, in recurrence_ids' order"
    )
    starts: list[UtcDatetime] = no_items(
        max_length=400, description="when the cancelled occurrences would have started"
    )
    attendees: list[SessionAttendee] = _attendees()


class SessionResponded(Event):
    """An attendee's calendar reply (iMIP REPLY), as read from the organizer's mailbox."""

    subject = "mentorship.session.responded"

    session_id: Id
    pair_id: Id
    participant_id: Id
    uid: str
    sequence: int = Field(ge=0, description="SEQUENCE of the invitation the reply answers")
    recurrence_id: UtcDatetime | None = Field(
        default=None, description="the occurrence answered, when the reply is for one of a series"
    )
    response: Literal["accepted", "declined", "tentative"]
    comment: str = Field(default="", max_length=2000)


class SessionUnschedulable(Event):
    """No slot both people can make: the reason, instead of a log line."""

    subject = "mentorship.session.unschedulable"

    pair_id: Id
    kind: SessionKind
    reason: str = Field(description="why no slot was found, in words a coordinator can act on")
    session_id: str | None = Field(default=None, description="the occurrence that could not move")
    recurrence_id: UtcDatetime | None = _recurrence_id()
    attendee_ids: list[str] = no_items(max_length=10)


class SessionHeld(Event):
    subject = "mentorship.session.held"

    session_id: Id
    pair_id: Id
    held_at: UtcDatetime
    duration_minutes: int = Field(ge=1, le=600)
    present_ids: list[str] = no_items()
    absent_ids: list[str] = no_items(description="invited, reported as not there")
    takeaways: list[str] = no_items(max_length=20, description="the mentee's key takeaways")
    speaking_share: dict[str, float] | None = Field(
        default=None, description="participant id -> share of speaking time (0..1), from a tool"
    )
    reported_by: str | None = Field(
        default=None, description="the participant who confirmed it (a 'we met' link)"
    )
    source: str | None = Field(default=None, description="the outside tool that reported it")


class SessionMissed(Event):
    subject = "mentorship.session.missed"

    session_id: Id
    pair_id: Id
    no_show_ids: list[str] = no_items()
    confirmed_ids: list[str] = no_items(description="who confirmed attending")
    reason: str | None = None


class CheckinDue(Event):
    subject = "mentorship.checkin.due"

    checkin_id: Id
    pair_id: Id
    participant_id: Id
    due_at: UtcDatetime


class Roadblock(BaseModel):
    """Something in the mentee's way, and what they propose to do about it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    roadblock: str = Field(min_length=1, max_length=2000)
    proposed_solution: str = Field(default="", max_length=2000)


class CheckinSubmitted(Event):
    subject = "mentorship.checkin.submitted"

    checkin_id: Id
    pair_id: Id
    participant_id: Id
    progress: int = Field(ge=1, le=5)
    notes: str = ""
    accomplishments: list[str] = no_items(max_length=20)
    roadblocks: list[Roadblock] = no_items(max_length=20)
    next_steps: list[str] = no_items(max_length=20)
    mentor_commitments: list[str] = no_items(max_length=20)


class CheckinOverdue(Event):
    subject = "mentorship.checkin.overdue"

    checkin_id: Id
    pair_id: Id
    participant_id: Id
    due_at: UtcDatetime
    escalation_level: int = Field(
        ge=0,
        le=3,
        description="1 nudge the mentee, 2 include the mentor, 3 tell the coordinator",
    )


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


EVENTS: tuple[type[Event], ...] = (
    SessionScheduled,
    SessionRescheduled,
    SessionCancelled,
    SessionResponded,
    SessionUnschedulable,
    SessionHeld,
    SessionMissed,
    CheckinDue,
    CheckinSubmitted,
    CheckinOverdue,
    FeedbackGiven,
    AssessmentSubmitted,
)
