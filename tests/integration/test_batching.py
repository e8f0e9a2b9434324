"""Batched consumption against a real nats-server: one failure stays alone, keys keep their order,
the barrier waits while others progress, replays reach one consumer, the outbox never blocks."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import Integer, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.bus import STREAM, durable_name
from shared.clock import SystemClock
from shared.consumer import Subscription
from shared.deadletters import list_dead_letters, replay_dead_letter
from shared.errors import EventRejected
from shared.events import OpportunityOffered, ParticipantRegistered, ParticipantUpdated
from shared.health import health_router
from shared.outbox import add_delivery_tables, backlog, parked_rows, unpark
from shared.service import Service, ServiceDefinition
from shared.unit_of_work import UnitOfWork
from tests.support.factories import envelope, publish, registration
from tests.support.waiting import emit_standalone, eventually, settings_for, subject_counts

REGISTERED = ParticipantRegistered.subject
UPDATED = ParticipantUpdated.subject


class Base(DeclarativeBase):
    pass


tables = add_delivery_tables(Base.metadata)


class Applied(Base):
    """One row per applied event, in the order the consumer applied them."""

    __tablename__ = "applied"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(100))
    participant_id: Mapped[str] = mapped_column(String(200))
    label: Mapped[str] = mapped_column(String(200))


@dataclass
class Behaviour:
    """What the test service does per event: fail some deliveries, be slow, reject some."""

    # display name -> tries that fail (a batch applied as a whole, then event by event, tries
    # a failing event twice before it is retried on its own)
    fail_times: dict[str, int] = field(default_factory=dict)
    reject: set[str] = field(default_factory=set)  # display names rejected every time
    hang: set[str] = field(default_factory=set)  # display names whose handler never returns
    delay_seconds: float = 0.0
    tries: dict[str, int] = field(default_factory=dict)
    batch: int | None = None  # the registrations' Subscription.batch
    units: list[UnitOfWork] = field(default_factory=list)  # each applied event's unit of work


def definition(name: str, behaviour: Behaviour) -> ServiceDefinition:
    async def on_registered(event: ParticipantRegistered, uow: UnitOfWork) -> None:
        label = event.display_name
        behaviour.tries[label] = behaviour.tries.get(label, 0) + 1
        behaviour.units.append(uow)
        if behaviour.delay_seconds:
            await asyncio.sleep(behaviour.delay_seconds)
        if label in behaviour.hang:
            await asyncio.Event().wait()
        uow.session.add(
            Applied(subject=REGISTERED, participant_id=event.participant_id, label=label)
        )
        await uow.session.flush()
        if label in behaviour.reject:
            raise EventRejected(f"{label} is never accepted here")
        if behaviour.tries[label] <= behaviour.fail_times.get(label, 0):
            raise ConnectionError("simulated transient failure")

    async def on_updated(event: ParticipantUpdated, uow: UnitOfWork) -> None:
        uow.session.add(Applied(subject=UPDATED, participant_id=event.participant_id, label="u"))

    return ServiceDefinition(
        name=name,
        description="batching test service",
        metadata=Base.metadata,
        tables=tables,
        subscriptions=[
            Subscription(ParticipantRegistered, on_registered, batch=behaviour.batch),
            Subscription(ParticipantUpdated, on_updated, after=(ParticipantRegistered,)),
        ],
        emits=[OpportunityOffered],
        migrations=False,
    )


def person(pid: str, label: str) -> dict[str, Any]:
    body = registration("p1", pid)
    body["display_name"] = label
    return body


async def applied(rt: Any, subject: str = REGISTERED) -> list[tuple[str, str]]:
    async with rt.sessions() as session:
        rows = await session.execute(
            select(Applied.participant_id, Applied.label)
            .where(Applied.subject == subject)
            .order_by(Applied.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def settled(js: Any, durable: str) -> bool:
    info = await js.consumer_info(STREAM, durable)
    return not info.num_pending and not info.num_ack_pending


def started(name: str, behaviour: Behaviour, settings: Any) -> Any:
    return Service(definition(name, behaviour), settings, SystemClock()).started()


async def test_a_failing_event_is_retried_alone_and_the_rest_of_its_batch_commits(
    tmp_path, nats_server, js, database_url
):
    behaviour = Behaviour(fail_times={"p-17": 2})
    for i in range(40):  # published before the service starts: they come as one batch
        await publish(js, REGISTERED, person(f"p{i}", f"p-{i}"))
    settings = settings_for(tmp_path, nats_server.url, database_url)
    async with started("batching", behaviour, settings) as rt:
        durable = durable_name("batching", REGISTERED)
        await eventually(lambda: settled(js, durable), what="all 40 settled")
        rows = await applied(rt)
        assert sorted(label for _, label in rows) == sorted(f"p-{i}" for i in range(40))
        assert behaviour.tries["p-17"] == 3  # in the batch, on its own savepoint, redelivered
        assert rt.consumers.retried == 1  # only p-17 went back to JetStream
        assert rt.consumers.processed == 40
        assert max(n for label, n in behaviour.tries.items() if label != "p-17") <= 2


async def test_a_subscription_batch_cap_keeps_its_batches_small_and_applies_every_event(
    tmp_path, nats_server, js, database_url
):
    behaviour = Behaviour(batch=7)
    for i in range(40):  # waiting together: without the cap they come as one batch
        await publish(js, REGISTERED, person(f"p{i}", f"p-{i}"))
    settings = settings_for(tmp_path, nats_server.url, database_url)
    async with started("capped", behaviour, settings) as rt:
        await eventually(
            lambda: settled(js, durable_name("capped", REGISTERED)), what="all 40 settled"
        )
        assert sorted(label for _, label in await applied(rt)) == sorted(
            f"p-{i}" for i in range(40)
        )
    sizes = Counter(id(uow) for uow in behaviour.units).values()
    assert max(sizes) == 7  # one unit of work per batch, none over the cap
    assert len(sizes) == 6  # 40 = 5 x 7 + 5


async def test_events_of_one_key_apply_in_stream_order_when_the_first_is_retried(
    tmp_path, nats_server, js, database_url
):
    behaviour = Behaviour(fail_times={"ann v1": 2})
    await publish(js, REGISTERED, person("ann", "ann v1"))
    await publish(js, REGISTERED, person("bob", "bob v1"))
    await publish(js, REGISTERED, person("ann", "ann v2"))
    await publish(js, REGISTERED, person("ann", "ann v3"))
    settings = settings_for(tmp_path, nats_server.url, database_url, retry_base_seconds=0.3)
    async with started("ordering", behaviour, settings) as rt:
        durable = durable_name("ordering", REGISTERED)
        await eventually(lambda: settled(js, durable), what="all four settled")
        rows = await applied(rt)
        anns = [label for pid, label in rows if pid == "ann"]
        assert anns == ["ann v1", "ann v2", "ann v3"]  # v2 and v3 waited for v1's retry
        assert ("bob", "bob v1") in rows  # an unrelated key did not wait
        assert await list_dead_letters(js) == []  # waiting did not use up v2's or v3's budget


async def test_barrier_waits_while_the_earlier_consumer_progresses_beyond_the_stall_time(
    tmp_path, nats_server, js, database_url
):
    behaviour = Behaviour(delay_seconds=0.04)  # 150 registrations: 6 s of steady work
    for i in range(150):
        await publish(js, REGISTERED, person(f"p{i}", f"p-{i}"))
    await publish(js, UPDATED, envelope("p1", participant_id="p149", skills_offered=["go"]))
    settings = settings_for(
        tmp_path, nats_server.url, database_url, barrier_stall_seconds=2.0, batch_size=8
    )
    async with started("patient", behaviour, settings) as rt:
        await eventually(lambda: _count(rt, UPDATED, 1), timeout=60, what="the update applied")
        assert len(await applied(rt)) == 150  # every registration before it was applied first
        assert await list_dead_letters(js) == []


async def _count(rt: Any, subject: str, n: int) -> bool:
    async with rt.sessions() as session:
        found = await session.scalar(
            select(func.count()).select_from(Applied).where(Applied.subject == subject)
        )
    return found == n


async def test_barrier_gives_up_only_when_the_earlier_consumer_stalls(
    tmp_path, nats_server, js, database_url
):
    behaviour = Behaviour(hang={"stuck"})  # its consumer sends no ack, and no heartbeat in 1 s
    await publish(js, REGISTERED, person("s", "stuck"))
    await publish(js, UPDATED, envelope("p1", participant_id="s", skills_offered=["go"]))
    settings = settings_for(
        tmp_path,
        nats_server.url,
        database_url,
        barrier_stall_seconds=1.0,
        max_deliver=2,
        retry_base_seconds=0.2,
    )
    async with started("stalled", behaviour, settings):
        await eventually(lambda: _parked_on(js, UPDATED), timeout=60, what="the update parked")
        [letter] = [p for p in await list_dead_letters(js) if p.original_subject == UPDATED]
        assert "made no progress" in letter.reason
        assert letter.consumer == durable_name("stalled", UPDATED)


async def _parked_on(js: Any, subject: str) -> bool:
    return any(p.original_subject == subject for p in await list_dead_letters(js))


async def test_barrier_asks_jetstream_per_batch_not_per_message(
    tmp_path, nats_server, js, database_url
):
    for i in range(5):
        await publish(js, REGISTERED, person(f"p{i}", f"p-{i}"))
    settings = settings_for(tmp_path, nats_server.url, database_url)
    async with started("polls", Behaviour(), settings) as rt:
        durable = durable_name("polls", REGISTERED)
        await eventually(lambda: settled(js, durable), what="registrations done")
        for i in range(200):
            await publish(js, UPDATED, envelope("p1", participant_id=f"p{i % 5}"))
        await eventually(lambda: _count(rt, UPDATED, 200), timeout=60, what="200 updates")
        assert rt.consumers.barrier.polls < 40  # 200 waiting messages, a handful of requests


async def test_replay_reaches_only_the_consumer_that_failed(
    tmp_path, nats_server, js, database_url
):
    picky, easy = Behaviour(reject={"eve"}), Behaviour()
    settings = settings_for(tmp_path, nats_server.url, database_url)
    other = settings_for(tmp_path / "easy", nats_server.url, database_url)
    async with started("picky", picky, settings) as a, started("easy", easy, other) as b:
        await publish(js, REGISTERED, person("eve", "eve"))
        await eventually(lambda: _parked_on(js, REGISTERED), what="picky's dead letter")
        await eventually(lambda: _processed(b, 1), what="easy applied it")
        [letter] = await list_dead_letters(js)
        assert letter.consumer == durable_name("picky", REGISTERED)
        picky.reject.clear()  # the cause is fixed
        await replay_dead_letter(js, letter)
        await eventually(lambda: _processed(a, 1), what="the replay applied by picky")
        easy_durable = durable_name("easy", REGISTERED)
        info = await js.consumer_info(STREAM, easy_durable)
        assert info.delivered.consumer_seq == 1  # easy never saw the replay
        assert (b.consumers.processed, b.consumers.duplicates) == (1, 0)
        assert easy.tries["eve"] == 1
        assert await list_dead_letters(js) == []


async def _processed(rt: Any, n: int) -> bool:
    return bool(rt.consumers.processed == n)


async def test_an_unpublishable_outbox_row_is_parked_and_later_rows_keep_flowing(
    tmp_path, nats_server, js, database_url
):
    settings = settings_for(tmp_path, nats_server.url, database_url)
    service = Service(definition("parking", Behaviour()), settings, SystemClock())
    async with service.started() as rt:
        huge = _offer("huge", title="x" * 2_000_000)  # over the server's 1 MB max_payload
        for event in (huge, _offer("after-1"), _offer("after-2")):
            await emit_standalone(
                sessions=rt.sessions, tables=tables, clock=SystemClock(), source="t", event=event
            )
        rt.relay.wake()
        offered = OpportunityOffered.subject
        await eventually(lambda: _on_stream(js, offered, 2), what="the rows after the huge one")
        # the relay marks its batch published once every PubAck of it is in

        async def marked() -> bool:
            return await backlog(sessions=rt.sessions, tables=tables) == (0, 1)

        await eventually(marked, what="the relay to mark the published rows")
        [parked] = await parked_rows(sessions=rt.sessions, tables=tables)
        assert parked.event_id == str(huge.event_id)
        assert "MaxPayload" in parked.reason
        readiness = await _readyz(service)
        assert readiness["status"] == "degraded"
        assert readiness["outbox_parked"] == 1
        assert "mentorship outbox list" in readiness["problems"][0]
        assert await unpark(sessions=rt.sessions, tables=tables, ids=[parked.id]) == 1
        assert await backlog(sessions=rt.sessions, tables=tables) == (1, 0)


def _offer(oid: str, title: str = "t") -> OpportunityOffered:
    return OpportunityOffered(
        program_id="p1",
        occurred_at=SystemClock().now(),
        opportunity_id=oid,
        participant_id="a",
        kind="k",
        title=title,
    )


async def _on_stream(js: Any, subject: str, n: int) -> bool:
    return (await subject_counts(js)).get(subject, 0) == n


async def _readyz(service: Service) -> dict[str, Any]:
    app = FastAPI()
    app.include_router(health_router(service))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/readyz")
    body: dict[str, Any] = response.json()
    return body


async def test_readyz_shows_the_service_counters_and_a_failing_counter_as_a_problem(
    tmp_path, nats_server, js, database_url
):
    async def applied(running: Any) -> dict[str, int]:
        async with running.sessions() as session:
            return {"applied_rows": await session.scalar(select(func.count(Applied.id))) or 0}

    async def broken(_: Any) -> dict[str, int]:
        raise RuntimeError("the counter's table is gone")

    settings = settings_for(tmp_path, nats_server.url, database_url)
    counted = replace(definition("counting", Behaviour()), counters=[applied])
    service = Service(counted, settings, SystemClock())
    async with service.started() as rt:
        await publish(js, REGISTERED, registration("p1", "c1"))
        await eventually(lambda: _processed(rt, 1), what="the registration to be applied")
        readiness = await _readyz(service)
        assert (readiness["status"], readiness["counters"]) == ("ready", {"applied_rows": 1})
        rt.counters.append(broken)
        readiness = await _readyz(service)
        assert readiness["status"] == "degraded"
        assert readiness["counters"] == {"applied_rows": 1}
        assert "the counter's table is gone" in readiness["problems"][0]
