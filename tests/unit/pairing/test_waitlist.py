"""The waitlist from stored data: a mentee the last round left unmatched, and still unmatched,
is served first by the next round."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from services.pairing import rounds, store
from services.pairing.handlers import on_matching_requested
from shared.events import MatchingRequested, Role
from tests.support.handlers import START, HandlerDb, handler_db
from tests.unit.pairing.test_handlers import formed, register_all, registered, requested


@pytest.fixture
async def db(tmp_path: Path):
    async with handler_db(store.Base.metadata, store.delivery, tmp_path) as db:
        yield db


async def standing(db: HandlerDb) -> rounds.Standing:
    async with db.sessions() as session:
        return rounds.Standing(
            mentors=await store.active_profiles(session, program_id="prog", role=Role.MENTOR),
            mentees=await store.active_profiles(session, program_id="prog", role=Role.MENTEE),
            pairings=await store.active_pairings(session, program_id="prog"),
            week_of=START.date(),
            waitlisted=await store.waitlist(session, program_id="prog"),
        )


async def test_the_mentee_left_unmatched_last_round_is_served_first_by_the_next(db):
    # round 1: one mentor, two mentees; "late" shares only 5 h a week and loses to "full"
    await register_all(
        db,
        registered("prog", "m-1", role=Role.MENTOR),
        registered("prog", "full"),
        registered("prog", "late", start=9, end=10),
    )
    first = await db.apply(on_matching_requested, requested("prog", "r1"))
    assert [p.mentee_id for p in formed(first)] == ["full"]
    async with db.sessions() as session:
        assert await store.waitlist(session, program_id="prog") == ("late",)
        [stored] = await session.scalars(select(store.MatchingRound))
        assert stored.unmatched_mentee_ids == ["late"]

    # round 2: a new mentor and a new mentee who scores better with it than "late" does
    await register_all(db, registered("prog", "m-2", role=Role.MENTOR), registered("prog", "fresh"))
    now = await standing(db)
    assert now.waitlisted == ("late",)
    without = rounds.match(rounds.Standing(**{**now.__dict__, "waitlisted": ()}))
    assert [p.mentee_id for p in without.pairs] == ["fresh"]  # no waitlist: "late" waits again
    second = await db.apply(on_matching_requested, requested("prog", "r2"))
    assert [(p.mentor_id, p.mentee_id) for p in formed(second)] == [("m-2", "late")]
    async with db.sessions() as session:
        assert await store.waitlist(session, program_id="prog") == ("fresh",)


async def test_a_dry_run_keeps_the_waitlist_and_a_mentee_paired_since_leaves_it(db):
    await register_all(
        db,
        registered("prog", "m-1", role=Role.MENTOR),
        registered("prog", "full"),
        registered("prog", "late", start=9, end=10),
    )
    await db.apply(on_matching_requested, requested("prog", "r1"))
    await register_all(db, registered("prog", "m-2", role=Role.MENTOR))
    dry = MatchingRequested(program_id="prog", occurred_at=START, round_id="d", dry_run=True)
    await db.apply(on_matching_requested, dry)
    async with db.sessions() as session:
        assert await store.waitlist(session, program_id="prog") == ("late",)
    await db.apply(on_matching_requested, requested("prog", "r2"))  # pairs "late" with m-2
    async with db.sessions() as session:
        assert await store.waitlist(session, program_id="prog") == ()
