"""The relationship's records and events: what the pair (through its signed link) or a
coordinator asks (charter, goals, milestones, opportunities), and the same records arriving as
events from outside systems (charter.agreed, goal.set, goal.replanned, milestone.reached,
opportunity.offered).

The rules are in relationship.py; here they meet the tables and the outbox. Asked through HTTP,
a refusal is a `Refused` (its HTTP status and what to do); arriving as an event, a record about
another program's pair is dead-lettered (ProgramMismatch), one about an unknown pair or goal is
retried and then dead-lettered (UnknownReference), and one that contradicts what is stored
(a goal or milestone id already used by another pair) is dead-lettered (EventRejected).
Pairing's own events come back to it too: the record is there already, and nothing changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from services.pairing import rounds, store
from services.pairing.relationship import (
    CharterState,
    CharterTerms,
    GoalPlan,
    Refused,
    agree_charter,
    check_milestones,
    opportunity_kind,
    propose_charter,
    replan,
)
from shared.errors import EventRejected, ProgramMismatch, UnknownReference
from shared.events import CharterAgreed, GoalSet, MilestoneReached, OpportunityOffered
from shared.events.pairs import GoalReplanned, PlannedMilestone
from shared.unit_of_work import UnitOfWork

FORMED = (rounds.ACTIVE, rounds.PAUSED)  # a pair builds its relationship once it is formed


async def formed_pair(uow: UnitOfWork, *, program_id: str, pair_id: str) -> store.Pair:
    """The program's formed pair (active or paused), else Refused: 404 unknown, 422 another
    program's, 409 not formed (proposed) or over (ended)."""
    try:
        pair = await store.pair_or_raise(uow.session, program_id=program_id, pair_id=pair_id)
    except ProgramMismatch as exc:
        raise Refused(422, str(exc)) from exc
    except UnknownReference as exc:
        raise Refused(404, str(exc)) from exc
    if pair.status not in FORMED:
        raise Refused(
            409,
            f"pair {pair_id!r} is {pair.status}, not formed: a charter, goals and milestones "
            "belong to a formed pair (wait until both accepted; an ended pair keeps its records)",
        )
    return pair


# --- the charter ---------------------------------------------------------------------------


def charter_state(row: store.Charter | None) -> CharterState | None:
    """The stored charter as the rules see it."""
    if row is None:
        return None
    return CharterState(
        version=row.version,
        terms=CharterTerms.model_validate(row.terms),
        mentor_version=row.mentor_version,
        mentee_version=row.mentee_version,
        agreed_version=row.agreed_version,
    )


def _keep_charter(
    uow: UnitOfWork, pair: store.Pair, row: store.Charter | None, state: CharterState
) -> store.Charter:
    now = uow.clock.now()
    if row is None:
        row = store.Charter(program_id=pair.program_id, pair_id=pair.pair_id)
        uow.session.add(row)
    row.version, row.terms = state.version, state.terms.model_dump(mode="json")
    row.mentor_version, row.mentee_version = state.mentor_version, state.mentee_version
    if state.agreed_version != row.agreed_version:
        row.agreed_at = now
    row.agreed_version = state.agreed_version
    row.updated_at = now
    return row


async def _charter_row(uow: UnitOfWork, pair: store.Pair) -> store.Charter | None:
    """The pair's charter row, locked (two people agreeing at once apply one after the other)."""
    key = (pair.program_id, pair.pair_id)
    return await uow.session.get(store.Charter, key, with_for_update=True)


def charter_agreed(pair: store.Pair, state: CharterState, now: dt.datetime) -> CharterAgreed:
    """charter.agreed for the version both agreed to."""
    terms = state.terms
    return CharterAgreed(
        program_id=pair.program_id, occurred_at=now, pair_id=pair.pair_id,
        cadence_days=terms.cadence_days, session_minutes=terms.session_minutes, norms=terms.norms,
        version=state.version, purpose=terms.purpose, success_metrics=terms.success_metrics,
        communication=terms.communication, decision_rights=terms.decision_rights,
        rhythms=terms.rhythms,
    )  # fmt: skip


