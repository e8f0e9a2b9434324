"""Matching rounds, pairs and what a pair agrees and reaches."""

from __future__ import annotations

import datetime as dt

from pydantic import Field

from shared.events.envelope import (
    Event,
    Id,
    no_items,
)


class MatchingRequested(Event):
    subject = "mentorship.matching.requested"

    round_id: Id
    requested_by: str | None = None
    dry_run: bool = Field(default=False, description="a preview: matching.completed, no pairs")


class MatchingCompleted(Event):
    subject = "mentorship.matching.completed"

    round_id: Id
    pairs_formed: int = Field(ge=0)
    unmatched_mentees: int = Field(default=0, ge=0, description="how many mentees stay unmatched")
    unmatched_mentee_ids: list[Id] = no_items(
        max_length=100,
        description="a sample of at most 100 unmatched mentees; the count is unmatched_mentees",
    )
    dry_run: bool = Field(default=False, description="a preview: pairs_formed were not formed")


class PairProposed(Event):
    subject = "mentorship.pair.proposed"

    pair_id: Id
    round_id: Id
    mentor_id: Id
    mentee_id: Id
    score: float
    reasons: list[str] = no_items()
    language: str | None = None
    expires_at: dt.datetime | None = Field(
        default=None, description="unanswered by then, the proposal expires (pair.declined)"
    )
    replaces_pair_id: str | None = Field(
        default=None, description="the declined or expired proposal this one re-matches"
    )


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
    reasons: list[str] = no_items()


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


EVENTS: tuple[type[Event], ...] = (
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
)
