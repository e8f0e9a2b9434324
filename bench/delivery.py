"""What the delivery guarantees cost: outbox relay and idempotent consumers vs plain JetStream.

    .venv/bin/python -m bench.delivery [--events 2000] [--rounds 3]

Each figure is a ratio against a baseline measured in the same run on the same nats-server
(this machine is shared and noisy; absolute times drift):
- publish: outbox relay (rows read from SQLite, published pipelined 200 at a time in id order,
  rows marked published) vs. plain nats-py publishing the same events with pipelined PubAcks
  (`publish_async`, all acks awaited at the end), the fastest plain way to have them all stored;
- consume: a service consumer (validate, inbox check, handler, commit, explicit ack)
  vs. a bare pull consumer that fetches and acks the same messages.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
from sqlalchemy import Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cli.launcher import NatsServer, free_port
from shared.bus import STREAM, ensure_stream, event_headers, publish_acked
from shared.clock import SystemClock
from shared.consumer import Subscription
from shared.cpu import CpuPool
from shared.db import create_schema, make_engine, make_sessions
from shared.events import OpportunityOffered
from shared.outbox import OutboxRelay, add_delivery_tables
from shared.service import Service, ServiceDefinition
from shared.settings import Settings
from shared.unit_of_work import UnitOfWork, unit_of_work


class Base(DeclarativeBase):
    pass


tables = add_delivery_tables(Base.metadata)


class Seen(Base):
    __tablename__ = "seen"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    opportunity_id: Mapped[str] = mapped_column(String(100))


async def _record(event: OpportunityOffered, uow: UnitOfWork) -> None:
    uow.session.add(Seen(opportunity_id=event.opportunity_id))


def _events(n: int, tag: str) -> list[OpportunityOffered]:
    return [
        OpportunityOffered(
            program_id="bench",
            occurred_at=SystemClock().now(),
            opportunity_id=f"{tag}-{i}",
            participant_id="p",
            kind="k",
            title="t",
        )
        for i in range(n)
    ]


async def _baseline_publish(js: Any, events: list[OpportunityOffered]) -> float:
    started = time.perf_counter()
    acks = []
    for event in events:
        headers = event_headers(event, source="bench", traceparent=None)
        payload = event.model_dump_json().encode()
        acks.append(await js.publish_async(event.subject, payload, headers=dict(headers)))
    await asyncio.gather(*acks)
    return time.perf_counter() - started


async def _relay_publish(js: object, events: list[OpportunityOffered], folder: Path) -> float:
    engine = make_engine(f"sqlite+aiosqlite:///{folder / 'relay.sqlite3'}")
    await create_schema(engine, Base.metadata, schema=None)
    sessions = make_sessions(engine)
    async with unit_of_work(
        sessions=sessions,
        tables=tables,
        clock=SystemClock(),
        settings=Settings(),
        source="bench",
        cpu=CpuPool(threads=True),
    ) as uow:
        for event in events:
            uow.emit(event)

    async def publish(subject: str, payload: bytes, headers: object) -> bool:
        return await publish_acked(js, subject, payload, headers)  # type: ignore[arg-type]

    relay = OutboxRelay(sessions=sessions, tables=tables, publish=publish, clock=SystemClock())
    started = time.perf_counter()
    while await relay.publish_pending():
        pass
    elapsed = time.perf_counter() - started
    await engine.dispose()
    return elapsed


async def _baseline_consume(js: object, subject: str, n: int) -> float:
    sub = await js.pull_subscribe(subject, durable=f"bare-{time.time_ns()}", stream=STREAM)  # type: ignore[attr-defined]
    got = 0
    started = time.perf_counter()
    while got < n:
        for msg in await sub.fetch(batch=32, timeout=5):
            await msg.ack()
            got += 1
    return time.perf_counter() - started


async def _service_consume(url: str, folder: Path, n: int, database_url: str | None) -> float:
    definition = ServiceDefinition(
        name="bench",
        description="bench",
        metadata=Base.metadata,
        tables=tables,
        subscriptions=[Subscription(OpportunityOffered, _record)],
        emits=[],
        migrations=False,
    )
    settings = Settings(data_dir=folder / "svc", nats_url=url, database_url=database_url)
    service = Service(definition, settings, SystemClock())
    async with service.started() as running:
        started = time.perf_counter()
        while running.consumers.processed + running.consumers.duplicates < n:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
    return elapsed


async def run(events: int, rounds: int, database_url: str | None) -> None:
    folder = Path(tempfile.mkdtemp(prefix="mentorship-bench-"))
    server = NatsServer(free_port(), folder / "nats", folder / "nats.log")
    server.start()
    try:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        publish_ratios, consume_ratios = [], []
        for r in range(1, rounds + 1):
            if r > 1:
                await js.delete_stream(STREAM)  # each round starts from an empty stream
            await ensure_stream(js)
            base = await _baseline_publish(js, _events(events, f"b{r}"))
            relay = await _relay_publish(js, _events(events, f"r{r}"), folder / f"round{r}")
            subject = OpportunityOffered.subject
            bare = await _baseline_consume(js, subject, 2 * events)
            svc = await _service_consume(server.url, folder / f"round{r}", 2 * events, database_url)
            publish_ratios.append(relay / base)
            consume_ratios.append(svc / bare)
            print(
                f"[round {r}/{rounds}] publish {events}: plain {events / base:,.0f}/s, "
                f"outbox relay {events / relay:,.0f}/s (x{relay / base:.2f} time); "
                f"consume {2 * events}: bare {2 * events / bare:,.0f}/s, "
                f"service {2 * events / svc:,.0f}/s (x{svc / bare:.2f} time)"
            )
        await nc.drain()
        print(
            f"median over {rounds} rounds: outbox relay takes "
            f"x{statistics.median(publish_ratios):.2f} "
            f"the time of plain publishing with pipelined acks; an idempotent service consumer "
            f"x{statistics.median(consume_ratios):.2f} that of a bare fetch-and-ack consumer"
        )
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL (postgresql+asyncpg://...) for the service consumer; default SQLite",
    )
    args = parser.parse_args()
    asyncio.run(run(args.events, args.rounds, args.database_url))


if __name__ == "__main__":
    main()
