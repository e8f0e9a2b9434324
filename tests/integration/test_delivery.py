"""Delivery guarantees of shared/bus, outbox and consumer, against a real nats-server."""

from __future__ import annotations

import json

import nats
from sqlalchemy import func, select

from shared.bus import (
    MSG_ID,
    STREAM,
    consumer_config,
    durable_name,
    ensure_consumer,
    publish_acked,
    replay_subject,
)
from shared.clock import SystemClock
from shared.deadletters import list_dead_letters, replay_dead_letter
from shared.events import OpportunityOffered, ParticipantRegistered
from shared.outbox import backlog
from tests.integration.probe import Effect, Faults, probe_definition, tables
from tests.support.factories import envelope, publish, registration
from tests.support.waiting import (
    bodies_on,
    emit_standalone,
    eventually,
    running,
    settings_for,
    subject_counts,
)

REGISTERED = "mentorship.participant.registered"
UPDATED = "mentorship.participant.updated"
OFFERED = "mentorship.opportunity.offered"


async def _effects(rt, kind: str = "registered") -> int:
    async with rt.sessions() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(Effect).where(Effect.kind == kind)
            )
            or 0
        )


async def test_redelivered_event_applies_its_effect_once(tmp_path, nats_server, js, database_url):
    settings = settings_for(tmp_path, nats_server.url, database_url)
    async with running(probe_definition(Faults()), settings) as rt:
        body = registration("p1", "ann")
        await publish(js, REGISTERED, body)
        # the same event again under another message id: what a redelivery looks like to a consumer
        await publish(js, REGISTERED, body, msg_id=body["event_id"] + "-again")
        await eventually(lambda: _counted(rt, 1, duplicates=1), what="one effect, one duplicate")
        await eventually(lambda: _published(js, OFFERED, 1), what="one event emitted")
        await eventually(lambda: _settled(js, REGISTERED), what="both copies acked")
        assert (await backlog(sessions=rt.sessions, tables=tables))[0] == 0  # nothing more to come
        assert await _effects(rt) == 1
        assert (await subject_counts(js)).get(OFFERED) == 1


async def _relay_failed(rt) -> bool:
    outbox = tables.outbox
    async with rt.sessions() as session:
        failed = await session.scalar(
            select(func.count()).select_from(outbox).where(outbox.c.last_error.is_not(None))
        )
    return bool(failed)


async def _settled(js, subject: str) -> bool:
    info = await js.consumer_info(STREAM, durable_name("probe", subject))
    return not info.num_ack_pending and not info.num_pending


async def _counted(rt, processed: int, duplicates: int) -> bool:
    c = rt.consumers
    return c.processed == processed and c.duplicates == duplicates


async def _published(js, subject: str, n: int) -> bool:
    return (await subject_counts(js)).get(subject, 0) == n


async def test_transient_error_is_retried_with_delay_and_applied_once(
    tmp_path, nats_server, js, database_url
):
    faults = Faults(fail_times={"bob": 2})
    settings = settings_for(tmp_path, nats_server.url, database_url, max_deliver=5)
    async with running(probe_definition(faults), settings) as rt:
        await publish(js, REGISTERED, registration("p1", "bob"))
        await eventually(lambda: _counted(rt, 1, 0), what="the third delivery to succeed")
        assert faults.attempts["bob"] == 3
        assert await _effects(rt) == 1  # the two failed attempts were rolled back
        await eventually(lambda: _published(js, OFFERED, 1), what="exactly one emitted event")
        assert await list_dead_letters(js) == []


async def test_malformed_events_are_dead_lettered_with_reason_and_consuming_continues(
    tmp_path, nats_server, js, database_url
):
    settings = settings_for(tmp_path, nats_server.url, database_url)
    async with running(probe_definition(Faults()), settings) as rt:
        await js.publish(REGISTERED, b"{not json", headers={"X-Origin": "hr-system"})
        bad = registration("p1", "cat")
        bad["timezone"] = "Mars/Olympus_Mons"
        await publish(js, REGISTERED, bad)
        await publish(js, REGISTERED, registration("p1", "dan"))
        await eventually(lambda: _counted(rt, 1, 0), what="the valid event after the bad ones")
        await eventually(lambda: _parked(js, 2), what="two dead letters")
        parked = await list_dead_letters(js, "probe")
        by_reason = {p.reason.split(" ")[0]: p for p in parked}
        assert set(by_reason) == {"unparseable", "schema"}
        garbage = by_reason["unparseable"]
        assert garbage.payload == b"{not json"
        assert garbage.headers["X-Origin"] == "hr-system"
        assert garbage.original_subject == REGISTERED
        assert "timezone" in by_reason["schema"].reason
        assert "IANA" in by_reason["schema"].reason
        assert json.loads(by_reason["schema"].payload)["participant_id"] == "cat"
        assert rt.consumers.dead_letters == {REGISTERED: 2}
        # acked on the original stream: nothing is pending or waiting for a redelivery
        info = await js.consumer_info(STREAM, durable_name("probe", REGISTERED))
        assert (info.num_ack_pending, info.num_pending, info.num_redelivered) == (0, 0, 0)
        # three deliveries, all acked (dead letters share the stream, so its sequences move)
        assert info.delivered.consumer_seq == info.ack_floor.consumer_seq == 3


