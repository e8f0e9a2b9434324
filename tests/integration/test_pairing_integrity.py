"""pairing's integrity under races: two replicas on one PostgreSQL database, concurrent rounds.

The database enforces it (a unique open pair per mentee, a mentor's slots taken by a checked
counter in the round's transaction): the round that loses the race is retried on what the
winner committed, so the program ends with every mentee paired once and no mentor over capacity.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from services.pairing import rounds, store
from services.pairing.app import definition
from shared.clock import FixedClock
from shared.db import make_engine, make_sessions
from shared.service import Running
from tests.integration.test_pairing_consent import NOW, answer, pairing, reached, token
from tests.support.factories import envelope, publish, registration
from tests.support.waiting import bodies_on, eventually, running, settings_for, subject_counts

REGISTERED = "mentorship.participant.registered"
REQUESTED = "mentorship.matching.requested"
MENTORS, CAPACITY, MENTEES, ROUNDS = 20, 3, 60, 4


@pytest.fixture
def postgres_url(database_url: str | None) -> str:
    if database_url is None:
        pytest.skip("two replicas share one database only on PostgreSQL")
    return database_url


async def _open_pairs(rt: Running) -> list[tuple[str, str]]:
    async with rt.sessions() as session:
        rows = await session.execute(
            select(store.Pair.mentor_id, store.Pair.mentee_id).where(
                store.Pair.status.in_(rounds.OPEN)
            )
        )
        return [(mentor, mentee) for mentor, mentee in rows]


async def _registered(rt: Running, count: int) -> bool:
    async with rt.sessions() as session:
        return len((await session.scalars(select(store.Participant.participant_id))).all()) == count


async def test_two_replicas_running_concurrent_rounds_never_pair_a_mentee_twice_nor_overfill(
    tmp_path, nats_server, js, postgres_url
):
    # one event per fetch: each replica takes its own round and they run at the same time
    one = settings_for(tmp_path / "one", nats_server.url, postgres_url, batch_size=1)
    two = settings_for(tmp_path / "two", nats_server.url, postgres_url, batch_size=1)
    async with running(definition(), one) as rt, running(definition(), two) as rt2:
        for i in range(MENTORS):
            await publish(
                js, REGISTERED, registration("prog", f"m-{i}", role="mentor", capacity=CAPACITY)
            )
        for i in range(MENTEES):
            await publish(js, REGISTERED, registration("prog", f"e-{i}"))
        await eventually(lambda: _registered(rt, MENTORS + MENTEES), what="every registration")
        for r in range(ROUNDS):
            await publish(js, REQUESTED, envelope("prog", round_id=f"r{r}"))

        async def all_completed() -> bool:
            counts = await subject_counts(js)
            return counts.get("mentorship.matching.completed", 0) == ROUNDS

        await eventually(all_completed, timeout=90, what=f"{ROUNDS} matching.completed")
        pairs = await _open_pairs(rt)
        assert rt.consumers.processed > 0 and rt2.consumers.processed > 0
    mentees = Counter(mentee for _, mentee in pairs)
    load = Counter(mentor for mentor, _ in pairs)
    assert len(mentees) == MENTEES and max(mentees.values()) == 1
    assert max(load.values()) <= CAPACITY
    completed: list[dict[str, Any]] = await bodies_on(js, "mentorship.matching.completed")
    assert sum(c["pairs_formed"] for c in completed) == MENTEES
    formed = await bodies_on(js, "mentorship.pair.formed")
    assert sorted((p["mentor_id"], p["mentee_id"]) for p in formed) == sorted(pairs)
    async with rt.sessions() as session:
        slots = dict(
            (await session.execute(
                select(store.Participant.participant_id, store.Participant.active_pairs).where(
                    store.Participant.role == "mentor"
                )
            )).tuples().all()
        )  # fmt: skip
    assert slots == {f"m-{i}": load.get(f"m-{i}", 0) for i in range(MENTORS)}


async def test_two_replicas_answering_proposals_at_once_form_each_once_and_rematch_within_capacity(
    tmp_path, nats_server, js, postgres_url
):
    # both people of each proposal answer at the same instant, each through another replica
    conf = {"pairing_consent_required": True}
    one = settings_for(tmp_path / "one", nats_server.url, postgres_url, **conf)
    two = settings_for(tmp_path / "two", nats_server.url, postgres_url, **conf)
    mentors, mentees = 10, 16
    async with pairing(one, FixedClock(NOW)) as a, pairing(two, FixedClock(NOW)) as b:
        for i in range(mentors):
            await publish(js, REGISTERED, registration("prog", f"m-{i}", role="mentor", capacity=2))
        for i in range(mentees):
            await publish(js, REGISTERED, registration("prog", f"e-{i}"))
        await publish(js, REQUESTED, envelope("prog", round_id="r1"))
        await reached(js, "matching.completed", 1)
        proposals = await bodies_on(js, "mentorship.pair.proposed")
        assert len(proposals) == mentees
        later = NOW + dt.timedelta(days=3)

        async def both_answer(p: dict[str, Any], mentee_accepts: bool) -> list[int]:
            mentee_says = "accept" if mentee_accepts else "decline"
            replies = await asyncio.gather(
                answer(a, token(one, p, p["mentor_id"], later), "accept"),
                answer(b, token(two, p, p["mentee_id"], later), mentee_says),
            )
            return [r.status_code for r in replies]

        # half accepted by both, half declined by the mentee while the mentor accepts
        codes = await asyncio.gather(*(both_answer(p, i % 2 == 0) for i, p in enumerate(proposals)))
        assert all(code in (200, 409) for pair in codes for code in pair), codes
        await reached(js, "pair.formed", mentees // 2)
        await reached(js, "pair.declined", mentees // 2)
        await reached(js, "pair.proposed", mentees + mentees // 2)  # each decline re-matched
        formed = await bodies_on(js, "mentorship.pair.formed")
        engine = make_engine(postgres_url, schema="pairing")
        async with make_sessions(engine)() as session:
            rows = (await session.execute(
                select(store.Pair.mentor_id, store.Pair.mentee_id, store.Pair.status)
            )).tuples().all()  # fmt: skip
            slots = dict(
                (await session.execute(
                    select(store.Participant.participant_id, store.Participant.active_pairs)
                    .where(store.Participant.role == "mentor")
                )).tuples().all()
            )  # fmt: skip
        await engine.dispose()
    accepted = {p["pair_id"] for i, p in enumerate(proposals) if i % 2 == 0}
    assert sorted(f["pair_id"] for f in formed) == sorted(accepted)  # each formed exactly once
    open_pairs = [(mentor, mentee) for mentor, mentee, status in rows if status in rounds.OPEN]
    assert max(Counter(mentee for _, mentee in open_pairs).values()) == 1
    assert len(open_pairs) == mentees
    load = Counter(mentor for mentor, _ in open_pairs)
    assert max(load.values()) <= 2
    assert slots == {f"m-{i}": load.get(f"m-{i}", 0) for i in range(mentors)}
