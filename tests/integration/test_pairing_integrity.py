"""pairing's integrity under races: two replicas on one PostgreSQL database, concurrent rounds.

The database enforces it (a unique open pair per mentee, a mentor's slots taken by a checked
counter in the round's transaction): the round that loses the race is retried on what the
winner committed, so the program ends with every mentee paired once and no mentor over capacity.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from services.pairing import rounds, store
from services.pairing.app import definition
from shared.service import Running
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
