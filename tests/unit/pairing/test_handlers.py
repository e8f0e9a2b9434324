"""pairing's handlers on a real SQLite database, without NATS: what they store and emit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from services.pairing import rounds, store
from services.pairing.handlers import (
    on_matching_requested,
    on_participant_left,
    on_participant_registered,
    on_participant_updated,
    on_timezone_changed,
)
from shared.cpu import CpuPool
from shared.errors import ProgramMismatch, UnknownReference
from shared.events import (
    Event,
    MatchingCompleted,
    MatchingRequested,
    PairFormed,
    ParticipantLeft,
    ParticipantRegistered,
    ParticipantTimezoneChanged,
    ParticipantUpdated,
    Role,
    WorkingHours,
)
from shared.events.pairs import MenteeUnmatched
from shared.unit_of_work import UnitOfWork, unit_of_work
from tests.support.handlers import START, HandlerDb, handler_db


def hours(start: int = 9, end: int = 17) -> list[WorkingHours]:
    return [WorkingHours(weekday=d, start=dt.time(start), end=dt.time(end)) for d in range(5)]


def registered(
    program_id: str,
    participant_id: str,
    *,
    role: Role = Role.MENTEE,
    capacity: int | None = None,
    timezone: str = "Europe/Berlin",
    languages: tuple[str, ...] = ("en",),
    offered: tuple[str, ...] = (),
    sought: tuple[str, ...] = (),
    start: int = 9,
    end: int = 17,
) -> ParticipantRegistered:
    if role is Role.MENTOR and capacity is None:
        capacity = 1
    return ParticipantRegistered(
        program_id=program_id,
        occurred_at=START,
        participant_id=participant_id,
        email=f"{participant_id}@example.org",
        display_name=f"Person {participant_id}",
        role=role,
        timezone=timezone,
        working_hours=hours(start, end),
        languages=list(languages),
        skills_offered=list(offered),
        skills_sought=list(sought),
        capacity=capacity,
    )


def requested(program_id: str, round_id: str) -> MatchingRequested:
    return MatchingRequested(program_id=program_id, occurred_at=START, round_id=round_id)


def updated(program_id: str, participant_id: str) -> ParticipantUpdated:
    return ParticipantUpdated(
        program_id=program_id,
        occurred_at=START,
        participant_id=participant_id,
        skills_sought=["go"],
    )


def timezone_changed(program_id: str, participant_id: str) -> ParticipantTimezoneChanged:
    return ParticipantTimezoneChanged(
        program_id=program_id,
        occurred_at=START,
        participant_id=participant_id,
        old_timezone="Europe/Berlin",
        new_timezone="America/New_York",
        working_hours=hours(8, 12),
        effective_date=START.date(),
    )


def left(program_id: str, participant_id: str) -> ParticipantLeft:
    return ParticipantLeft(program_id=program_id, occurred_at=START, participant_id=participant_id)


Handler = Callable[[Any, UnitOfWork], Awaitable[None]]
PROFILE_CHANGES: list[tuple[Handler, Callable[[str, str], Event]]] = [
    (on_participant_updated, updated),
    (on_timezone_changed, timezone_changed),
    (on_participant_left, left),
]
CHANGE_IDS = ["participant.updated", "participant.timezone_changed", "participant.left"]


async def profile(db: HandlerDb, program_id: str, participant_id: str) -> dict[str, Any] | None:
    """Every column of the participant's row, or None."""
    async with db.sessions() as session:
        row = await session.get(store.Participant, (program_id, participant_id))
        if row is None:
            return None
        return {c.key: getattr(row, c.key) for c in store.Participant.__table__.columns}