async def propose(
    uow: UnitOfWork, pair: store.Pair, terms: CharterTerms, *, by: str
) -> CharterState:
    """New terms: a new version, agreed by whoever proposed it (a coordinator's: by nobody)."""
    row = await _charter_row(uow, pair)
    state = propose_charter(charter_state(row), terms, by)
    _keep_charter(uow, pair, row, state)
    return state


async def agree(uow: UnitOfWork, pair: store.Pair, version: int, *, by: str) -> CharterState:
    """One person agrees to `version`; both agreed: charter.agreed."""
    row = await _charter_row(uow, pair)
    before = charter_state(row)
    state = agree_charter(before, version, by)
    _keep_charter(uow, pair, row, state)
    if state.agreed and (before is None or not before.agreed):
        uow.emit(charter_agreed(pair, state, uow.clock.now()))
    return state


async def on_charter_agreed(event: CharterAgreed, uow: UnitOfWork) -> None:
    """A charter agreed elsewhere (or pairing's own, coming back): kept as agreed by both."""
    pair = await store.pair_or_raise(
        uow.session, program_id=event.program_id, pair_id=event.pair_id
    )
    row = await _charter_row(uow, pair)
    if row is not None and (row.agreed_version or 0) >= event.version:
        return  # this version (or a later one) is agreed here already
    terms = CharterTerms(
        purpose=event.purpose or "(agreed elsewhere)", success_metrics=event.success_metrics,
        communication=event.communication, decision_rights=event.decision_rights,
        cadence_days=event.cadence_days, session_minutes=event.session_minutes, norms=event.norms,
        rhythms=event.rhythms,
    )  # fmt: skip
    version = max(event.version, row.version if row is not None else 0)
    state = CharterState(version, terms, version, version, version)
    _keep_charter(uow, pair, row, state)


# --- goals and milestones -----------------------------------------------------------------


def _plan(row: store.Goal) -> GoalPlan:
    return GoalPlan(
        title=row.title,
        target_date=row.target_date,
        milestones=tuple(PlannedMilestone.model_validate(m) for m in row.milestones),
        revision=row.revision,
    )


def _dump(milestones: Sequence[PlannedMilestone]) -> list[dict[str, Any]]:
    return [m.model_dump(mode="json") for m in milestones]


async def set_goal(
    uow: UnitOfWork,
    pair: store.Pair,
    *,
    goal_id: str,
    title: str,
    target_date: dt.date | None,
    milestones: Sequence[PlannedMilestone],
) -> store.Goal:
    """A new goal with its plan: goal.set. The same goal asked again changes nothing."""
    check_milestones(milestones)
    row = await uow.session.get(store.Goal, (pair.program_id, goal_id))
    if row is not None:
        same = (row.pair_id, row.title, row.target_date, row.milestones) == (
            pair.pair_id, title, target_date, _dump(milestones)
        )  # fmt: skip
        if same:
            return row
        raise Refused(
            409, f"goal {goal_id!r} exists already; re-plan it (PUT) or choose another goal id"
        )
    row = _add_goal(uow, pair, goal_id, title, target_date, milestones)
    uow.emit(
        GoalSet(
            program_id=pair.program_id, occurred_at=uow.clock.now(), pair_id=pair.pair_id,
            goal_id=goal_id, title=title, target_date=target_date, milestones=list(milestones),
        )
    )  # fmt: skip
    return row


def _add_goal(
    uow: UnitOfWork,
    pair: store.Pair,
    goal_id: str,
    title: str,
    target_date: dt.date | None,
    milestones: Sequence[PlannedMilestone],
) -> store.Goal:
    row = store.Goal(
        program_id=pair.program_id, goal_id=goal_id, pair_id=pair.pair_id, title=title,
        target_date=target_date, milestones=_dump(milestones), revision=1,
        set_at=uow.clock.now(),
    )  # fmt: skip
    uow.session.add(row)
    return row