async def _parked(js, n: int) -> bool:
    return len(await list_dead_letters(js)) == n


async def test_unknown_reference_is_retried_then_dead_lettered_and_replay_redrives_it(
    tmp_path, nats_server, js, database_url
):
    settings = settings_for(tmp_path, nats_server.url, database_url, max_deliver=3)
    async with running(probe_definition(Faults()), settings) as rt:
        update = envelope("p1", participant_id="eve", skills_offered=["python"])
        await publish(js, UPDATED, update)
        await eventually(lambda: _parked(js, 1), timeout=30, what="the dead letter")
        [letter] = await list_dead_letters(js, "probe")
        assert letter.reason.startswith("unknown reference after 3 deliveries")
        assert "'eve' is not registered" in letter.reason
        # the fix: the registration arrives; then the coordinator re-drives the parked event
        await publish(js, REGISTERED, registration("p1", "eve"))
        await eventually(lambda: _counted(rt, 1, 0), what="the registration")
        await replay_dead_letter(js, letter)
        await eventually(lambda: _counted(rt, 2, 0), what="the replayed update")
        assert await _effects(rt, "updated") == 1
        assert await list_dead_letters(js) == []


async def test_rejected_event_is_dead_lettered_at_once(tmp_path, nats_server, js, database_url):
    settings = settings_for(tmp_path, nats_server.url, database_url, max_deliver=5)
    async with running(probe_definition(Faults()), settings):
        await publish(js, "mentorship.participant.left", envelope("p1", participant_id="x"))
        await eventually(lambda: _parked(js, 1), timeout=10, what="the dead letter")
        [letter] = await list_dead_letters(js)
        assert letter.reason == "rejected: probe never accepts a departure"
        assert letter.headers["Mentorship-Dlq-Deliveries"] == "1"


async def test_duplicate_publish_is_dropped_by_the_stream(js):
    body = json.dumps(envelope("p1", participant_id="x")).encode()
    headers = {MSG_ID: "same-id"}
    first = await publish_acked(js, "mentorship.participant.left", body, headers)
    second = await publish_acked(js, "mentorship.participant.left", body, headers)
    assert (first, second) == (False, True)
    assert (await subject_counts(js))["mentorship.participant.left"] == 1


async def test_outbox_relay_publishes_with_dedupe_id_and_cloudevents_headers(
    tmp_path, nats_server, js, database_url
):
    settings = settings_for(tmp_path, nats_server.url, database_url)
    async with running(probe_definition(Faults()), settings) as rt:
        event = OpportunityOffered(
            program_id="p1",
            occurred_at=SystemClock().now(),
            opportunity_id="o1",
            participant_id="a",
            kind="stretch",
            title="Lead the demo",
        )
        await emit_standalone(
            sessions=rt.sessions, tables=tables, clock=SystemClock(), source="probe", event=event
        )
        rt.relay.wake()
        await eventually(lambda: _published(js, OFFERED, 1), what="the relay to publish")
        sub = await js.subscribe(OFFERED, ordered_consumer=True)
        msg = await sub.next_msg(timeout=5)
        await sub.unsubscribe()
        assert msg.headers[MSG_ID] == str(event.event_id)
        assert msg.headers["ce-id"] == str(event.event_id)
        assert msg.headers["ce-type"] == OFFERED
        assert msg.headers["ce-source"] == "/mentorship/probe"
        assert msg.headers["ce-specversion"] == "1.0"
        assert OpportunityOffered.model_validate_json(msg.data) == event
        assert (await backlog(sessions=rt.sessions, tables=tables))[0] == 0