async def pair_rows(db: HandlerDb) -> list[tuple[str, str, str, str, str]]:
    """(program_id, pair_id, mentor_id, mentee_id, status) of every stored pair."""
    async with db.sessions() as session:
        rows = await session.execute(
            select(
                store.Pair.program_id,
                store.Pair.pair_id,
                store.Pair.mentor_id,
                store.Pair.mentee_id,
                store.Pair.status,
            ).order_by(store.Pair.program_id, store.Pair.mentee_id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def register_all(db: HandlerDb, *events: ParticipantRegistered) -> None:
    for event in events:
        await db.apply(on_participant_registered, event)


def formed(uow: UnitOfWork) -> list[PairFormed]:
    return [e for e in uow.emitted if isinstance(e, PairFormed)]


def completed(uow: UnitOfWork) -> MatchingCompleted:
    [outcome] = [e for e in uow.emitted if isinstance(e, MatchingCompleted)]
    return outcome


@pytest.fixture
async def db(tmp_path: Path):
    async with handler_db(store.Base.metadata, store.delivery, tmp_path) as db:
        yield db


# --- profiles ---------------------------------------------------------------------------------


async def test_registration_keeps_the_matching_profile(db):
    event = registered("prog", "m-1", role=Role.MENTOR, capacity=3, offered=("python",))
    uow = await db.apply(on_participant_registered, event)
    assert uow.emitted == []
    row = await profile(db, "prog", "m-1")
    assert row is not None
    assert row["role"] == "mentor"
    assert row["capacity"] == 3
    assert row["skills_offered"] == ["python"]
    assert row["working_hours"][0] == {"weekday": 0, "start": "09:00:00", "end": "17:00:00"}
    assert row["active"] is True


async def test_re_registration_replaces_the_profile_and_reactivates_it(db):
    await db.apply(on_participant_registered, registered("prog", "e-1", sought=("sql",)))
    await db.apply(on_participant_left, left("prog", "e-1"))
    again = registered("prog", "e-1", timezone="Asia/Tokyo", sought=("rust",))
    await db.apply(on_participant_registered, again)
    row = await profile(db, "prog", "e-1")
    assert row is not None
    assert (row["timezone"], row["skills_sought"], row["active"]) == ("Asia/Tokyo", ["rust"], True)


class Statements:
    """The SQL statements the engine sends, transaction control left out."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK")):
            self.sent.append(" ".join(statement.split()))


@pytest.fixture
def statements() -> Iterator[Statements]:
    seen = Statements()
    sa_event.listen(Engine, "before_cursor_execute", seen)
    try:
        yield seen
    finally:
        sa_event.remove(Engine, "before_cursor_execute", seen)


async def test_registration_costs_one_write_and_no_lookup(db, statements):
    await db.apply(on_participant_registered, registered("prog", "e-1"))
    await db.apply(on_participant_registered, registered("prog", "e-1", sought=("go",)))
    first, second = statements.sent
    for sql in (first, second):
        assert sql.startswith("INSERT INTO participants")
        assert "ON CONFLICT (program_id, participant_id) DO UPDATE" in sql
    assert (await profile(db, "prog", "e-1"))["skills_sought"] == ["go"]


async def test_a_batch_of_registrations_is_one_statement(db, statements):
    async with db.unit_of_work() as uow:
        for i in range(20):
            await on_participant_registered(registered("prog", f"e-{i}"), uow)
    [upsert] = statements.sent  # one executemany for the batch, no lookups, no counts
    assert upsert.startswith("INSERT INTO participants")
    for i in range(20):
        assert await profile(db, "prog", f"e-{i}") is not None


async def test_update_changes_only_the_fields_it_names(db):
    await db.apply(on_participant_registered, registered("prog", "e-1", sought=("sql",)))
    before = await profile(db, "prog", "e-1")
    await db.apply(on_participant_updated, updated("prog", "e-1"))
    after = await profile(db, "prog", "e-1")
    assert before is not None and after is not None
    assert after["skills_sought"] == ["go"]
    assert {k: v for k, v in after.items() if k != "skills_sought"} == {
        k: v for k, v in before.items() if k != "skills_sought"
    }


async def test_timezone_change_moves_the_profile_to_the_new_zone_and_hours(db):
    await db.apply(on_participant_registered, registered("prog", "e-1"))
    await db.apply(on_timezone_changed, timezone_changed("prog", "e-1"))
    row = await profile(db, "prog", "e-1")
    assert row is not None
    assert row["timezone"] == "America/New_York"
    assert row["working_hours"][0] == {"weekday": 0, "start": "08:00:00", "end": "12:00:00"}


async def test_a_participant_who_left_is_not_matched_again(db):
    await register_all(
        db,
        registered("prog", "m-1", role=Role.MENTOR, capacity=2),
        registered("prog", "e-1"),
        registered("prog", "e-2"),
    )
    await db.apply(on_participant_left, left("prog", "e-1"))
    uow = await db.apply(on_matching_requested, requested("prog", "r1"))
    assert [p.mentee_id for p in formed(uow)] == ["e-2"]
    assert completed(uow).unmatched_mentees == 0


# --- program isolation ------------------------------------------------------------------------


@pytest.mark.parametrize(("handler", "make"), PROFILE_CHANGES, ids=CHANGE_IDS)
async def test_profile_event_naming_another_programs_participant_is_a_mismatch_and_changes_nothing(
    db, handler, make
):
    await db.apply(on_participant_registered, registered("prog-a", "e-1"))
    before = await profile(db, "prog-a", "e-1")
    with pytest.raises(ProgramMismatch, match="belongs to another program"):
        await db.apply(handler, make("prog-b", "e-1"))
    assert await profile(db, "prog-a", "e-1") == before
    assert await profile(db, "prog-b", "e-1") is None


@pytest.mark.parametrize(("handler", "make"), PROFILE_CHANGES, ids=CHANGE_IDS)
async def test_profile_event_naming_a_participant_no_program_knows_is_an_unknown_reference(
    db, handler, make
):
    await db.apply(on_participant_registered, registered("prog-a", "e-1"))
    with pytest.raises(UnknownReference, match=r"publish participant\.registered first"):
        await db.apply(handler, make("prog-a", "e-unknown"))
    assert await profile(db, "prog-a", "e-unknown") is None


async def test_registering_the_same_id_in_two_programs_keeps_two_separate_profiles(db):
    await db.apply(on_participant_registered, registered("prog-a", "p-1", timezone="Asia/Tokyo"))
    await db.apply(on_participant_registered, registered("prog-b", "p-1", role=Role.MENTOR))
    a, b = await profile(db, "prog-a", "p-1"), await profile(db, "prog-b", "p-1")
    assert a is not None and b is not None
    assert (a["role"], a["timezone"]) == ("mentee", "Asia/Tokyo")
    assert (b["role"], b["timezone"]) == ("mentor", "Europe/Berlin")


async def test_rounds_of_two_programs_with_the_same_ids_form_separate_pairs(db):
    for program in ("prog-a", "prog-b"):
        await register_all(
            db, registered(program, "m-1", role=Role.MENTOR), registered(program, "e-1")
        )
    first = await db.apply(on_matching_requested, requested("prog-a", "r1"))
    a_pairs = await pair_rows(db)
    second = await db.apply(on_matching_requested, requested("prog-b", "r1"))
    [a_formed], [b_formed] = formed(first), formed(second)
    assert a_formed.pair_id == rounds.pair_id("prog-a", "r1", "e-1")
    assert b_formed.pair_id == rounds.pair_id("prog-b", "r1", "e-1")
    assert a_formed.pair_id != b_formed.pair_id
    assert b_formed.program_id == "prog-b"
    assert await pair_rows(db) == [
        *a_pairs,
        ("prog-b", b_formed.pair_id, "m-1", "e-1", "active"),
    ]


async def test_a_round_of_a_program_without_participants_is_an_unknown_reference(db):
    await register_all(db, registered("prog-a", "m-1", role=Role.MENTOR), registered("prog-a", "e"))
    with pytest.raises(UnknownReference, match="'prog-b' has no registered participants"):
        await db.apply(on_matching_requested, requested("prog-b", "r1"))
    assert await pair_rows(db) == []


# --- rounds -----------------------------------------------------------------------------------


async def test_round_stores_active_pairs_and_announces_each_then_the_outcome(db):
    await register_all(
        db,
        registered("prog", "m-1", role=Role.MENTOR, offered=("python",)),
        registered("prog", "m-2", role=Role.MENTOR, offered=("design",)),
        registered("prog", "e-1", sought=("python",)),
        registered("prog", "e-2", sought=("design",)),
        registered("prog", "e-3"),
    )
    db.clock.advance(dt.timedelta(hours=1))
    uow = await db.apply(on_matching_requested, requested("prog", "r1"))
    kinds = [PairFormed, PairFormed, MenteeUnmatched, MatchingCompleted]
    assert [type(e) for e in uow.emitted] == kinds
    [waiting] = [e for e in uow.emitted if isinstance(e, MenteeUnmatched)]
    assert (waiting.participant_id, waiting.round_id, waiting.reason) == ("e-3", "r1", "capacity")
    assert {(p.mentor_id, p.mentee_id) for p in formed(uow)} == {("m-1", "e-1"), ("m-2", "e-2")}
    assert all(e.occurred_at == START + dt.timedelta(hours=1) for e in uow.emitted)
    outcome = completed(uow)
    assert (outcome.round_id, outcome.pairs_formed, outcome.unmatched_mentees) == ("r1", 2, 1)
    assert outcome.unmatched_mentee_ids == ["e-3"]
    assert await pair_rows(db) == [
        ("prog", rounds.pair_id("prog", "r1", "e-1"), "m-1", "e-1", "active"),
        ("prog", rounds.pair_id("prog", "r1", "e-2"), "m-2", "e-2", "active"),
    ]


async def test_a_round_that_ran_already_changes_nothing(db):
    await register_all(db, registered("prog", "m-1", role=Role.MENTOR), registered("prog", "e-1"))
    await db.apply(on_matching_requested, requested("prog", "r1"))
    pairs = await pair_rows(db)
    await register_all(db, registered("prog", "m-2", role=Role.MENTOR), registered("prog", "e-2"))
    again = await db.apply(on_matching_requested, requested("prog", "r1"))
    assert again.emitted == []
    assert await pair_rows(db) == pairs


async def test_a_later_round_pairs_only_the_unpaired_within_each_mentors_capacity(db):
    await register_all(
        db, registered("prog", "m-1", role=Role.MENTOR, capacity=2), registered("prog", "e-1")
    )
    await db.apply(on_matching_requested, requested("prog", "r1"))
    await register_all(db, registered("prog", "e-2"), registered("prog", "e-3"))
    uow = await db.apply(on_matching_requested, requested("prog", "r2"))
    [pair] = formed(uow)
    assert (pair.mentor_id, pair.round_id) == ("m-1", "r2")
    assert pair.mentee_id in {"e-2", "e-3"}
    assert completed(uow).unmatched_mentees == 1


async def test_rounds_in_one_batch_never_pair_a_mentee_twice(db):
    await register_all(
        db,
        registered("prog", "m-1", role=Role.MENTOR, capacity=3),
        registered("prog", "e-1"),
        registered("prog", "e-2"),
    )
    # one transaction, a savepoint per event: as the batched consumer applies them
    async with db.unit_of_work() as uow:
        for event in (requested("prog", "r1"), requested("prog", "r1"), requested("prog", "r2")):
            async with uow.session.begin_nested():
                await on_matching_requested(event, uow)
    # r1 forms both pairs, r1 again changes nothing, r2 finds nobody left to pair
    kinds = [PairFormed, PairFormed, MatchingCompleted, MatchingCompleted]
    assert [type(e) for e in uow.emitted] == kinds
    assert [e.pairs_formed for e in uow.emitted if isinstance(e, MatchingCompleted)] == [2, 0]
    assert [mentee for *_, mentee, _ in await pair_rows(db)] == ["e-1", "e-2"]


async def test_matching_completed_counts_every_unmatched_mentee_and_names_at_most_100(db):
    mentees = [registered("prog", f"e-{i:03}") for i in range(150)]
    await register_all(db, registered("prog", "m-1", role=Role.MENTOR), *mentees)
    uow = await db.apply(on_matching_requested, requested("prog", "r1"))
    [pair] = formed(uow)
    outcome = completed(uow)
    unmatched = sorted(e.participant_id for e in mentees if e.participant_id != pair.mentee_id)
    assert outcome.unmatched_mentees == 149
    assert outcome.unmatched_mentee_ids == unmatched[: rounds.UNMATCHED_SAMPLE]
    assert len(outcome.unmatched_mentee_ids) == 100


class RecordingPool(CpuPool):
    """A real worker process that also notes which functions it was given."""

    def __init__(self) -> None:
        super().__init__(1)
        self.ran: list[Callable[..., Any]] = []

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.ran.append(fn)
        return await super().run(fn, *args)


async def test_matching_runs_in_the_cpu_pool_with_the_result_of_running_it_inline(db):
    await register_all(
        db,
        registered("prog", "m-ber", role=Role.MENTOR, capacity=2, offered=("python", "sql")),
        registered("prog", "m-nyc", role=Role.MENTOR, timezone="America/New_York", offered=("go",)),
        registered("prog", "m-es", role=Role.MENTOR, languages=("es",), capacity=2),
        registered("prog", "e-1", sought=("go",), timezone="America/Chicago"),
        registered("prog", "e-2", sought=("sql",)),
        registered("prog", "e-3", languages=("es", "en"), start=13, end=18),
        registered("prog", "e-4", timezone="Asia/Kolkata", start=10, end=14),
        registered("prog", "e-5", languages=("ja",)),
        registered("prog", "e-6", sought=("python",), timezone="Europe/Lisbon"),
    )
    async with db.sessions() as session:
        standing = rounds.Standing(
            mentors=await store.active_profiles(session, program_id="prog", role=Role.MENTOR),
            mentees=await store.active_profiles(session, program_id="prog", role=Role.MENTEE),
            pairings=(),
            week_of=db.clock.now().date(),
        )
    inline = rounds.match(standing)
    pool = RecordingPool()
    try:
        async with unit_of_work(
            sessions=db.sessions,
            tables=db.tables,
            clock=db.clock,
            settings=db.settings,
            source=db.source,
            cpu=pool,
        ) as uow:
            await on_matching_requested(requested("prog", "r1"), uow)
    finally:
        pool.close()
    assert pool.ran == [rounds.timed_match]
    assert [(p.mentor_id, p.mentee_id, p.language, p.reasons) for p in formed(uow)] == [
        (p.mentor_id, p.mentee_id, p.language, list(p.reasons)) for p in inline.pairs
    ]
    assert completed(uow).unmatched_mentee_ids == inline.unmatched_mentee_ids
    assert len(inline.pairs) >= 3 and inline.unmatched_mentee_ids  # a round worth comparing


async def test_pairs_store_under_the_program_and_pair_id(db):
    await register_all(db, registered("prog", "m-1", role=Role.MENTOR), registered("prog", "e-1"))
    await db.apply(on_matching_requested, requested("prog", "r1"))
    async with db.sessions() as session:
        pair = await session.get(store.Pair, ("prog", rounds.pair_id("prog", "r1", "e-1")))
        rounds_run = await session.scalar(select(func.count()).select_from(store.MatchingRound))
    assert pair is not None
    # SQLite hands back naive datetimes; the instant is the clock's
    assert (pair.round_id, pair.formed_at.replace(tzinfo=dt.UTC)) == ("r1", START)
    assert rounds_run == 1