async def pair_goal(uow: UnitOfWork, pair: store.Pair, goal_id: str) -> store.Goal:
    """The pair's goal, else Refused(404)."""
    row = await uow.session.get(store.Goal, (pair.program_id, goal_id), with_for_update=True)
    if row is None or row.pair_id != pair.pair_id:
        raise Refused(404, f"pair {pair.pair_id!r} has no goal {goal_id!r}; set it first (POST)")
    return row


async def replan_goal(
    uow: UnitOfWork,
    pair: store.Pair,
    goal_id: str,
    *,
    target_date: dt.date | None,
    milestones: Sequence[PlannedMilestone] | None,
    reason: str | None,
) -> store.Goal:
    """A new plan for the goal (a project pivoted): goal.replanned, no penalty. The same plan
    again is no re-plan and emits nothing."""
    row = await pair_goal(uow, pair, goal_id)
    before = _plan(row)
    after = replan(before, target_date=target_date, milestones=milestones)
    if after is None:
        return row
    _apply_plan(uow, row, after)
    uow.emit(
        GoalReplanned(
            program_id=pair.program_id, occurred_at=uow.clock.now(), pair_id=pair.pair_id,
            goal_id=goal_id, revision=after.revision, target_date=after.target_date,
            previous_target_date=before.target_date, milestones=list(after.milestones),
            reason=reason,
        )
    )  # fmt: skip
    return row


def _apply_plan(uow: UnitOfWork, row: store.Goal, plan: GoalPlan) -> None:
    row.target_date, row.milestones = plan.target_date, _dump(plan.milestones)
    row.revision, row.replanned_at = plan.revision, uow.clock.now()


async def reach_milestone(
    uow: UnitOfWork,
    pair: store.Pair,
    *,
    milestone_id: str,
    title: str | None,
    goal_id: str | None,
    kind: str | None,
    visibility: str,
    evidence: str | None,
    source: str | None,
) -> store.Milestone:
    """A milestone reached (planned in one of the pair's goals, or not): milestone.reached.

    A planned milestone takes its title and kind from the plan unless given; the same milestone
    reported again changes nothing.
    """
    if goal_id is not None:
        goal = await pair_goal(uow, pair, goal_id)
        planned = {m["milestone_id"]: m for m in goal.milestones}.get(milestone_id)
        if planned is not None:
            title, kind = title or planned["title"], kind or planned["kind"]
    if not title:
        raise Refused(422, "a milestone needs a title (or the id of one in its goal's plan)")
    row = await uow.session.get(store.Milestone, (pair.program_id, milestone_id))
    if row is not None:
        if row.pair_id == pair.pair_id:
            return row  # reported already
        raise Refused(409, f"milestone id {milestone_id!r} is taken; choose another")
    row = _add_milestone(
        uow, pair.program_id, pair.pair_id, milestone_id, title, goal_id, kind, visibility,
        evidence, source, uow.clock.now(),
    )  # fmt: skip
    uow.emit(
        MilestoneReached(
            program_id=pair.program_id, occurred_at=row.reached_at, pair_id=pair.pair_id,
            milestone_id=milestone_id, title=title, goal_id=goal_id, source=source,
            visibility=visibility, kind=kind, evidence=evidence,  # type: ignore[arg-type]
        )
    )  # fmt: skip
    return row


def _add_milestone(
    uow: UnitOfWork,
    program_id: str,
    pair_id: str,
    milestone_id: str,
    title: str,
    goal_id: str | None,
    kind: str | None,
    visibility: str,
    evidence: str | None,
    source: str | None,
    at: dt.datetime,
) -> store.Milestone:
    row = store.Milestone(
        program_id=program_id, milestone_id=milestone_id, pair_id=pair_id, goal_id=goal_id,
        title=title, kind=kind, visibility=visibility, evidence=evidence, source=source,
        reached_at=at,
    )  # fmt: skip
    uow.session.add(row)
    return row


async def on_goal_set(event: GoalSet, uow: UnitOfWork) -> None:
    """A goal set elsewhere (or pairing's own, coming back): kept."""
    pair = await store.pair_or_raise(
        uow.session, program_id=event.program_id, pair_id=event.pair_id
    )
    row = await uow.session.get(store.Goal, (event.program_id, event.goal_id))
    if row is not None:
        _same_pair(row.pair_id, event.pair_id, f"goal {event.goal_id!r}")
        return
    _add_goal(uow, pair, event.goal_id, event.title, event.target_date, event.milestones)


