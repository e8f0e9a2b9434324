"""The database's own guards on pairs (SQLite here; PostgreSQL in the two-replica race test)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from services.pairing import profiles, rounds, store
from services.pairing.handlers import on_matching_requested
from shared.events import Role
from tests.support.handlers import START, HandlerDb, handler_db
from tests.unit.pairing.test_handlers import formed, register_all, registered, requested


@pytest.fixture
async def db(tmp_path: Path):
    async with handler_db(store.Base.metadata, store.delivery, tmp_path) as db:
        yield db


def pair(mentor: str, mentee: str, status: str = rounds.ACTIVE) -> store.Pair:
    return store.Pair(
        program_id="prog",
        pair_id=f"{mentor}-{mentee}-{status}",
        round_id="r",
        mentor_id=mentor,
        mentee_id=mentee,
        language="en",
        status=status,
        formed_at=START,
    )


async def slots(db: HandlerDb, mentor: str) -> int:
    async with db.sessions() as session:
        row = await store.participant_or_raise(session, program_id="prog", participant_id=mentor)
        return row.active_pairs


async def test_a_mentee_cannot_have_a_second_open_pair(db):
    async with db.unit_of_work() as uow:
        uow.session.add(pair("m-1", "e-1", rounds.PROPOSED))
    with pytest.raises(IntegrityError):
        async with db.unit_of_work() as uow:
            uow.session.add(pair("m-2", "e-1"))
    async with db.unit_of_work() as uow:  # a closed pair does not count
        uow.session.add(pair("m-3", "e-2", rounds.DECLINED))
        uow.session.add(pair("m-2", "e-2"))


async def test_a_mentor_and_mentee_are_paired_once_even_after_their_pair_ended(db):
    async with db.unit_of_work() as uow:
        uow.session.add(pair("m-1", "e-1", rounds.ENDED))
    with pytest.raises(IntegrityError):
        async with db.unit_of_work() as uow:
            uow.session.add(pair("m-1", "e-1", rounds.ACTIVE))


async def test_taking_more_slots_than_capacity_fails_and_takes_none(db):
    await register_all(db, registered("prog", "m-1", role=Role.MENTOR, capacity=2))
    async with db.unit_of_work() as uow:
        await store.take_slots(uow.session, program_id="prog", mentor_ids=["m-1"])
    with pytest.raises(store.SlotTaken, match="no 2 free slot"):
        async with db.unit_of_work() as uow:
            await store.take_slots(uow.session, program_id="prog", mentor_ids=["m-1", "m-1"])
    assert await slots(db, "m-1") == 1
    async with db.unit_of_work() as uow:
        await store.free_slot(uow.session, program_id="prog", mentor_id="m-1")
        await store.free_slot(uow.session, program_id="prog", mentor_id="m-1")  # never below 0
    assert await slots(db, "m-1") == 0


async def test_slots_of_thousands_of_mentors_are_taken_together_or_not_at_all(db):
    many = store.SLOT_CHUNK + 200  # more mentors than one statement takes
    mentors = [f"m-{i:04}" for i in range(many)]
    async with db.unit_of_work() as uow:
        for mentor in mentors:
            event = registered("prog", mentor, role=Role.MENTOR, capacity=2)
            store.register_participant(
                uow, program_id="prog", participant_id=mentor, profile=profiles.registered(event)
            )
    async with db.unit_of_work() as uow:  # one slot each, and a second for every tenth
        await store.take_slots(uow.session, program_id="prog", mentor_ids=mentors + mentors[::10])
    assert [await slots(db, m) for m in ("m-0000", "m-0001", "m-0010", mentors[-1])] == [2, 1, 2, 1]
    # one more each: every tenth is full (120 of them, in both statements), so nothing is taken
    with pytest.raises(store.SlotTaken, match=r"'m-0000' and 119 more .* no 1 free slot"):
        async with db.unit_of_work() as uow:
            await store.take_slots(uow.session, program_id="prog", mentor_ids=mentors)
    assert [await slots(db, m) for m in ("m-0000", "m-0001", mentors[-1])] == [2, 1, 1]
    async with db.unit_of_work() as uow:  # a slot back and another taken, in one call
        await store.change_slots(
            uow.session, program_id="prog", take=["m-0001", "m-0002"], free=["m-0000", "m-0002"]
        )
    assert [await slots(db, m) for m in ("m-0000", "m-0001", "m-0002")] == [1, 2, 1]


async def test_profiles_read_for_a_round_share_equal_availabilities(db):
    await register_all(
        db,
        registered("prog", "e-1"),
        registered("prog", "e-2"),
        registered("prog", "e-3", timezone="Asia/Tokyo"),
    )
    async with db.sessions() as session:
        one, two, three = await store.active_profiles(session, program_id="prog", role=Role.MENTEE)
        row = await store.participant_or_raise(session, program_id="prog", participant_id="e-3")
    assert one.availability is two.availability and one.availability != three.availability
    assert store.profile(row) == three  # the same profile from the ORM row (a re-match)
    assert three.availability.timezone == "Asia/Tokyo" and three.languages == ("en",)


async def test_a_round_counts_its_pairs_against_the_mentors_slots(db):
    await register_all(
        db,
        registered("prog", "m-1", role=Role.MENTOR, capacity=2),
        *(registered("prog", f"e-{i}") for i in range(3)),
    )
    uow = await db.apply(on_matching_requested, requested("prog", "r1"))
    assert len(formed(uow)) == 2
    assert await slots(db, "m-1") == 2


async def test_a_round_never_proposes_a_pair_that_was_declined(db):
    await register_all(
        db,
        registered("prog", "m-1", role=Role.MENTOR, offered=("go",)),
        registered("prog", "m-2", role=Role.MENTOR),
        registered("prog", "e-1", sought=("go",)),
    )
    async with db.unit_of_work() as uow:
        uow.session.add(pair("m-1", "e-1", rounds.DECLINED))
    uow = await db.apply(on_matching_requested, requested("prog", "r1"))
    assert [(p.mentor_id, p.mentee_id) for p in formed(uow)] == [("m-2", "e-1")]
    async with db.sessions() as session:
        statuses = (await session.scalars(select(store.Pair.status))).all()
    assert sorted(statuses) == [rounds.ACTIVE, rounds.DECLINED]
