"""insights' handlers on a real SQLite database, without NATS: what the read models show."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from services.insights import queries, store
from services.insights.handlers import SUBSCRIPTIONS, on_any_event, on_contact_deadline
from services.insights.overview import build_overview
from services.insights.writes import CONTACT_TIMER
from shared.db import Sessions
from shared.errors import ProgramMismatch, UnknownReference
from shared.events import (
    CATALOGUE,
    Event,
    MatchingCompleted,
    PairAtRisk,
    PairExpired,
    PairFormed,
    PairProposed,
    SessionHeld,
    SessionScheduled,
)
from shared.timers import Due
from tests.support.handlers import HandlerDb, handler_db
from tests.unit.insights.scenario import NOW, PROGRAM, Program, sample_program

HANDLERS = {s.event: s.handler for s in SUBSCRIPTIONS}
AFTER = {s.event: s.after for s in SUBSCRIPTIONS}
READ_MODELS = [
    t
    for name, t in store.Base.metadata.tables.items()
    if name not in ("outbox", "inbox", "timers", "api_tokens")
]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[HandlerDb]:
    async with handler_db(store.Base.metadata, store.delivery, tmp_path, source="insights") as db:
        yield db


async def apply_all(db: HandlerDb, events: Sequence[Event]) -> list[Event]:
    """Applies each event in its own transaction, as a batch of one; returns what was emitted."""
    emitted: list[Event] = []
    for event in events:
        uow = await db.apply(HANDLERS[type(event)], event)
        emitted += uow.emitted
    return emitted


async def overview(db: HandlerDb, program_id: str = PROGRAM) -> dict[str, Any]:
    async with db.sessions() as session:
        built = build_overview(
            program_id,
            await queries.counters(session, program_id=program_id),
            await queries.daily(
                session,
                program_id=program_id,
                metrics=("sessions.planned", "sessions.held", "sessions.missed"),
                since=NOW.date() - dt.timedelta(days=90),
            ),
            await queries.assessments(session, program_id=program_id),
            await queries.events_seen(session, program_id=program_id),
            today=NOW.date(),
        )
    return built.model_dump(mode="json")


async def snapshot(db: HandlerDb) -> dict[str, list[tuple[Any, ...]]]:
    """Every read model's rows, sorted: what a rebuild must reproduce."""
    return await read_models(db.sessions)


async def read_models(sessions: Sessions) -> dict[str, list[tuple[Any, ...]]]:
    """Every read model's rows, sorted (counters at 0 left out: the same as never written)."""
    found = {}
    async with sessions() as session:
        for table in READ_MODELS:
            rows = [tuple(_plain(v) for v in row) for row in await session.execute(select(table))]
            if "shard" in table.c:  # a counter is the sum of its shards; 0 is never written
                names = list(table.c.keys())
                at_shard, at_value = names.index("shard"), names.index("value")
                sums: dict[tuple[Any, ...], float] = {}
                for row in rows:
                    key = tuple(v for i, v in enumerate(row) if i not in (at_shard, at_value))
                    sums[key] = round(sums.get(key, 0) + row[at_value], 6)
                rows = [(*key, value) for key, value in sums.items() if value != 0]
            found[table.name] = sorted(rows, key=repr)
    return found


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dt.datetime):
        return store.utc(value)
    return value


def test_every_catalogue_event_has_one_projecting_subscription_in_catalogue_order():
    assert [s.event for s in SUBSCRIPTIONS] == [e for e in CATALOGUE if e is not PairAtRisk]
    projected = {s.event.__name__ for s in SUBSCRIPTIONS if s.handler is not on_any_event}
    # the ones the issue found changing only a counter, among every event with a read model
    assert {"SessionHeld", "MilestoneReached", "CheckinOverdue", "FeedbackGiven"} <= projected
    assert len(projected) == 29


async def test_the_sample_program_gives_the_overview_coordinators_need(db):
    await apply_all(db, sample_program().events)
    o = await overview(db)
    assert o["participants"] == {"mentee": 11, "mentor": 3}
    assert (o["mentees_matched"], o["match_rate"]) == (3, 0.273)
    assert o["pairs_by_state"] == {"formed": 3}
    assert o["pairs_by_health"] == {"at_risk": 1, "healthy": 2}
    assert o["average_days_to_first_session"] == 4.7
    assert o["sessions"] == [
        {"days": 30, "planned": 3, "held": 1, "missed": 2},
        {"days": 90, "planned": 8, "held": 5, "missed": 3},
    ]
    assert o["checkins"] == {"due": 5, "submitted": 3, "adherence": 0.6, "overdue_now": 2}
    assert o["milestones_reached"] == 1
    assert o["feedback"] == {"mentee_to_mentor": 1, "mentor_to_mentee": 2}
    assert o["opportunities"] == {"introduction": 1, "sponsorship": 1, "stretch": 2}
    assert o["emails"] == {"sent": 2, "failed": 1}
    assert o["unschedulable_pairs"] == 1
    assert o["matching_rounds"] == 1
    assert o["assessments"] == [
        {"period": "2027-01", "dimension": "satisfaction", "average": 3.0, "responses": 2},
        {"period": "2027-01", "dimension": "treated_fairly", "average": 3.0, "responses": 2},
        {"period": "2027-02", "dimension": "satisfaction", "average": 5.0, "responses": 1},
        {"period": "2027-02", "dimension": "treated_fairly", "average": 5.0, "responses": 1},
    ]
    assert o["events_seen"]["sessions held"] == 5
    assert o["events_seen"]["check-ins overdue"] == 3