async def on_goal_replanned(event: GoalReplanned, uow: UnitOfWork) -> None:
    """A goal re-planned elsewhere (or pairing's own): its plan at that revision, if newer."""
    await store.pair_or_raise(uow.session, program_id=event.program_id, pair_id=event.pair_id)
    row = await uow.session.get(store.Goal, (event.program_id, event.goal_id), with_for_update=True)
    if row is None:
        raise UnknownReference(
            f"goal {event.goal_id!r} of program {event.program_id!r} is unknown here; "
            "publish goal.set first"
        )
    _same_pair(row.pair_id, event.pair_id, f"goal {event.goal_id!r}")
    if row.revision >= event.revision:
        return  # this revision (or a later one) is kept already
    plan = GoalPlan(row.title, event.target_date, tuple(event.milestones), event.revision)
    _apply_plan(uow, row, plan)


async def on_milestone_reached(event: MilestoneReached, uow: UnitOfWork) -> None:
    """A milestone reported by an outside system (or pairing's own, coming back): kept."""
    await store.pair_or_raise(uow.session, program_id=event.program_id, pair_id=event.pair_id)
    row = await uow.session.get(store.Milestone, (event.program_id, event.milestone_id))
    if row is not None:
        _same_pair(row.pair_id, event.pair_id, f"milestone {event.milestone_id!r}")
        return
    if event.goal_id is not None:
        goal = await uow.session.get(store.Goal, (event.program_id, event.goal_id))
        if goal is not None:
            _same_pair(goal.pair_id, event.pair_id, f"goal {event.goal_id!r}")
    _add_milestone(
        uow, event.program_id, event.pair_id, event.milestone_id, event.title, event.goal_id,
        event.kind, event.visibility, event.evidence, event.source, event.occurred_at,
    )  # fmt: skip


def _same_pair(stored: str, named: str, what: str) -> None:
    if stored != named:
        raise EventRejected(
            f"{what} belongs to pair {stored!r}, not to {named!r}; the event is never applied: "
            "use a new id for the other pair's record and publish it again"
        )


# --- opportunities ------------------------------------------------------------------------


async def offer(
    uow: UnitOfWork,
    *,
    program_id: str,
    opportunity_id: str,
    participant_id: str,
    pair_id: str | None,
    kind: str,
    title: str,
    offered_by: str,
) -> store.Opportunity:
    """An opportunity offered to a participant: opportunity.offered (for the equity view). The
    same offer again changes nothing."""
    canonical = opportunity_kind(kind)
    try:
        await store.participant_or_raise(
            uow.session, program_id=program_id, participant_id=participant_id
        )
    except ProgramMismatch as exc:
        raise Refused(422, str(exc)) from exc
    except UnknownReference as exc:
        raise Refused(404, str(exc)) from exc
    if pair_id is not None:
        pair = await formed_pair(uow, program_id=program_id, pair_id=pair_id)
        if participant_id not in (pair.mentor_id, pair.mentee_id):
            raise Refused(
                422, f"{participant_id!r} is not in pair {pair_id!r}; leave pair_id out or fix it"
            )
    row = await uow.session.get(store.Opportunity, (program_id, opportunity_id))
    if row is not None:
        if (row.participant_id, row.kind, row.title) == (participant_id, canonical, title):
            return row
        raise Refused(409, f"opportunity id {opportunity_id!r} is taken; choose another")
    row = _add_opportunity(
        uow, program_id, opportunity_id, participant_id, pair_id, canonical, title, offered_by,
        uow.clock.now(),
    )  # fmt: skip
    uow.emit(
        OpportunityOffered(
            program_id=program_id, occurred_at=row.offered_at, opportunity_id=opportunity_id,
            participant_id=participant_id, kind=canonical, title=title, pair_id=pair_id,
            offered_by=offered_by,
        )
    )  # fmt: skip
    return row


