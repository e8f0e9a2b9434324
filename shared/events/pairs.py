"""Matching rounds, pairs and what a pair agrees and reaches."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.events.envelope import (
    Event,
    Id,
    no_items,
)

Visibility = Literal["public", "private"]


class RoundWeights(BaseModel):
    """Points each soft-score component is worth at most; unset: the default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    skills: int | None = Field(default=None, ge=0, le=10_000)
    goals: int | None = Field(default=None, ge=0, le=10_000)
    hours: int | None = Field(default=None, ge=0, le=10_000)
    channel: int | None = Field(default=None, ge=0, le=10_000)
    seniority: int | None = Field(default=None, ge=0, le=10_000)
    load: int | None = Field(default=None, ge=0, le=10_000)
    waitlist: int | None = Field(default=None, ge=0, le=10_000)


class RoundRules(BaseModel):
    """A program's rules for one round; a field left unset keeps the default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    objective: Literal["quality", "participation"] | None = Field(
        default=None, description="highest total quality, or most mentees matched then quality"
    )
    min_weekly_minutes: int | None = Field(default=None, ge=0, le=3000)
    min_stretch_minutes: int | None = Field(default=None, ge=0, le=600)
    separate_departments: bool | None = Field(
        default=None, description="no pair inside one department"
    )
    seniority_gap: tuple[int, int] | None = Field(
        default=None, description="preferred years of experience of the mentor above the mentee"
    )
    weights: RoundWeights | None = None

    @field_validator("seniority_gap")
    @classmethod
    def _gap_in_order(cls, gap: tuple[int, int] | None) -> tuple[int, int] | None:
        if gap is not None and gap[0] > gap[1]:
            raise ValueError(
                f"the fewest years come first: write [{gap[1]}, {gap[0]}], not [{gap[0]}, {gap[1]}]"
            )
        return gap


# where a round's rules came from: the request, the program's stored rules, or the defaults
RulesSource = Literal["request", "program", "default"]


class MatchingRequested(Event):
    subject = "mentorship.matching.requested"

    round_id: Id
    requested_by: str | None = None
    dry_run: bool = Field(default=False, description="a preview: matching.completed, no pairs")
    rules: RoundRules | None = Field(default=None, description="unset: the default rules")


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
    rules_source: RulesSource | None = Field(
        default=None,
        description="the rules the round used: request (matching.requested.rules), program (the "
        "program's stored rules, GET /programs/{id}/rules on pairing), default; absent: a round "
        "from before pairing said",
    )


UnmatchedReason = Literal["no_language", "no_shared_time", "ruled_out", "capacity"]


class MenteeUnmatched(Event):
    subject = "mentorship.mentee.unmatched"

    round_id: Id
    participant_id: Id
    reason: UnmatchedReason = Field(
        description="no_language: no mentor shares a language; no_shared_time: not enough "
        "weekly shared working time with any who does; ruled_out: reporting line, department, "
        "avoid list or ended pair; capacity: the mentors who fit are full"
    )
    detail: str = Field(max_length=500, description="the reason in a coordinator's words")


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


class CommunicationNorm(BaseModel):
    """How the pair handles one kind of exchange: where, and how soon an answer is expected."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    exchange: str = Field(min_length=1, max_length=200, description="e.g. a quick question")
    channel: str = Field(min_length=1, max_length=100, description="e.g. chat, email, call")
    response_hours: float | None = Field(
        default=None, gt=0, le=24 * 30, description="an answer is expected within these hours"
    )


RhythmCadence = Literal["weekly", "biweekly", "monthly", "quarterly", "none"]


class SessionRhythms(BaseModel):
    """How often the pair holds each extra kind of session; "none": not at all; absent: as it is
    (the program's default)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    coffee_chat: RhythmCadence | None = Field(
        default=None, description="informal coffee chats (monthly where the program plans them)"
    )
    quarterly_reflection: RhythmCadence | None = Field(
        default=None, description="reflections on the quarter's goals (quarterly where planned)"
    )


class CharterAgreed(Event):
    subject = "mentorship.charter.agreed"

    pair_id: Id
    cadence_days: int = Field(ge=1, le=92)
    session_minutes: int = Field(ge=15, le=240)
    norms: str = ""
    version: int = Field(default=1, ge=1, description="the version both people agreed to")
    purpose: str = Field(default="", max_length=2000)
    success_metrics: list[str] = no_items(description="how the pair will know it worked")
    communication: list[CommunicationNorm] = no_items(
        description="the preferred channel and response time per kind of exchange"
    )
    decision_rights: str = Field(
        default="", max_length=2000, description="who decides what (the mentee owns their goals)"
    )
    touchpoint: str | None = Field(
        default=None,
        max_length=2000,
        description="a reading or reflective prompt the pair chose for between sessions (a "
        "title, a link); notifications sends it after each session held instead of its own prompt",
    )
    rhythms: SessionRhythms | None = Field(
        default=None,
        description="the cadence of the pair's coffee chats and quarterly reflections; absent: "
        "each keeps the rhythm it has",
    )


MilestoneKind = Literal["task", "review", "conversation"]


class PlannedMilestone(BaseModel):
    """A step of a goal, tied to real work (a task completed, a review delivered, a talk held)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    milestone_id: Id
    title: str = Field(min_length=1, max_length=500)
    kind: MilestoneKind = "task"
    due_date: dt.date | None = None


class GoalSet(Event):
    subject = "mentorship.goal.set"

    pair_id: Id
    goal_id: Id
    title: str
    target_date: dt.date | None = None
    milestones: list[PlannedMilestone] = no_items(description="the goal's planned steps")


class GoalReplanned(Event):
    """The goal's target date or milestones changed (a project pivoted): a new plan, no penalty;
    a due date moved is not a due date missed."""

    subject = "mentorship.goal.replanned"

    pair_id: Id
    goal_id: Id
    revision: int = Field(ge=2, description="1 is the plan of goal.set; each re-plan adds one")
    target_date: dt.date | None = None
    previous_target_date: dt.date | None = None
    milestones: list[PlannedMilestone] = no_items(description="the whole new plan")
    reason: str | None = Field(default=None, max_length=2000)


class MilestoneReached(Event):
    subject = "mentorship.milestone.reached"

    pair_id: Id
    milestone_id: Id
    title: str
    goal_id: str | None = None
    source: str | None = Field(default=None, description="the outside system that reported it")
    visibility: Visibility = Field(
        default="private",
        description="public: the program may celebrate it; private: only the pair sees it",
    )
    kind: MilestoneKind | None = Field(default=None, description="the real work it stands for")
    evidence: str | None = Field(
        default=None, max_length=2000, description="where the work is (a task, a review, a note)"
    )


class OpportunityOffered(Event):
    subject = "mentorship.opportunity.offered"

    opportunity_id: Id
    participant_id: Id
    kind: str
    title: str
    pair_id: str | None = Field(default=None, description="the pair it came through, if any")
    offered_by: str | None = Field(default=None, description="who offered it (id or role)")


class PairExpired(Event):
    """A proposal nobody (or only one person) accepted in time: closed, its mentee re-matched."""

    subject = "mentorship.pair.expired"

    pair_id: Id
    mentor_id: Id
    mentee_id: Id
    silent: list[Id] = no_items(description="who had not accepted by the deadline")
    reason: str | None = None


EVENTS: tuple[type[Event], ...] = (
    MatchingRequested,
    MatchingCompleted,
    MenteeUnmatched,
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
    GoalReplanned,
    PairExpired,
)