async def test_a_struggling_pair_is_at_risk_with_its_reasons_and_emits_pair_at_risk_once(db):
    emitted = await apply_all(db, sample_program().events)
    [alert] = [e for e in emitted if isinstance(e, PairAtRisk)]
    assert alert.pair_id == "pair-1"
    async with db.sessions() as session:
        pairs = await queries.pairs(session, program_id=PROGRAM, health=None, limit=10, offset=0)
    assert pairs[0].pair_id == "pair-1"
    async with db.sessions() as session:
        riskiest = await queries.pair(session, program_id=PROGRAM, pair_id="pair-1")
    assert riskiest is not None
    assert riskiest.health == "at_risk" and riskiest.at_risk_crossings == 1
    assert riskiest.reasons == [
        "1 of 4 sessions held",
        "1 of 3 check-ins submitted",
        "mentee missed 2 sessions",
        "low fit rating (2.0 of 5)",
    ]
    assert riskiest.risk_score == 4
    # c1-1 and c1-2 were missed, c1-3 answered: two still open, the streak reset by c1-3
    assert riskiest.open_overdue_checkins == 2 and riskiest.overdue_streak == []
    # the alert says why at the moment of crossing (the third session missed, a quiet month)
    assert alert.reasons == [
        "1 of 3 sessions held",
        "no contact for 28 days",
        "mentee missed 2 sessions",
    ]
    assert alert.score == 3.0


async def test_a_pair_heard_nothing_of_is_scored_again_when_its_contact_deadline_passes(db):
    await apply_all(db, sample_program().events)
    async with db.sessions() as session:
        deadline = await session.scalar(
            select(store.timers.c.due_at).where(store.timers.c.key == "pair-2")
        )
    due = Due(PROGRAM, CONTACT_TIMER, "pair-2", store.utc(deadline), {}, 1, NOW, "lease")
    await db.apply(on_contact_deadline, due)
    async with db.sessions() as session:
        pair = await queries.pair(session, program_id=PROGRAM, pair_id="pair-2")
    assert pair is not None
    assert (pair.health, pair.reasons) == ("watch", ["no contact for 21 days"])


async def test_replaying_an_event_changes_nothing_but_its_count(db):
    program = sample_program()
    await apply_all(db, program.events)
    before = await snapshot(db)
    # a second held report of a session (another event id) must not count twice
    held = next(e for e in program.events if isinstance(e, SessionHeld))
    again = held.model_copy(update={"event_id": held.event_id.__class__(int=held.event_id.int + 1)})
    await apply_all(db, [again])
    after = await snapshot(db)
    assert {k: v for k, v in after.items() if k != "event_counts"} == {
        k: v for k, v in before.items() if k != "event_counts"
    }


def interleaving(events: Sequence[Event], rng: random.Random) -> list[Event]:
    """An order the consumers could apply `events` in: each subject in stream order, and each
    event after every earlier event of the subjects its subscription waits for (`after`)."""
    pending = list(events)
    done: list[Event] = []
    while pending:
        ready = []
        for i, event in enumerate(pending):
            blockers = {type(event), *AFTER[type(event)]}
            if not any(type(e) in blockers for e in pending[:i]):
                ready.append(i)
        done.append(pending.pop(rng.choice(ready)))
    return done


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_projections_are_the_same_in_any_order_the_consumers_may_apply_events(tmp_path, seed):
    events = sample_program().events
    async with handler_db(store.Base.metadata, store.delivery, tmp_path / "a") as first:
        await apply_all(first, events)
        expected = await snapshot(first)
    shuffled = interleaving(events, random.Random(seed))
    assert shuffled != events
    async with handler_db(store.Base.metadata, store.delivery, tmp_path / "b") as second:
        await apply_all(second, shuffled)
        assert await snapshot(second) == expected


async def test_an_event_naming_another_programs_pair_is_refused(db):
    await apply_all(db, sample_program().events)
    other = Program(program_id="program-b")
    other.register("mentee-0", "mentee", 0)
    other.session("pair-1", "other-s", 5, "planned")
    await apply_all(db, other.events[:1])
    with pytest.raises(ProgramMismatch, match="pair 'pair-1' belongs to another program"):
        await apply_all(db, other.events[1:])


