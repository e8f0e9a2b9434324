"""Consent on a real SQLite database, without NATS: proposals, answers, expiry, re-matching."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select

from services.pairing import consent, rounds, store
from services.pairing.handlers import on_matching_requested
from shared.events import PairAccepted, PairDeclined, PairExpired, PairFormed, PairProposed, Role
from shared.timers import Due
from tests.support.handlers import START, HandlerDb, handler_db
from tests.unit.pairing.test_handlers import register_all, registered, requested


@pytest.fixture
async def db(tmp_path: Path):
    async with handler_db(
        store.Base.metadata, store.delivery, tmp_path, pairing_consent_required=True
    ) as db:
        yield db


async def propose(db: HandlerDb) -> dict[str, PairProposed]:
    await register_all(
        db,
        registered("prog", "m-go", role=Role.MENTOR, offered=("go",)),
        registered("prog", "m-2", role=Role.MENTOR),
        registered("prog", "m-3", role=Role.MENTOR),
        registered("prog", "e-1", sought=("go",)),
        registered("prog", "e-2"),
    )
    uow = await db.apply(on_matching_requested, requested("prog", "r1"))
    return {e.mentee_id: e for e in uow.emitted if isinstance(e, PairProposed)}


async def answer(db: HandlerDb, proposal: PairProposed, who: str, accept: bool):
    async with db.unit_of_work() as uow:
        reply = await consent.answer(
            uow, program_id="prog", pair_id=proposal.pair_id, participant_id=who, accept=accept
        )
    return reply, uow.emitted


async def pairs(db: HandlerDb) -> dict[tuple[str, str], str]:
    async with db.sessions() as session:
        rows = await session.execute(
            select(store.Pair.mentor_id, store.Pair.mentee_id, store.Pair.status)
        )
        return {(mentor, mentee): status for mentor, mentee, status in rows}


async def pending_timers(db: HandlerDb) -> list[str]:
    async with db.sessions() as session:
        rows = await session.execute(
            select(store.timers.c.key).where(store.timers.c.status == "pending")
        )
        return sorted(key for (key,) in rows)


async def test_a_round_with_consent_proposes_with_a_deadline_and_arms_its_expiry(db):
    proposals = await propose(db)
    assert sorted(proposals) == ["e-1", "e-2"] and proposals["e-1"].mentor_id == "m-go"
    assert {p.expires_at for p in proposals.values()} == {START + dt.timedelta(hours=72)}
    assert set((await pairs(db)).values()) == {rounds.PROPOSED}
    assert await pending_timers(db) == sorted(p.pair_id for p in proposals.values())


async def test_the_pair_forms_only_when_both_accept_and_its_expiry_is_disarmed(db):
    proposal = (await propose(db))["e-1"]
    reply, emitted = await answer(db, proposal, "e-1", True)
    assert reply.status == 200 and [type(e) for e in emitted] == [PairAccepted]
    reply, emitted = await answer(db, proposal, "m-go", True)
    assert [type(e) for e in emitted] == [PairAccepted, PairFormed]
    assert (await pairs(db))[("m-go", "e-1")] == rounds.ACTIVE
    assert proposal.pair_id not in await pending_timers(db)
    again, emitted = await answer(db, proposal, "m-go", True)
    assert (again.status, emitted) == (200, [])
    refused, _ = await answer(db, proposal, "m-go", False)
    assert refused.status == 409


async def test_a_decline_frees_the_slot_and_rematches_that_mentee_alone(db):
    proposals = await propose(db)
    before = await pairs(db)
    declined = proposals["e-2"]
    _, emitted = await answer(db, declined, "e-2", False)
    assert [type(e) for e in emitted] == [PairDeclined, PairProposed]
    rematch = emitted[1]
    assert isinstance(rematch, PairProposed) and rematch.replaces_pair_id == declined.pair_id
    assert rematch.mentor_id not in ("m-go", declined.mentor_id)
    after = await pairs(db)
    assert after[("m-go", "e-1")] == before[("m-go", "e-1")] == rounds.PROPOSED
    assert after[(declined.mentor_id, "e-2")] == rounds.DECLINED
    async with db.sessions() as session:
        slots = dict(
            (await session.execute(
                select(store.Participant.participant_id, store.Participant.active_pairs)
            )).tuples().all()
        )  # fmt: skip
    assert slots[declined.mentor_id] == 0 and slots[rematch.mentor_id] == 1


async def test_an_expired_proposal_announces_pair_expired_for_the_silent_one_only(db):
    proposals = await propose(db)
    await answer(db, proposals["e-1"], "e-1", True)
    await answer(db, proposals["e-1"], "m-go", True)
    await answer(db, proposals["e-2"], "e-2", True)  # the mentee accepted, the mentor is silent
    for proposal in proposals.values():
        item = Due("prog", consent.PROPOSAL_EXPIRY, proposal.pair_id, START, {}, 1, START, "t")
        async with db.unit_of_work() as uow:
            await consent.on_proposal_expired(item, uow)
        expired = [e for e in uow.emitted if isinstance(e, PairExpired)]
        if proposal.mentee_id == "e-1":
            assert uow.emitted == []  # formed meanwhile: nothing to expire
        else:
            assert not any(isinstance(e, PairDeclined) for e in uow.emitted)
            [event] = expired
            assert (event.pair_id, event.mentee_id) == (proposal.pair_id, "e-2")
            assert event.silent == [proposal.mentor_id]
            assert "no answer within 72 hours" in (event.reason or "")
    assert (await pairs(db))[(proposals["e-2"].mentor_id, "e-2")] == rounds.EXPIRED
