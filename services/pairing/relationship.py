"""The relationship a formed pair builds (pure rules, no I/O): its charter, its goals with
milestones tied to real work, and the opportunities a mentee is offered.

- A charter is agreed when both people agreed to the same version: whoever proposes terms agrees
  to them (a new version), and the other agrees to that version or proposes another.
- A goal has a plan (target date, milestones); re-planning makes a new revision of the plan and
  is no failure: a moved due date is not a missed one (goal.replanned).
- A milestone reached is public (the program may celebrate it) or private (only the pair).
- An opportunity is a stretch assignment, a sponsorship, an introduction or visibility.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace

from pydantic import BaseModel, ConfigDict, Field

from shared.events.pairs import CommunicationNorm, PlannedMilestone, SessionRhythms

MENTOR, MENTEE, COORDINATOR = "mentor", "mentee", "coordinator"
OPPORTUNITY_KINDS = ("stretch assignment", "sponsorship", "introduction", "visibility")
VISIBILITIES = ("public", "private")


class Refused(Exception):
    """A request the relationship's rules refuse; `status` is the HTTP status it answers with.

    The message says what to do instead.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class CharterTerms(BaseModel):
    """What the pair agrees on: purpose, success metrics, communication norms (the channel and
    response time per kind of exchange), decision rights and cadence."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    purpose: str = Field(min_length=1, max_length=2000)
    success_metrics: list[str] = Field(default_factory=list, max_length=20)
    communication: list[CommunicationNorm] = Field(default_factory=list, max_length=20)
    decision_rights: str = Field(default="", max_length=2000)
    cadence_days: int = Field(default=14, ge=1, le=92, description="a session every N days")
    session_minutes: int = Field(default=60, ge=15, le=240)
    norms: str = Field(default="", max_length=2000, description="anything else agreed")
    rhythms: SessionRhythms | None = Field(
        default=None, description="coffee chats and quarterly reflections: a cadence or none"
    )


@dataclass(frozen=True)
class CharterState:
    """The charter's current version and what each person agreed to (a version, or None)."""

    version: int
    terms: CharterTerms
    mentor_version: int | None = None
    mentee_version: int | None = None
    agreed_version: int | None = None  # the last version both agreed to

    @property
    def agreed(self) -> bool:
        """Both agreed to the current version."""
        return self.mentor_version == self.mentee_version == self.version


def role_in(mentor_id: str, mentee_id: str, participant_id: str) -> str:
    """'mentor' or 'mentee'; Refused(403) for anyone else."""
    role = {mentor_id: MENTOR, mentee_id: MENTEE}.get(participant_id)
    if role is None:
        raise Refused(403, "this link is for another pair; use the link from your own email")
    return role


def propose_charter(state: CharterState | None, terms: CharterTerms, by: str) -> CharterState:
    """A new version of the charter; its proposer (mentor or mentee) agrees to it, a coordinator's
    draft has nobody's agreement yet."""
    version = 1 if state is None else state.version + 1
    return CharterState(
        version=version,
        terms=terms,
        mentor_version=version if by == MENTOR else None,
        mentee_version=version if by == MENTEE else None,
        agreed_version=None if state is None else state.agreed_version,
    )


def agree_charter(state: CharterState | None, version: int, by: str) -> CharterState:
    """One person agrees to `version`; when both agreed to it, it is the agreed charter.

    Refused(404) without a charter, Refused(409) when the version is not the current one.
    """
    if state is None:
        raise Refused(404, "there is no charter to agree to yet; propose its terms first")
    if version != state.version:
        raise Refused(
            409,
            f"the charter is at version {state.version}, not {version}: read it again and "
            f"agree to version {state.version} (or propose other terms)",
        )
    if by == MENTOR:
        agreed = replace(state, mentor_version=version)
    elif by == MENTEE:
        agreed = replace(state, mentee_version=version)
    else:
        raise Refused(403, "only the mentor and the mentee agree to their charter")
    if agreed.agreed:
        agreed = replace(agreed, agreed_version=version)
    return agreed


def check_milestones(milestones: Sequence[PlannedMilestone]) -> None:
    """Refused(422) when two milestones of one plan share an id."""
    ids = [m.milestone_id for m in milestones]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise Refused(
            422, f"milestone ids repeat in the plan: {', '.join(repeated)}; use each once"
        )


@dataclass(frozen=True)
class GoalPlan:
    """A goal's plan: its target date and milestones, at a revision (1: as it was set)."""

    title: str
    target_date: dt.date | None
    milestones: tuple[PlannedMilestone, ...]
    revision: int = 1


def replan(
    plan: GoalPlan,
    *,
    target_date: dt.date | None,
    milestones: Sequence[PlannedMilestone] | None,
) -> GoalPlan | None:
    """The next revision of the plan (milestones None: unchanged), or None when nothing changed
    (asking for the same plan again is no re-plan)."""
    new_milestones = plan.milestones if milestones is None else tuple(milestones)
    check_milestones(new_milestones)
    if target_date == plan.target_date and new_milestones == plan.milestones:
        return None
    return replace(
        plan, target_date=target_date, milestones=new_milestones, revision=plan.revision + 1
    )


def opportunity_kind(kind: str) -> str:
    """The kind's canonical name ('Stretch-assignment' -> 'stretch assignment'); Refused(422) for
    anything else."""
    canonical = " ".join(kind.lower().replace("-", " ").replace("_", " ").split())
    if canonical == "stretch":
        canonical = "stretch assignment"
    if canonical not in OPPORTUNITY_KINDS:
        raise Refused(
            422, f"unknown opportunity kind {kind!r}; use one of: {', '.join(OPPORTUNITY_KINDS)}"
        )
    return canonical


def visibility(value: str) -> str:
    """'public' or 'private'; Refused(422) for anything else."""
    if value not in VISIBILITIES:
        raise Refused(422, f"visibility {value!r} is not known; use 'public' or 'private'")
    return value
