"""What matching reads and returns: profiles, a program's rules and weights, proposals, proof."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

from shared.worktime import Availability, Interval

MIN_WEEKLY_OVERLAP_MINUTES = 60
MIN_SHARED_STRETCH_MINUTES = 60  # a session needs one unbroken hour both people work


@dataclass(frozen=True)
class Profile:
    """What matching needs to know about one participant.

    Skills are names, optionally with a level 1-5 after a colon ("python:4"): a mentor's level
    in what they offer (3 when not given), a mentee's current level in what they seek (0).
    """

    participant_id: str
    availability: Availability
    languages: tuple[str, ...]
    skills_offered: frozenset[str] = frozenset()
    skills_sought: frozenset[str] = frozenset()
    manager_id: str | None = None
    capacity: int = 0
    goals: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    seniority: int | None = None
    department: str | None = None
    avoid: frozenset[str] = frozenset()


class Objective(StrEnum):
    QUALITY = "quality"  # the highest total score
    PARTICIPATION = "participation"  # as many mentees matched as possible, then the best score


@dataclass(frozen=True)
class Weights:
    """Points each component is worth at most (a program sets its own)."""

    skills: int = 400
    goals: int = 150
    hours: int = 200
    channel: int = 50
    seniority: int = 100
    load: int = 60  # what each further mentee of one mentor costs, more for each
    waitlist: int = 300  # for mentees the last round could not match


@dataclass(frozen=True)
class Rules:
    """A program's hard constraints, weights and objective for one round."""

    objective: Objective = Objective.PARTICIPATION
    weights: Weights = field(default_factory=Weights)
    min_weekly_minutes: int = MIN_WEEKLY_OVERLAP_MINUTES
    min_stretch_minutes: int = MIN_SHARED_STRETCH_MINUTES
    hours_target_minutes: int = 600  # shared hours earn full points from 10 h a week
    separate_departments: bool = False
    seniority_gap: tuple[int, int] = (2, 10)  # mentor this many levels above the mentee


@dataclass(frozen=True)
class Alternative:
    mentor_id: str
    score: int


@dataclass(frozen=True)
class Proposal:
    mentor_id: str
    mentee_id: str
    language: str
    reasons: tuple[str, ...]
    score: int = 0
    components: tuple[tuple[str, int], ...] = ()  # they sum to score
    alternatives: tuple[Alternative, ...] = ()  # the runner-ups, best first
    shared: tuple[Interval, ...] = ()  # the week's shared working time, UTC


@dataclass(frozen=True)
class Unmatched:
    mentee_id: str
    reason: str


@dataclass(frozen=True)
class Certificate:
    """The proof of optimality: the matching's objective against a dual (upper) bound."""

    primal: int
    bound: int
    iterations: int
    arcs: int  # candidate pairs in the final graph
    scored: int  # pairs scored in all

    @property
    def gap(self) -> float:
        """Relative gap between the bound and the objective (0.0: proven optimal)."""
        return (self.bound - self.primal) / max(1, abs(self.bound))


@dataclass(frozen=True)
class MatchResult:
    pairs: list[Proposal] = field(default_factory=list)
    unmatched_mentee_ids: list[str] = field(default_factory=list)
    unmatched: list[Unmatched] = field(default_factory=list)
    certificate: Certificate | None = None
    week_of: dt.date | None = None
