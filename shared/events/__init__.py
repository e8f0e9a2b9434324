"""The event catalogue: every fact the services exchange, as pydantic models with their subjects.

This package is the public contract. Outside systems publish and consume these same shapes
(see docs/asyncapi/). Keep changes backward compatible; a breaking change needs a new
schema_version and a period in which both versions are accepted. One module per entity;
CATALOGUE lists every event in one order (the AsyncAPI documents follow it).
"""

from __future__ import annotations

from shared.events import insights, notifications, pairs, participants, sessions
from shared.events.envelope import (
    SCHEMA_VERSION,
    SUBJECT_PREFIX,
    Channel,
    DisplayName,
    Event,
    Id,
    Role,
    SessionKind,
    TimeZoneName,
    UtcDatetime,
    WorkingHours,
    dead_letter_subject,
)
from shared.events.insights import PairAtRisk
from shared.events.notifications import NotificationFailed, NotificationSent
from shared.events.pairs import (
    CharterAgreed,
    GoalReplanned,
    GoalSet,
    MatchingCompleted,
    MatchingRequested,
    MenteeUnmatched,
    MilestoneReached,
    OpportunityOffered,
    PairAccepted,
    PairDeclined,
    PairEnded,
    PairExpired,
    PairFormed,
    PairPaused,
    PairProposed,
    PairResumed,
    RoundRules,
    RoundWeights,
    RulesSource,
    SessionRhythms,
    UnmatchedReason,
)
from shared.events.participants import (
    ParticipantLeft,
    ParticipantRegistered,
    ParticipantTimezoneChanged,
    ParticipantUnavailable,
    ParticipantUpdated,
)
from shared.events.sessions import (
    AssessmentSubmitted,
    CheckinDue,
    CheckinOverdue,
    CheckinSubmitted,
    FeedbackGiven,
    SessionCancelled,
    SessionHeld,
    SessionMissed,
    SessionRescheduled,
    SessionResponded,
    SessionScheduled,
    SessionUnschedulable,
)

# Each entity module lists its own events (EVENTS); new events need no edit here, and are
# imported from their module (`from shared.events.sessions import SessionResponded`).
CATALOGUE: tuple[type[Event], ...] = (
    *participants.EVENTS,
    *pairs.EVENTS,
    *sessions.EVENTS,
    *notifications.EVENTS,
    *insights.EVENTS,
)

BY_SUBJECT: dict[str, type[Event]] = {event.subject: event for event in CATALOGUE}

__all__ = [
    "BY_SUBJECT",
    "CATALOGUE",
    "SCHEMA_VERSION",
    "SUBJECT_PREFIX",
    "AssessmentSubmitted",
    "Channel",
    "CharterAgreed",
    "CheckinDue",
    "CheckinOverdue",
    "CheckinSubmitted",
    "DisplayName",
    "Event",
    "FeedbackGiven",
    "GoalReplanned",
    "GoalSet",
    "Id",
    "MatchingCompleted",
    "MatchingRequested",
    "MenteeUnmatched",
    "MilestoneReached",
    "NotificationFailed",
    "NotificationSent",
    "OpportunityOffered",
    "PairAccepted",
    "PairAtRisk",
    "PairDeclined",
    "PairEnded",
    "PairExpired",
    "PairFormed",
    "PairPaused",
    "PairProposed",
    "PairResumed",
    "ParticipantLeft",
    "ParticipantRegistered",
    "ParticipantTimezoneChanged",
    "ParticipantUnavailable",
    "ParticipantUpdated",
    "Role",
    "RoundRules",
    "RoundWeights",
    "RulesSource",
    "SessionCancelled",
    "SessionHeld",
    "SessionKind",
    "SessionMissed",
    "SessionRescheduled",
    "SessionResponded",
    "SessionRhythms",
    "SessionScheduled",
    "SessionUnschedulable",
    "TimeZoneName",
    "UnmatchedReason",
    "UtcDatetime",
    "WorkingHours",
    "dead_letter_subject",
]