def _add_opportunity(
    uow: UnitOfWork,
    program_id: str,
    opportunity_id: str,
    participant_id: str,
    pair_id: str | None,
    kind: str,
    title: str,
    offered_by: str | None,
    at: dt.datetime,
) -> store.Opportunity:
    row = store.Opportunity(
        program_id=program_id, opportunity_id=opportunity_id, participant_id=participant_id,
        pair_id=pair_id, kind=kind, title=title, offered_by=offered_by, offered_at=at,
    )  # fmt: skip
    uow.session.add(row)
    return row


async def on_opportunity_offered(event: OpportunityOffered, uow: UnitOfWork) -> None:
    """An opportunity offered elsewhere (or pairing's own, coming back): kept."""
    await store.participant_or_raise(
        uow.session, program_id=event.program_id, participant_id=event.participant_id
    )
    if event.pair_id is not None:
        pair = await store.pair_or_raise(
            uow.session, program_id=event.program_id, pair_id=event.pair_id
        )
        if event.participant_id not in (pair.mentor_id, pair.mentee_id):
            raise EventRejected(
                f"participant {event.participant_id!r} is not in pair {event.pair_id!r}; the "
                "event is never applied: fix its pair_id (or leave it out) and publish it again"
            )
    if await uow.session.get(store.Opportunity, (event.program_id, event.opportunity_id)):
        return
    _add_opportunity(
        uow, event.program_id, event.opportunity_id, event.participant_id, event.pair_id,
        event.kind, event.title, event.offered_by, event.occurred_at,
    )  # fmt: skip


# --- what the pair sees -------------------------------------------------------------------


async def view(uow: UnitOfWork, pair: store.Pair, *, for_role: str) -> dict[str, Any]:
    """The pair's charter, goals, milestones (public and private: this is the pair's own view,
    or a coordinator's) and the opportunities offered to either person."""
    session, program = uow.session, pair.program_id
    charter = charter_state(await session.get(store.Charter, (program, pair.pair_id)))
    goals = await session.scalars(
        select(store.Goal)
        .where(store.Goal.program_id == program, store.Goal.pair_id == pair.pair_id)
        .order_by(store.Goal.set_at, store.Goal.goal_id)
    )
    milestones = await session.scalars(
        select(store.Milestone)
        .where(store.Milestone.program_id == program, store.Milestone.pair_id == pair.pair_id)
        .order_by(store.Milestone.reached_at, store.Milestone.milestone_id)
    )
    offered = await session.scalars(
        select(store.Opportunity)
        .where(
            store.Opportunity.program_id == program,
            store.Opportunity.participant_id.in_([pair.mentor_id, pair.mentee_id]),
        )
        .order_by(store.Opportunity.offered_at, store.Opportunity.opportunity_id)
    )
    return {
        "pair_id": pair.pair_id,
        "you_are": for_role,
        "mentor_id": pair.mentor_id,
        "mentee_id": pair.mentee_id,
        "status": pair.status,
        "charter": None
        if charter is None
        else {
            "version": charter.version,
            "terms": charter.terms.model_dump(mode="json"),
            "mentor_agreed_version": charter.mentor_version,
            "mentee_agreed_version": charter.mentee_version,
            "agreed": charter.agreed,
            "agreed_version": charter.agreed_version,
        },
        "goals": [
            {
                "goal_id": g.goal_id,
                "title": g.title,
                "target_date": g.target_date.isoformat() if g.target_date else None,
                "milestones": g.milestones,
                "revision": g.revision,
            }
            for g in goals
        ],
        "milestones": [
            {
                "milestone_id": m.milestone_id,
                "title": m.title,
                "goal_id": m.goal_id,
                "kind": m.kind,
                "visibility": m.visibility,
                "evidence": m.evidence,
                "source": m.source,
                "reached_at": m.reached_at.isoformat(),
            }
            for m in milestones
        ],
        "opportunities": [
            {
                "opportunity_id": o.opportunity_id,
                "participant_id": o.participant_id,
                "kind": o.kind,
                "title": o.title,
                "offered_by": o.offered_by,
            }
            for o in offered
        ],
    }
