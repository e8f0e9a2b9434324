"""The relationship's rules (pure) and its records on a real SQLite database, without NATS:
charter versions, goal re-plans, milestones, opportunities, and the same records as events from
outside systems."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from services.pairing import relations, relationship, store
from services.pairing.handlers import on_matching_requested
from services.pairing.relationship import (
    MENTEE,
    MENTOR,
    CharterState,
    CharterTerms,
    GoalPlan,
    Refused,
)
from shared.errors import EventRejected, ProgramMismatch, UnknownReference
from shared.events import (
    CharterAgreed,
    GoalReplanned,
    GoalSet,
    MilestoneReached,
    OpportunityOffered,
    PairFormed,
    Role,
)
from shared.events.pairs import PlannedMilestone
from tests.support.handlers import START, HandlerDb, handler_db
from tests.unit.pairing.test_handlers import register_all, registered, requested

TERMS = CharterTerms(purpose="grow", cadence_days=14)


# --- the rules ---------------------------------------------------------------------------


@given(
    st.lists(st.tuples(st.sampled_from(["propose", "agree"]), st.sampled_from([MENTOR, MENTEE])))
)
def test_a_charter_is_agreed_exactly_when_both_agreed_to_its_current_version(steps):
    state: CharterState | None = None
    agreed_by: dict[str, int] = {}
    for action, who in steps:
        if action == "propose":
            state = relationship.propose_charter(state, TERMS, who)
            agreed_by = {who: state.version}
        elif state is not None:
            state = relationship.agree_charter(state, state.version, who)
            agreed_by[who] = state.version
    if state is None:
        return
    both = agreed_by.get(MENTOR) == agreed_by.get(MENTEE) == state.version
    assert state.agreed == both
    assert state.version == sum(1 for action, _ in steps if action == "propose")
    if both:
        assert state.agreed_version == state.version


def test_agreeing_to_an_old_version_or_to_no_charter_is_refused_with_what_to_do():
    with pytest.raises(Refused) as none:
        relationship.agree_charter(None, 1, MENTOR)
    assert none.value.status == 404 and "propose" in none.value.message
    two = relationship.propose_charter(
        relationship.propose_charter(None, TERMS, MENTOR), TERMS, MENTEE
    )
    with pytest.raises(Refused) as old:
        relationship.agree_charter(two, 1, MENTOR)
    assert old.value.status == 409 and "version 2" in old.value.message
    draft = relationship.propose_charter(None, TERMS, relationship.COORDINATOR)
    assert (draft.mentor_version, draft.mentee_version, draft.agreed) == (None, None, False)


def milestone(i: int, due: dt.date | None = None) -> PlannedMilestone:
    return PlannedMilestone(milestone_id=f"m{i}", title=f"step {i}", due_date=due)


@given(
    st.lists(
        st.one_of(st.none(), st.dates(dt.date(2027, 1, 1), dt.date(2027, 12, 31))), min_size=1
    ),
)
def test_each_real_change_of_plan_is_one_revision_and_the_same_plan_none(dates):
    plan = GoalPlan("lead", None, (milestone(1),))
    changes = 0
    for date in dates:
        after = relationship.replan(plan, target_date=date, milestones=None)
        if date == plan.target_date:
            assert after is None
            continue
        assert after is not None and after.target_date == date
        changes += 1
        plan = after
    assert plan.revision == 1 + changes and plan.milestones == (milestone(1),)


def test_a_plan_repeating_a_milestone_id_and_an_unknown_opportunity_kind_are_refused():
    with pytest.raises(Refused) as repeated:
        relationship.check_milestones([milestone(1), milestone(2), milestone(1)])
    assert repeated.value.status == 422 and "m1" in repeated.value.message
    assert relationship.opportunity_kind("Stretch-Assignment") == "stretch assignment"
    assert relationship.opportunity_kind("stretch") == "stretch assignment"
    assert relationship.opportunity_kind(" Visibility ") == "visibility"
    with pytest.raises(Refused) as odd:
        relationship.opportunity_kind("free lunch")
    assert "sponsorship" in odd.value.message
    with pytest.raises(Refused):
        relationship.role_in("m", "e", "someone")


# --- the records -------------------------------------------------------------------------


@pytest.fixture
async def db(tmp_path: Path):
    async with handler_db(store.Base.metadata, store.delivery, tmp_path) as db:
        yield db


async def a_pair(db: HandlerDb, program: str = "prog") -> PairFormed:
    await register_all(
        db,
        registered(program, f"{program}-m", role=Role.MENTOR),
        registered(program, f"{program}-e"),
    )
    uow = await db.apply(on_matching_requested, requested(program, "r1"))
    [formed] = [e for e in uow.emitted if isinstance(e, PairFormed)]
    return formed


async def test_a_charter_agreed_by_both_is_announced_once_and_a_new_version_needs_both_again(db):
    pair = await a_pair(db)
    async with db.unit_of_work() as uow:
        row = await relations.formed_pair(uow, program_id="prog", pair_id=pair.pair_id)
        await relations.propose(uow, row, TERMS, by=MENTOR)
        state = await relations.agree(uow, row, 1, by=MENTEE)
        again = await relations.agree(uow, row, 1, by=MENTEE)
    assert state.agreed and again.agreed
    [agreed] = uow.emitted
    assert isinstance(agreed, CharterAgreed) and (agreed.version, agreed.purpose) == (1, "grow")
    async with db.unit_of_work() as uow:
        row = await relations.formed_pair(uow, program_id="prog", pair_id=pair.pair_id)
        changed = await relations.propose(
            uow, row, TERMS.model_copy(update={"cadence_days": 7}), by=MENTEE
        )
    assert (changed.version, changed.agreed, changed.agreed_version) == (2, False, 1)
    assert uow.emitted == []


async def test_only_a_formed_pair_of_the_program_builds_a_relationship(db):
    pair = await a_pair(db)
    await a_pair(db, "other")
    async with db.unit_of_work() as uow:
        for program, pair_id, status in (("other", pair.pair_id, 422), ("prog", "nope", 404)):
            with pytest.raises(Refused) as refused:
                await relations.formed_pair(uow, program_id=program, pair_id=pair_id)
            assert refused.value.status == status
        row = await relations.formed_pair(uow, program_id="prog", pair_id=pair.pair_id)
        row.status = "ended"
        with pytest.raises(Refused) as over:
            await relations.formed_pair(uow, program_id="prog", pair_id=pair.pair_id)
        assert over.value.status == 409 and "ended" in over.value.message


def goal_set(pair_id: str, goal_id: str = "g", program: str = "prog") -> GoalSet:
    return GoalSet(
        program_id=program, occurred_at=START, pair_id=pair_id, goal_id=goal_id, title="lead",
        milestones=[milestone(1)],
    )  # fmt: skip


async def test_outside_goals_milestones_and_offers_are_kept_once_and_contradictions_rejected(db):
    await register_all(db, registered("prog", "prog-m2", role=Role.MENTOR))
    await register_all(db, registered("prog", "prog-e2"))
    formed = await db.apply(on_matching_requested, requested("prog", "r0"))
    [second] = [e for e in formed.emitted if isinstance(e, PairFormed)]
    pair = await a_pair(db)
    await a_pair(db, "other")
    await db.apply(relations.on_goal_set, goal_set(pair.pair_id))
    await db.apply(relations.on_goal_set, goal_set(pair.pair_id))  # pairing's own, back: no-op
    with pytest.raises(ProgramMismatch):
        await db.apply(relations.on_goal_set, goal_set(pair.pair_id, "g2", "other"))
    with pytest.raises(UnknownReference):
        await db.apply(relations.on_goal_set, goal_set("no-such-pair", "g3"))
    replanned = GoalReplanned(
        program_id="prog", occurred_at=START, pair_id=pair.pair_id, goal_id="g", revision=2,
        target_date=dt.date(2027, 6, 30), milestones=[milestone(1), milestone(2)],
    )  # fmt: skip
    await db.apply(relations.on_goal_replanned, replanned)
    older = replanned.model_copy(update={"revision": 2, "target_date": dt.date(2027, 1, 1)})
    await db.apply(relations.on_goal_replanned, older)  # not newer: ignored
    with pytest.raises(UnknownReference):
        await db.apply(
            relations.on_goal_replanned, replanned.model_copy(update={"goal_id": "unset"})
        )
    reached = MilestoneReached(
        program_id="prog", occurred_at=START, pair_id=pair.pair_id, milestone_id="jira-1",
        title="shipped", goal_id="g", source="jira",
    )  # fmt: skip
    await db.apply(relations.on_milestone_reached, reached)
    await db.apply(relations.on_milestone_reached, reached)
    with pytest.raises(EventRejected) as taken:  # the id is the first pair's
        await db.apply(
            relations.on_milestone_reached,
            reached.model_copy(update={"pair_id": second.pair_id, "goal_id": None}),
        )
    assert "use a new id" in str(taken.value)
    with pytest.raises(EventRejected):  # goal g is the first pair's
        await db.apply(
            relations.on_goal_replanned,
            replanned.model_copy(update={"pair_id": second.pair_id, "revision": 3}),
        )
    offer = OpportunityOffered(
        program_id="prog", occurred_at=START, opportunity_id="o-1", participant_id="prog-e",
        kind="sponsorship", title="sponsored", pair_id=pair.pair_id,
    )  # fmt: skip
    await db.apply(relations.on_opportunity_offered, offer)
    with pytest.raises(EventRejected):
        await db.apply(
            relations.on_opportunity_offered,
            offer.model_copy(update={"opportunity_id": "o-2", "participant_id": "prog-m",
                                     "pair_id": second.pair_id}),
        )  # fmt: skip
    async with db.sessions() as session:
        [goal] = await session.scalars(select(store.Goal))
        assert (goal.revision, goal.target_date, len(goal.milestones)) == (
            2, dt.date(2027, 6, 30), 2
        )  # fmt: skip
        [kept] = await session.scalars(select(store.Milestone))
        assert (kept.pair_id, kept.visibility, kept.source) == (pair.pair_id, "private", "jira")
        assert [o.opportunity_id for o in await session.scalars(select(store.Opportunity))] == [
            "o-1"
        ]


async def test_a_milestone_of_the_plan_takes_its_title_and_kind_and_a_goal_id_is_one_pairs(db):
    pair = await a_pair(db)
    other = await a_pair(db, "other")
    plan = [PlannedMilestone(milestone_id="g-a", title="draft reviewed", kind="review")]
    async with db.unit_of_work() as uow:
        row = await relations.formed_pair(uow, program_id="prog", pair_id=pair.pair_id)
        await relations.set_goal(
            uow, row, goal_id="g", title="lead", target_date=None, milestones=plan
        )
        with pytest.raises(Refused) as taken:
            await relations.set_goal(
                uow, row, goal_id="g", title="other", target_date=None, milestones=[]
            )
        assert taken.value.status == 409
        kept = await relations.reach_milestone(
            uow, row, milestone_id="g-a", title=None, goal_id="g", kind=None,
            visibility="public", evidence=None, source=None,
        )  # fmt: skip
    assert (kept.title, kept.kind) == ("draft reviewed", "review")
    emitted = [type(e) for e in uow.emitted]
    assert emitted == [GoalSet, MilestoneReached]
    async with db.unit_of_work() as uow:
        theirs = await relations.formed_pair(uow, program_id="other", pair_id=other.pair_id)
        with pytest.raises(Refused) as foreign:
            await relations.reach_milestone(
                uow, theirs, milestone_id="x", title="x", goal_id="g", kind=None,
                visibility="private", evidence=None, source=None,
            )  # fmt: skip
        assert foreign.value.status == 404
