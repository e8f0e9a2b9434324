"""A round on the program's stored rules: the request's win, then the stored ones, then the
defaults; matching.completed says which."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.pairing import store
from services.pairing.handlers import on_matching_requested
from shared.events import MatchingRequested, Role, RoundRules
from shared.events.pairs import MenteeUnmatched
from tests.support.handlers import START, handler_db
from tests.unit.pairing.test_handlers import completed, formed, register_all, registered

# Berlin and New York share 10 working hours a week (600 minutes) in March 2027
FAR_APART = RoundRules(min_weekly_minutes=700)


@pytest.fixture
async def db(tmp_path: Path):
    async with handler_db(store.Base.metadata, store.delivery, tmp_path) as db:
        await register_all(
            db,
            registered("prog", "m-1", role=Role.MENTOR, capacity=2),
            registered("prog", "e-near"),
            registered("prog", "e-far", timezone="America/New_York"),
        )
        yield db


async def stored(db, rules: RoundRules | None) -> None:
    async with db.unit_of_work() as uow:
        if rules is None:
            await store.forget_program_rules(uow.session, program_id="prog")
        else:
            await store.store_program_rules(uow.session, program_id="prog", rules=rules, now=START)


def ask(round_id: str, rules: RoundRules | None = None) -> MatchingRequested:
    return MatchingRequested(
        program_id="prog", occurred_at=START, round_id=round_id, dry_run=True, rules=rules
    )


async def test_a_round_without_rules_uses_the_programs_stored_ones(db):
    await stored(db, FAR_APART)
    uow = await db.apply(on_matching_requested, ask("r1").model_copy(update={"dry_run": False}))
    assert [p.mentee_id for p in formed(uow)] == ["e-near"]
    [waiting] = [e for e in uow.emitted if isinstance(e, MenteeUnmatched)]
    assert (waiting.participant_id, waiting.reason) == ("e-far", "no_shared_time")
    assert "700" in waiting.detail
    assert completed(uow).rules_source == "program"


async def test_the_requests_rules_win_and_a_reset_program_is_back_on_the_defaults(db):
    await stored(db, FAR_APART)
    own = completed(await db.apply(on_matching_requested, ask("r1", RoundRules())))
    assert (own.rules_source, own.pairs_formed) == ("request", 2)
    await stored(db, RoundRules(min_weekly_minutes=60))
    changed = completed(await db.apply(on_matching_requested, ask("r2")))
    assert (changed.rules_source, changed.pairs_formed) == ("program", 2)  # replaced, not added
    await stored(db, None)
    reset = completed(await db.apply(on_matching_requested, ask("r3")))
    assert (reset.rules_source, reset.pairs_formed) == ("default", 2)
    async with db.sessions() as session:
        assert await store.program_rules(session, program_id="prog") is None
