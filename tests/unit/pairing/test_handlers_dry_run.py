"""A dry run of a round: the outcome it would have, announced, and nothing kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from services.pairing import store
from services.pairing.handlers import on_matching_requested
from shared.events import MatchingCompleted, MatchingRequested, Role
from tests.support.handlers import START, handler_db
from tests.unit.pairing.test_handlers import formed, register_all, registered


@pytest.fixture
async def db(tmp_path: Path):
    async with handler_db(store.Base.metadata, store.delivery, tmp_path) as db:
        yield db


async def test_a_dry_run_announces_the_would_be_counts_and_forms_nothing(db):
    await register_all(
        db,
        registered("prog", "m-1", role=Role.MENTOR, capacity=2),
        *(registered("prog", f"e-{i}") for i in range(3)),
    )
    ask = MatchingRequested(program_id="prog", occurred_at=START, round_id="r1", dry_run=True)
    uow = await db.apply(on_matching_requested, ask)
    [preview] = uow.emitted
    assert isinstance(preview, MatchingCompleted) and preview.dry_run
    assert (preview.pairs_formed, preview.unmatched_mentees) == (2, 1)
    async with db.sessions() as session:
        for table in (store.Pair, store.MatchingRound):
            assert await session.scalar(select(func.count()).select_from(table)) == 0
    # the real round of the same id runs afterwards and forms what the preview said
    real = await db.apply(on_matching_requested, ask.model_copy(update={"dry_run": False}))
    assert len(formed(real)) == 2
