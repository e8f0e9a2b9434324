"""pairing against a real nats-server and database: registrations then matching, as events."""

from __future__ import annotations

from services.pairing.app import definition
from tests.support.factories import envelope, publish, registration
from tests.support.waiting import bodies_on, eventually, running, settings_for, subject_counts

REGISTERED = "mentorship.participant.registered"


async def _completed(js) -> bool:
    return (await subject_counts(js)).get("mentorship.matching.completed", 0) == 1


async def test_matching_waits_for_every_registration_published_before_it(
    tmp_path, nats_server, js, database_url
):
    settings = settings_for(tmp_path, nats_server.url, database_url)
    async with running(definition(settings), settings):
        for i in range(10):
            await publish(
                js, REGISTERED, registration("prog", f"mentor-{i}", role="mentor", capacity=3)
            )
        for i in range(30):
            await publish(js, REGISTERED, registration("prog", f"mentee-{i}"))
        # no pause: the request is on another subject, consumed by another durable consumer
        await publish(js, "mentorship.matching.requested", envelope("prog", round_id="r1"))
        await eventually(lambda: _completed(js), what="matching.completed")
        [completed] = await bodies_on(js, "mentorship.matching.completed")
        assert completed["pairs_formed"] == 30
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
    async with running(definition(settings), settings) as rt:
        await publish(js, REGISTERED, registration("prog", "m", role="mentor", capacity=1))
        await publish(js, REGISTERED, registration("prog", "e"))
        request = envelope("prog", round_id="r1")
        await publish(js, "mentorship.matching.requested", request)
        await eventually(lambda: _completed(js), what="the first round")
        # the same round asked again as a new event: the round already ran
        await publish(js, "mentorship.matching.requested", envelope("prog", round_id="r1"))

        async def handled_both() -> bool:
            return rt.consumers.processed == 4

        await eventually(handled_both, what="the second request")
        assert (await subject_counts(js)).get("mentorship.pair.formed") == 1
