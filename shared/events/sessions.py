"""Sessions, check-ins, feedback and assessments."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.events.envelope import (
    Event,
    Id,
    SessionKind,
    TimeZoneName,
    UtcDatetime,
    no_items,
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


class SessionHeld(Event):
    subject = "mentorship.session.held"

    session_id: Id
    pair_id: Id
    held_at: UtcDatetime
    duration_minutes: int = Field(ge=1, le=600)
    present_ids: list[str] = no_items()


class SessionMissed(Event):
    subject = "mentorship.session.missed"

    session_id: Id
    pair_id: Id
    no_show_ids: list[str] = no_items()


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