async def test_a_session_of_an_unknown_pair_waits_for_its_pair_formed(db):
    p = Program()
    p.session("pair-9", "s9", 5, "planned")
    with pytest.raises(UnknownReference, match=r"publish pair\.formed first"):
        await apply_all(db, p.events)


async def test_a_dry_run_is_no_round_and_leaves_the_real_one_with_its_round_id_counted(db):
    program = sample_program()
    await apply_all(db, program.events)
    before = await overview(db)
    real = MatchingCompleted(
        program_id=PROGRAM,
        occurred_at=NOW,
        round_id="round-next",
        pairs_formed=0,
        unmatched_mentees=0,
    )
    await apply_all(db, [real.model_copy(update={"dry_run": True})])
    assert (await overview(db))["matching_rounds"] == before["matching_rounds"]
    await apply_all(db, [real.model_copy(update={"event_id": uuid.uuid4()})])
    assert (await overview(db))["matching_rounds"] == before["matching_rounds"] + 1


async def test_sessions_planned_ahead_are_upcoming_not_in_the_past_windows(db):
    program = sample_program()
    await apply_all(db, program.events)
    before = await overview(db)
    scheduled = next(e for e in program.events if isinstance(e, SessionScheduled))
    ahead = scheduled.model_copy(
        update={
            "event_id": uuid.uuid4(),
            "session_id": "session-ahead",
            "start": NOW + dt.timedelta(days=3),
            "end": NOW + dt.timedelta(days=3, hours=1),
        }
    )
    await apply_all(db, [ahead])
    after = await overview(db)
    assert after["sessions_upcoming"] == before["sessions_upcoming"] + 1
    assert after["sessions"] == before["sessions"]


async def test_an_expired_proposal_closes_the_pair_and_says_who_did_not_answer(db):
    program = sample_program()
    await apply_all(db, program.events)
    before = await overview(db)
    ids = {"pair_id": "pair-x", "mentor_id": "mentor-0", "mentee_id": "mentee-3"}
    at = {"program_id": PROGRAM, "round_id": "r2"}
    proposed = PairProposed(occurred_at=NOW, score=0.7, **at, **ids)
    expired = PairExpired(
        program_id=PROGRAM, occurred_at=NOW + dt.timedelta(days=3), silent=["mentor-0"], **ids
    )
    # a pair.formed reported late (another subject) does not reopen the closed proposal
    late = PairFormed(occurred_at=NOW + dt.timedelta(days=1), language="en", **at, **ids)
    await apply_all(db, [proposed, expired, late])
    o = await overview(db)
    assert o["pairs_by_state"]["expired"] == 1
    assert o["pairs_by_state"].get("proposed") == before["pairs_by_state"].get("proposed")
    assert o["mentees_matched"] == before["mentees_matched"]
    async with db.sessions() as session:
        unmatched = await queries.unmatched_mentees(session, program_id=PROGRAM, limit=100)
        entries = await queries.timeline(session, program_id=PROGRAM, pair_id="pair-x", limit=10)
    reasons = {m.participant_id: m.unmatched_reason for m in unmatched}
    assert reasons["mentee-3"] == "proposal expired: the mentor did not accept in time"
    assert [e.kind for e in entries][:2] == ["proposed", "expired"]


@pytest.mark.parametrize("seed", [None, 1, 2, 3])
async def test_the_overdue_streak_counts_check_ins_missed_in_a_row_and_an_answer_resets_it(
    tmp_path, seed
):
    p = Program()
    p.register("mentor-0", "mentor", 0)
    p.register("mentee-0", "mentee", 0)
    p.pair("pair-0", "mentor-0", "mentee-0", 1, 0.9)
    for n, answer in enumerate(["overdue", "overdue", "late", "overdue", "yes", "overdue"]):
        p.checkin("pair-0", f"c{n}", "mentee-0", 7 * (n + 1), answer)
    first_two = [
        e for e in p.events if getattr(e, "checkin_id", "") not in ("c2", "c3", "c4", "c5")
    ]
    events = p.events if seed is None else interleaving(p.events, random.Random(seed))

    async def pair() -> Any:
        async with db.sessions() as session:
            return await queries.pair(session, program_id=PROGRAM, pair_id="pair-0")

    async with handler_db(store.Base.metadata, store.delivery, tmp_path / "db") as db:
        if seed is None:
            await apply_all(db, first_two)
            two = await pair()
            assert [cid for _, cid in two.overdue_streak] == ["c0", "c1"]
            assert "2 check-ins missed in a row" in two.reasons
            await apply_all(db, [e for e in events if e not in first_two])
        else:
            await apply_all(db, events)
        last = await pair()
    # c2 (answered late) reset the streak; c3 missed, c4 answered reset it again; c5 missed
    assert [cid for _, cid in last.overdue_streak] == ["c5"]
    assert store.utc(last.reported_due_at) == p.start + dt.timedelta(days=35)
    assert last.open_overdue_checkins == 4  # c0, c1, c3 and c5 still unanswered
    assert not any("missed in a row" in reason for reason in last.reasons)
