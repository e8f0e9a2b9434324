"""Pair health: a score with the reasons behind it, from what insights knows about the pair.

Each reason that applies adds its weight to the score; a pair whose score reaches the program's
`at_risk_score` is at risk, one with any reason is to watch. Thresholds are per program
(PUT /programs/{id}/settings); the defaults suit a fortnightly rhythm.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from enum import StrEnum

from pydantic import AliasChoices, BaseModel, ConfigDict, Field


class Health(StrEnum):
    HEALTHY = "healthy"
    WATCH = "watch"
    AT_RISK = "at_risk"
    INACTIVE = "inactive"  # proposed, paused, declined or ended: not scored


class Thresholds(BaseModel):
    """When a fact about a pair becomes a reason for concern (per program)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_sessions_held_share: float = Field(
        default=0.6, ge=0, le=1, description="held / (held + missed), once 3 sessions are past"
    )
    min_checkin_adherence: float = Field(
        default=0.5, ge=0, le=1, description="submitted / due, once 3 check-ins were due"
    )
    max_overdue_streak: int = Field(
        default=2,
        ge=1,
        description="check-ins missed in a row (overdue, unanswered) since the last one answered",
        # the name before the streak (it counted every open overdue check-in) is still read
        validation_alias=AliasChoices("max_overdue_streak", "max_open_overdue_checkins"),
    )
    max_days_without_contact: int = Field(default=21, ge=1)
    max_no_shows_per_person: int = Field(default=2, ge=1)
    one_sided_feedback_after: int = Field(
        default=2, ge=1, description="feedback given by one side only, this many times"
    )
    low_fit_rating: float = Field(default=2.5, ge=1, le=5, description="average rating at most")
    at_risk_score: int = Field(default=2, ge=1, description="reasons needed to be at risk")


@dataclass(frozen=True)
class PairFacts:
    """What insights has projected about one pair, as health sees it."""

    formed_at: dt.datetime
    sessions_held: int = 0
    sessions_missed: int = 0
    checkins_due: int = 0
    checkins_submitted: int = 0
    open_overdue_checkins: int = 0
    # the check-ins missed in a row: overdue and unanswered, due after the last answered one
    overdue_streak: int = 0
    last_contact_at: dt.datetime | None = None
    no_shows_mentor: int = 0
    no_shows_mentee: int = 0
    feedback_from_mentor: int = 0
    feedback_from_mentee: int = 0
    fit_rating_sum: float = 0.0
    fit_rating_count: int = 0
    active: bool = True


@dataclass(frozen=True)
class Assessment:
    """A pair's health: its score, its band and the reasons, worst first."""

    score: int
    health: Health
    reasons: tuple[str, ...]


def days_without_contact(facts: PairFacts, now: dt.datetime) -> int:
    """Whole days since the pair last met, checked in or gave feedback (or since it formed)."""
    since = facts.last_contact_at or facts.formed_at
    return max(0, (now - since).days)


def contact_deadline(facts: PairFacts, thresholds: Thresholds) -> dt.datetime:
    """When the pair, hearing nothing more, gets the 'no contact' reason."""
    since = facts.last_contact_at or facts.formed_at
    return since + dt.timedelta(days=thresholds.max_days_without_contact)


def assess(facts: PairFacts, thresholds: Thresholds, now: dt.datetime) -> Assessment:
    """Scores the pair: one point per reason that applies; a pair not formed now is inactive."""
    if not facts.active:
        return Assessment(0, Health.INACTIVE, ())
    t = thresholds
    reasons: list[str] = []
    past = facts.sessions_held + facts.sessions_missed
    if past >= 3 and facts.sessions_held / past < t.min_sessions_held_share:
        reasons.append(f"{facts.sessions_held} of {past} sessions held")
    if facts.checkins_due >= 3 and facts.checkins_submitted / facts.checkins_due < (
        t.min_checkin_adherence
    ):
        reasons.append(f"{facts.checkins_submitted} of {facts.checkins_due} check-ins submitted")
    if facts.overdue_streak >= t.max_overdue_streak:
        reasons.append(f"{facts.overdue_streak} check-ins missed in a row")
    days = days_without_contact(facts, now)
    if days >= t.max_days_without_contact:
        reasons.append(f"no contact for {days} days")
    for who, count in (("mentor", facts.no_shows_mentor), ("mentee", facts.no_shows_mentee)):
        if count >= t.max_no_shows_per_person:
            reasons.append(f"{who} missed {count} sessions")
    mentor, mentee = facts.feedback_from_mentor, facts.feedback_from_mentee
    if mentor >= t.one_sided_feedback_after and mentee == 0:
        reasons.append(f"feedback only from the mentor ({mentor})")
    if mentee >= t.one_sided_feedback_after and mentor == 0:
        reasons.append(f"feedback only from the mentee ({mentee})")
    if facts.fit_rating_count and facts.fit_rating_sum / facts.fit_rating_count <= t.low_fit_rating:
        average = facts.fit_rating_sum / facts.fit_rating_count
        reasons.append(f"low fit rating ({average:.1f} of 5)")
    score = len(reasons)
    if score >= t.at_risk_score:
        health = Health.AT_RISK
    elif score:
        health = Health.WATCH
    else:
        health = Health.HEALTHY
    return Assessment(score, health, tuple(reasons))


def crossed_into_risk(before: Health, after: Health) -> bool:
    """True when the pair has just become at risk (pair.at_risk is emitted once per crossing)."""
    return after is Health.AT_RISK and before is not Health.AT_RISK


def crossing_id(program_id: str, pair_id: str, crossing: int) -> uuid.UUID:
    """The event id of the pair's n-th crossing into risk (stable across rebuilds)."""
    return uuid.uuid5(_AT_RISK_NAMESPACE, f"{program_id}/{pair_id}/{crossing}")


_AT_RISK_NAMESPACE = uuid.UUID("0b7f6c1e-7a43-4f0e-9d7e-2f4d3c9a8b10")
