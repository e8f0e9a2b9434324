"""CPU-heavy work runs in the runner's pool: a 60-s computation stops neither acks nor health."""

from __future__ import annotations

import time
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import Integer, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.bus import STREAM, durable_name
from shared.clock import SystemClock
from shared.consumer import Subscription
from shared.events import ParticipantRegistered
from shared.health import health_router
from shared.outbox import add_delivery_tables
from shared.service import Service, ServiceDefinition
from shared.unit_of_work import UnitOfWork
from tests.support.factories import publish, registration
from tests.support.waiting import eventually, settings_for

COMPUTE_SECONDS = 60.0


class Base(DeclarativeBase):
    pass


tables = add_delivery_tables(Base.metadata)


class Result(Base):
    __tablename__ = "results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    participant_id: Mapped[str] = mapped_column(String(200))
    spins: Mapped[int] = mapped_column(Integer)


def spin_for(seconds: float) -> int:
    """Pure CPU work for `seconds` (in a worker process)."""
    spins, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        spins += sum(i * i for i in range(1000)) > 0
    return spins


async def on_registered(event: ParticipantRegistered, uow: UnitOfWork) -> None:
    spins = await uow.cpu.run(spin_for, COMPUTE_SECONDS)
    uow.session.add(Result(participant_id=event.participant_id, spins=spins))


def definition() -> ServiceDefinition:
    return ServiceDefinition(
        name="heavy",
        description="a service with one minute of CPU work per event",
        metadata=Base.metadata,
        tables=tables,
        subscriptions=[Subscription(ParticipantRegistered, on_registered)],
        emits=[],
        migrations=False,
    )


async def test_a_60_second_computation_causes_no_redelivery_and_no_failed_healthz(
    tmp_path, nats_server, js
):
    settings = settings_for(tmp_path, nats_server.url, None)
    assert settings.ack_wait_seconds < COMPUTE_SECONDS  # only keep-alives prevent redelivery
    service = Service(definition(), settings, SystemClock())
    app = FastAPI()
    app.include_router(health_router(service))
    latencies: list[float] = []
    async with (
        service.started() as rt,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        await publish(js, ParticipantRegistered.subject, registration("p1", "ann"))

        durable = durable_name("heavy", ParticipantRegistered.subject)

        async def acked_while_healthy() -> bool:
            started = time.monotonic()
            response = await http.get("/healthz")
            latencies.append(time.monotonic() - started)
            assert response.status_code == 200
            info = await js.consumer_info(STREAM, durable)
            return bool(info.ack_floor.consumer_seq == 1)

        await eventually(acked_while_healthy, timeout=COMPUTE_SECONDS + 60, what="the ack")
        assert await _results(rt) == 1
        info = await js.consumer_info(STREAM, durable)
    assert info.delivered.consumer_seq == 1  # delivered once: never redelivered
    assert info.num_redelivered == 0
    assert (info.num_ack_pending, info.num_pending) == (0, 0)
    assert len(latencies) > COMPUTE_SECONDS * 5  # /healthz answered all along (every 0.1 s)
    assert max(latencies) < 1.0


async def _results(rt: Any) -> int:
    async with rt.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Result)) or 0)
