"""The early fit check: both people's first ratings (feedback.given); a poor fit ends the pair and
re-matches the mentee, a good one leaves it."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.pairing import rounds, store
from services.pairing.handlers import on_feedback_given, on_matching_requested
from shared.events import FeedbackGiven, PairEnded, PairFormed, Role
from tests.support.handlers import START, HandlerDb, handler_db
from tests.unit.pairing.test_handlers import formed, register_all, registered, requested


@pytest.fixture
async def db(tmp_path: Path):
    async with handler_db(store.Base.metadata, store.delivery, tmp_path) as db:
        yield db


def rated(pair: PairFormed, by: str, about: str, rating: int) -> FeedbackGiven:
    return FeedbackGiven(
        program_id="prog", occurred_at=START, pair_id=pair.pair_id, from_id=by, about_id=about,
        rating=rating,
    )  # fmt: skip


async def status(db: HandlerDb, pair_id: str) -> str:
    async with db.sessions() as session:
        return (await store.pair_or_raise(session, program_id="prog", pair_id=pair_id)).status


async def first_pair(db: HandlerDb) -> PairFormed:
    await register_all(
        db,
        registered("prog", "m-go", role=Role.MENTOR, offered=("go",)),
        registered("prog", "m-2", role=Role.MENTOR),
        registered("prog", "e-1", sought=("go",)),
    )
    [pair] = formed(await db.apply(on_matching_requested, requested("prog", "r1")))
    assert pair.mentor_id == "m-go"
    return pair


async def test_a_poor_first_rating_from_either_side_ends_the_pair_and_rematches_the_mentee(db):
    pair = await first_pair(db)
    one = await db.apply(on_feedback_given, rated(pair, "e-1", "m-go", 2))
    assert one.emitted == []  # the other has not rated yet
    uow = await db.apply(on_feedback_given, rated(pair, "m-go", "e-1", 5))
    ended, again = uow.emitted
    assert isinstance(ended, PairEnded) and "early fit check" in (ended.reason or "")
    assert isinstance(again, PairFormed) and (again.mentee_id, again.mentor_id) == ("e-1", "m-2")
    assert await status(db, pair.pair_id) == rounds.ENDED
    async with db.sessions() as session:
        for mentor, slots in (("m-go", 0), ("m-2", 1)):
            row = await store.participant_or_raise(
                session, program_id="prog", participant_id=mentor
            )
            assert row.active_pairs == slots


async def test_good_ratings_keep_the_pair_and_only_first_ratings_count(db):
    pair = await first_pair(db)
    await db.apply(on_feedback_given, rated(pair, "e-1", "m-go", 4))
    assert (await db.apply(on_feedback_given, rated(pair, "m-go", "e-1", 3))).emitted == []
    later = await db.apply(on_feedback_given, rated(pair, "e-1", "m-go", 1))
    assert later.emitted == [] and await status(db, pair.pair_id) == rounds.ACTIVE
