"""pair.paused / pair.resumed / pair.ended as pairing applies them: an open pair keeps its slot
and mentee; an ended one frees both and is never formed again."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.pairing import rounds, store
from services.pairing.handlers import (
    on_matching_requested,
    on_pair_ended,
    on_pair_paused,
    on_pair_resumed,
)
from shared.errors import UnknownReference
from shared.events import PairEnded, PairPaused, PairResumed, Role
from tests.support.handlers import START, HandlerDb, handler_db
from tests.unit.pairing.test_handlers import formed, register_all, registered, requested


@pytest.fixture
async def db(tmp_path: Path):
    async with handler_db(store.Base.metadata, store.delivery, tmp_path) as db:
        yield db


async def status_and_slots(db: HandlerDb, pair_id: str, mentor: str) -> tuple[str, int]:
    async with db.sessions() as session:
        pair = await store.pair_or_raise(session, program_id="prog", pair_id=pair_id)
        row = await store.participant_or_raise(session, program_id="prog", participant_id=mentor)
        return pair.status, row.active_pairs


async def test_pause_resume_and_end_move_the_pair_and_only_an_end_frees_its_slot(db):
    await register_all(
        db,
        registered("prog", "m-go", role=Role.MENTOR, offered=("go",)),
        registered("prog", "m-2", role=Role.MENTOR),
        registered("prog", "e-1", sought=("go",)),
    )
    [pair] = formed(await db.apply(on_matching_requested, requested("prog", "r1")))
    assert pair.mentor_id == "m-go"
    ids = {"program_id": "prog", "occurred_at": START, "pair_id": pair.pair_id}
    await db.apply(on_pair_paused, PairPaused(**ids, reason="parental leave"))
    assert await status_and_slots(db, pair.pair_id, "m-go") == (rounds.PAUSED, 1)
    # a paused pair is still open: the next round leaves its mentee alone
    assert formed(await db.apply(on_matching_requested, requested("prog", "r2"))) == []
    await db.apply(on_pair_resumed, PairResumed(**ids))
    assert await status_and_slots(db, pair.pair_id, "m-go") == (rounds.ACTIVE, 1)
    await db.apply(on_pair_ended, PairEnded(**ids, reason="goals reached"))
    assert await status_and_slots(db, pair.pair_id, "m-go") == (rounds.ENDED, 0)
    await db.apply(on_pair_ended, PairEnded(**ids))  # again: nothing more to free
    assert await status_and_slots(db, pair.pair_id, "m-go") == (rounds.ENDED, 0)
    # the mentee is free again, but never with the mentor of the pair that ended
    [again] = formed(await db.apply(on_matching_requested, requested("prog", "r3")))
    assert (again.mentee_id, again.mentor_id) == ("e-1", "m-2")


async def test_an_event_about_a_pair_pairing_never_formed_is_an_unknown_reference(db):
    await register_all(db, registered("prog", "m-1", role=Role.MENTOR))
    with pytest.raises(UnknownReference, match=r"publish matching\.requested first"):
        await db.apply(
            on_pair_ended, PairEnded(program_id="prog", occurred_at=START, pair_id="nope")
        )
