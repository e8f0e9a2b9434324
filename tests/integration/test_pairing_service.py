"""pairing against a real nats-server and database: registrations then matching, as events."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from services.pairing import store
from services.pairing.app import definition
from shared.service import Running
from tests.support.factories import envelope, publish, registration
from tests.support.waiting import (
    bodies_on,
    eventually,
    messages_on,
    running,
    settings_for,
    subject_counts,
)

REGISTERED = "mentorship.participant.registered"
REQUESTED = "mentorship.matching.requested"


async def _completed(js: Any) -> bool:
    return (await subject_counts(js)).get("mentorship.matching.completed", 0) == 1


async def _outbox(rt: Running) -> list[str]:
    """The subject of every row in the service's outbox, in order."""
    outbox = rt.tables.outbox
    async with rt.sessions() as session:
        return list(await session.scalars(select(outbox.c.subject).order_by(outbox.c.id)))


async def _profile(rt: Running, program_id: str, participant_id: str) -> dict[str, Any] | None:
    async with rt.sessions() as session:
        row = await session.get(store.Participant, (program_id, participant_id))
        if row is None:
            return None
        return {c.key: getattr(row, c.key) for c in store.Participant.__table__.columns}


async def _dead_letters(js: Any) -> list[Any]:
    counts = await subject_counts(js)
    return [
        message
        for subject in sorted(counts)
        if subject.startswith("mentorship.dlq.")
        for message in await messages_on(js, subject)
    ]


async def test_matching_waits_for_every_registration_published_before_it(
    tmp_path, nats_server, js, database_url
):
    settings = settings_for(tmp_path, nats_server.url, database_url)
    async with running(definition(), settings):
        for i in range(10):
            await publish(
                js, REGISTERED, registration("prog", f"mentor-{i}", role="mentor", capacity=3)
            )
        for i in range(30):
            await publish(js, REGISTERED, registration("prog", f"mentee-{i}"))
        # no pause: the request is on another subject, consumed by another durable consumer
        await publish(js, REQUESTED, envelope("prog", round_id="r1"))
        await eventually(lambda: _completed(js), what="matching.completed")
        [completed] = await bodies_on(js, "mentorship.matching.completed")
        assert completed["pairs_formed"] == 30
        assert completed["unmatched_mentees"] == 0
        assert completed["unmatched_mentee_ids"] == []
        pairs = await bodies_on(js, "mentorship.pair.formed")
        assert len({p["mentee_id"] for p in pairs}) == 30
        load: dict[str, int] = {}
        for p in pairs:
            load[p["mentor_id"]] = load.get(p["mentor_id"], 0) + 1
        assert max(load.values()) <= 3


async def test_a_repeated_matching_request_forms_no_second_set_of_pairs(
    tmp_path, nats_server, js, database_url
):
    settings = settings_for(tmp_path, nats_server.url, database_url)
    async with running(definition(), settings) as rt:
        await publish(js, REGISTERED, registration("prog", "m", role="mentor", capacity=1))
        await publish(js, REGISTERED, registration("prog", "e"))
        await publish(js, REQUESTED, envelope("prog", round_id="r1"))
        await eventually(lambda: _completed(js), what="the first round")
        # the same round asked again as a new event: the round already ran
        await publish(js, REQUESTED, envelope("prog", round_id="r1"))

        async def handled_both() -> bool:
            return rt.consumers.processed == 4

        await eventually(handled_both, what="the second request")
        # its transaction committed: had it formed anything, the rows would be here
        assert await _outbox(rt) == ["mentorship.pair.formed", "mentorship.matching.completed"]
        async with rt.sessions() as session:
            assert len((await session.scalars(select(store.Pair))).all()) == 1
        counts = await subject_counts(js)
        assert (counts["mentorship.pair.formed"], counts["mentorship.matching.completed"]) == (1, 1)


async def test_an_update_naming_another_programs_participant_is_dead_lettered_unapplied(
    tmp_path, nats_server, js, database_url
):
    settings = settings_for(tmp_path, nats_server.url, database_url)
    async with running(definition(), settings) as rt:
        await publish(js, REGISTERED, registration("prog-a", "p-1", skills_sought=["sql"]))

        async def registered() -> bool:
            return await _profile(rt, "prog-a", "p-1") is not None

        await eventually(registered, what="p-1 registered in prog-a")
        before = await _profile(rt, "prog-a", "p-1")
        await publish(
            js,
            "mentorship.participant.updated",
            envelope("prog-b", participant_id="p-1", skills_sought=["go"]),
        )

        async def dead_lettered() -> bool:
            return len(await _dead_letters(js)) == 1

        await eventually(dead_lettered, what="the update's dead letter")
        [letter] = await _dead_letters(js)
        assert any("belongs to another program" in v for v in (letter.headers or {}).values())
        assert await _profile(rt, "prog-a", "p-1") == before
        assert await _profile(rt, "prog-b", "p-1") is None


async def test_a_round_keeps_the_avoid_lists_and_seniority_gaps_the_profiles_carry(
    tmp_path, nats_server, js, database_url
):
    settings = settings_for(tmp_path, nats_server.url, database_url)
    async with running(definition(), settings) as rt:
        # "near" offers what e2 seeks, but e2 must never be paired with "near"
        await publish(
            js,
            REGISTERED,
            registration("prog", "near", role="mentor", capacity=1, skills_offered=["python"]),
        )
        await publish(js, REGISTERED, registration("prog", "far", role="mentor", capacity=1))
        await publish(js, REGISTERED, registration("prog", "e1"))
        avoiding = registration(
            "prog", "e2", skills_sought=["python"], avoid=["near"], seniority=3, goals=["Lead"],
            preferred_channels=["chat"],
        )  # fmt: skip
        await publish(js, REGISTERED, avoiding)
        # the seniority gap: "young" is 2 years above e3 (inside the default 2-10), "old" 28
        await publish(js, REGISTERED, registration("p2", "old", role="mentor", seniority=31))
        await publish(js, REGISTERED, registration("p2", "young", role="mentor", seniority=5))
        await publish(js, REGISTERED, registration("p2", "e3", seniority=3))
        await publish(js, REQUESTED, envelope("prog", round_id="r1"))
        await publish(js, REQUESTED, envelope("p2", round_id="r1"))

        async def both() -> bool:
            counts = await subject_counts(js)
            return counts.get("mentorship.matching.completed", 0) == 2

        await eventually(both, what="both rounds")
        formed = await bodies_on(js, "mentorship.pair.formed")
        pairs = {p["mentee_id"]: p["mentor_id"] for p in formed}
        assert pairs == {"e1": "near", "e2": "far", "e3": "young"}
        stored = await _profile(rt, "prog", "e2")
        assert stored is not None
        assert (stored["seniority"], stored["avoid"], stored["goals"], stored["channels"]) == (
            3, ["near"], ["Lead"], ["chat"]
        )  # fmt: skip