async def test_outbox_keeps_events_while_nats_is_away_and_publishes_each_once(
    tmp_path, local_nats_server, database_url
):
    nc = await nats.connect(local_nats_server.url)
    from shared.bus import ensure_stream

    await ensure_stream(nc.jetstream())
    await nc.drain()
    settings = settings_for(tmp_path, local_nats_server.url, database_url)
    async with running(probe_definition(Faults()), settings) as rt:
        local_nats_server.server.stop()
        events = [
            OpportunityOffered(
                program_id="p1",
                occurred_at=SystemClock().now(),
                opportunity_id=f"o{i}",
                participant_id="a",
                kind="k",
                title="t",
            )
            for i in range(20)
        ]
        for event in events:
            await emit_standalone(
                sessions=rt.sessions,
                tables=tables,
                clock=SystemClock(),
                source="probe",
                event=event,
            )
        rt.relay.wake()
        await eventually(lambda: _relay_failed(rt), what="the relay to try while NATS is away")
        assert (await backlog(sessions=rt.sessions, tables=tables))[0] == 20
        local_nats_server.server.start()
        await eventually(
            lambda: _no_pending(rt), timeout=40, what="the relay to drain after NATS is back"
        )
        nc = await nats.connect(local_nats_server.url)
        js = nc.jetstream()
        bodies = await bodies_on(js, OFFERED)
        await nc.drain()
        assert sorted(b["event_id"] for b in bodies) == sorted(str(e.event_id) for e in events)


async def test_outbox_relay_pipelines_a_backlog_in_the_order_it_was_written(
    tmp_path, nats_server, js, database_url
):
    # more rows than one relay batch (200), all in flight at once: the stream keeps id order
    settings = settings_for(tmp_path, nats_server.url, database_url)
    async with running(probe_definition(Faults()), settings) as rt:
        events = [
            OpportunityOffered(
                program_id="p1",
                occurred_at=SystemClock().now(),
                opportunity_id=f"o{i}",
                participant_id="a",
                kind="k",
                title="t",
            )
            for i in range(450)
        ]
        async with rt.unit_of_work() as uow:
            for event in events:
                uow.emit(event)
        rt.relay.wake()
        await eventually(lambda: _no_pending(rt), timeout=30, what="the relay to drain")
        bodies = await bodies_on(js, OFFERED)
        assert [b["opportunity_id"] for b in bodies] == [f"o{i}" for i in range(450)]
        assert rt.relay.published == 450


async def _no_pending(rt) -> bool:
    return (await backlog(sessions=rt.sessions, tables=tables))[0] == 0


async def test_changed_consumer_config_updates_the_existing_durable(js):
    durable = durable_name("probe", ParticipantRegistered.subject)
    await ensure_consumer(js, consumer_config(durable=durable, subject=REGISTERED, ack_wait=30))
    await ensure_consumer(js, consumer_config(durable=durable, subject=REGISTERED, ack_wait=45))
    info = await js.consumer_info(STREAM, durable)
    assert info.config.ack_wait == 45
    assert info.config.filter_subjects == [REGISTERED, replay_subject(durable)]
    assert info.config.max_deliver == -1  # the consumer parks; the server never gives up alone


async def test_pruning_drops_old_history_but_never_pending_events(
    tmp_path, nats_server, js, database_url
):
    import datetime as dt

    from shared.outbox import prune

    settings = settings_for(tmp_path, nats_server.url, database_url)
    async with running(probe_definition(Faults()), settings) as rt:
        await publish(js, REGISTERED, registration("p1", "old"))
        await eventually(lambda: _published(js, OFFERED, 1), what="the first event published")
        pending = OpportunityOffered(
            program_id="p1",
            occurred_at=SystemClock().now(),
            opportunity_id="o-pending",
            participant_id="a",
            kind="k",
            title="t",
        )
        await rt.nats.close()  # the relay's connection: this row stays pending
        await emit_standalone(
            sessions=rt.sessions, tables=tables, clock=SystemClock(), source="probe", event=pending
        )
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=8)
        published, seen = await prune(
            sessions=rt.sessions,
            tables=tables,
            now=later,
            outbox_retention=dt.timedelta(days=7),
            inbox_retention=dt.timedelta(days=90),
        )
        assert (published, seen) == (1, 0)
        assert (await backlog(sessions=rt.sessions, tables=tables))[0] == 1
        much_later = later + dt.timedelta(days=90)
        published, seen = await prune(
            sessions=rt.sessions,
            tables=tables,
            now=much_later,
            outbox_retention=dt.timedelta(days=7),
            inbox_retention=dt.timedelta(days=90),
        )
        assert (published, seen) == (0, 1)
        assert (await backlog(sessions=rt.sessions, tables=tables))[0] == 1


async def test_event_without_its_own_event_id_is_dead_lettered_at_once(
    tmp_path, nats_server, js, database_url
):
    settings = settings_for(tmp_path, nats_server.url, database_url, max_deliver=5)
    async with running(probe_definition(Faults()), settings) as rt:
        body = registration("p1", "nobody")
        del body["event_id"]
        await js.publish(REGISTERED, json.dumps(body).encode())
        await eventually(lambda: _parked(js, 1), timeout=10, what="the dead letter")
        [letter] = await list_dead_letters(js)
        assert letter.reason.startswith("schema violation: missing envelope field(s) event_id")
        assert letter.headers["Mentorship-Dlq-Deliveries"] == "1"
        assert rt.consumers.processed == 0
