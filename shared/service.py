"""The one way to run a service: its lifecycle from database and NATS to consumers and loops.

A service describes itself with a ServiceDefinition (app.py); `run_service` runs it. HTTP and
health live in shared.health, dead letters in shared.deadletters, logging in shared.logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import asyncapi, health, migrations
from shared.barrier import Barrier
from shared.bus import (
    connect,
    consumer_config,
    durable_name,
    ensure_consumer,
    publish_acked,
    require_stream,
)
from shared.clock import Clock, SystemClock
from shared.consumer import ConsumerRuntime, Subscription, SubscriptionConsumer
from shared.cpu import CpuPool
from shared.db import Sessions, create_schema, make_engine, make_sessions
from shared.events import Event
from shared.logs import configure_logging
from shared.outbox import DeliveryTables, OutboxRelay, prune
from shared.settings import Settings
from shared.tasks import stop_all
from shared.telemetry import setup_tracing
from shared.unit_of_work import UnitOfWork, unit_of_work

log = logging.getLogger("mentorship.service")


@dataclass
class Running:
    """A started service: what background loops and HTTP endpoints may use."""

    name: str
    settings: Settings
    clock: Clock
    engine: AsyncEngine
    sessions: Sessions
    tables: DeliveryTables
    nats: NatsClient
    relay: OutboxRelay
    consumers: ConsumerRuntime
    cpu: CpuPool
    # readiness problems reported by loops (e.g. notifications' SMTP breaker): None when fine
    checks: list[Callable[[], str | None]] = field(default_factory=list)
    # the service's own counters on /readyz (ServiceDefinition.counters, then any loop's)
    counters: list[Counters] = field(default_factory=list)

    def unit_of_work(self) -> contextlib.AbstractAsyncContextManager[UnitOfWork]:
        """A transaction for work no event started (timers, HTTP), committing with its events."""
        return unit_of_work(
            sessions=self.sessions,
            tables=self.tables,
            clock=self.clock,
            settings=self.settings,
            source=self.name,
            cpu=self.cpu,
        )


Loop = Callable[[Running], Coroutine[Any, Any, None]]
Counters = Callable[[Running], Awaitable[Mapping[str, int]]]
"""Named counts a service shows under `counters` on /readyz (e.g. notifications' unsubscribes)."""


@dataclass
class ServiceDefinition:
    """Everything that makes one service what it is."""

    name: str
    metadata: MetaData
    tables: DeliveryTables
    subscriptions: Sequence[Subscription[Any]]
    emits: Sequence[type[Event]]
    description: str
    routers: Sequence[Callable[[], APIRouter]] = ()
    loops: Sequence[Loop] = ()
    on_start: Sequence[Loop] = ()
    # called with the service's HTTP app once its routes are in (insights guards its docs)
    http_setup: Sequence[Callable[[FastAPI], None]] = ()
    # False only for test and benchmark services without an Alembic history (create_all)
    migrations: bool = True
    counters: Sequence[Counters] = ()
    # run by each CPU-pool worker as it starts, and the workers started with the service (spawned
    # and warm before the first batch needs them); a failure is logged, the worker still serves
    cpu_warm_up: Callable[[], object] | None = None


class Service:
    """A service definition bound to settings and a clock; once started, its runtime."""

    def __init__(self, definition: ServiceDefinition, settings: Settings, clock: Clock) -> None:
        self.definition = definition
        self.settings = settings
        self.clock = clock
        self.running: Running | None = None

    def asyncapi(self) -> dict[str, Any]:
        """The service's AsyncAPI 3.0 document, generated from its subscriptions and events."""
        d = self.definition
        return asyncapi.document(
            service=d.name,
            description=d.description,
            consumes=[s.event for s in d.subscriptions],
            emits=d.emits,
        )

    def http_app(self) -> FastAPI:
        """The service's HTTP app; its lifespan starts and stops the service."""
        return health.http_app(self)

    async def _ensure_consumers(self, js: JetStreamContext) -> None:
        """Creates the durable consumers, or updates those whose config changed in code."""
        configs = [
            consumer_config(
                durable=durable_name(self.definition.name, s.event.subject),
                subject=s.event.subject,
                ack_wait=self.settings.ack_wait_seconds,
            )
            for s in self.definition.subscriptions
        ]
        # one request each, all at once (insights has one consumer per catalogue event)
        await asyncio.gather(*(ensure_consumer(js, config) for config in configs))

    async def _prepare_database(self, engine: AsyncEngine) -> None:
        """Upgrades the database to the newest migration, or checks that it is there."""
        d = self.definition
        if not d.migrations:
            await create_schema(engine, d.metadata, schema=d.name)
        elif self.settings.migrate_on_start:
            await migrations.upgrade(engine, service=d.name, create_empty=True)
        elif await migrations.current_revision(engine, service=d.name) != (
            head := migrations.head_revision(d.name)
        ):
            raise migrations.MigrationError(
                f"{d.name}'s database is not at migration {head}: run `mentorship migrate "
                f"--service {d.name}` (or set MENTORSHIP_MIGRATE_ON_START=true)"
            )

    @contextlib.asynccontextmanager
    async def started(self) -> AsyncIterator[Running]:
        """Starts everything but HTTP; stops it all on exit."""
        d, settings = self.definition, self.settings
        engine = make_engine(settings.database_url_for(d.name), schema=d.name)
        await self._prepare_database(engine)
        sessions = make_sessions(engine)
        nc = await connect(settings.nats_url, name=f"mentorship-{d.name}")
        js = nc.jetstream()
        await require_stream(js, settings.nats_url)
        await self._ensure_consumers(js)
        relay = OutboxRelay(
            sessions=sessions,
            tables=d.tables,
            publish=partial(publish_acked, js),
            clock=self.clock,
            batch_size=settings.relay_batch_size,
        )
        cpu = CpuPool(settings.cpu_workers, warm_up=d.cpu_warm_up)
        consumers = ConsumerRuntime(
            service=d.name,
            sessions=sessions,
            tables=d.tables,
            clock=self.clock,
            settings=settings,
            cpu=cpu,
            nats=nc,
            js=js,
            barrier=Barrier(js, stall_seconds=settings.barrier_stall_seconds),
            on_commit=relay.wake,
        )
        self.running = running = Running(
            name=d.name,
            settings=settings,
            clock=self.clock,
            engine=engine,
            sessions=sessions,
            tables=d.tables,
            nats=nc,
            relay=relay,
            consumers=consumers,
            cpu=cpu,
            counters=list(d.counters),
        )
        tasks: list[asyncio.Task[None]] = []
        try:
            for hook in d.on_start:
                await hook(running)
            tasks.append(asyncio.create_task(relay.run(), name=f"{d.name}-relay"))
            tasks.append(asyncio.create_task(_prune_periodically(running), name=f"{d.name}-prune"))
            tasks += [asyncio.create_task(loop(running)) for loop in d.loops]
            if d.cpu_warm_up is not None:
                tasks.append(asyncio.create_task(_warm_up(cpu, d.name)))
            for subscription in d.subscriptions:
                consumer = SubscriptionConsumer(subscription, consumers)
                tasks.append(asyncio.create_task(consumer.run(), name=consumer.durable))
            tune_garbage_collector()
            log.info("%s started: %d subscriptions", d.name, len(d.subscriptions))
            yield running
        finally:
            await stop_all(tasks, grace=STOP_GRACE_SECONDS, what=d.name)
            # flush the last acks, then close: nats-py 2.16's drain waits its full timeout on
            # pull subscriptions whose fetches left status messages behind
            with contextlib.suppress(Exception):
                await nc.flush(timeout=2)
            await nc.close()
            cpu.close()
            await engine.dispose()
            self.running = None


async def _warm_up(cpu: CpuPool, service: str) -> None:
    try:
        await cpu.start_workers()  # each runs the definition's cpu_warm_up as it starts
    except Exception as exc:  # the first real call starts the pool again
        log.warning("%s: the CPU pool did not start (%s)", service, exc)


def tune_garbage_collector() -> None:
    """Keeps Python's cyclic collector from rescanning what lives as long as the process.

    A batch of events allocates hundreds of thousands of small objects; with the default
    thresholds the collector ran so often over the long-lived heap (modules, metadata, the
    engine) that it took more time than validating the events. Frozen objects are never
    scanned again, and young collections run every 50,000 allocations instead of 700.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


PRUNE_EVERY_SECONDS = 3600.0
# a cancelled relay, consumer or timer ends within a round trip; one that has not after this
# long is named in the log and left behind rather than holding the stop for ever
STOP_GRACE_SECONDS = 15.0


async def _prune_periodically(running: Running) -> None:
    """Keeps the outbox and inbox from growing forever."""
    s = running.settings
    while True:
        await asyncio.sleep(PRUNE_EVERY_SECONDS)
        try:
            published, seen = await prune(
                sessions=running.sessions,
                tables=running.tables,
                now=running.clock.now(),
                outbox_retention=dt.timedelta(days=s.outbox_retention_days),
                inbox_retention=dt.timedelta(days=s.inbox_retention_days),
            )
            if published or seen:
                log.info("%s: pruned %d outbox and %d inbox rows", running.name, published, seen)
        except Exception:
            log.exception("%s: pruning failed; will try again", running.name)


def run_service(definition: ServiceDefinition, settings: Settings | None = None) -> None:
    """Runs a service until SIGINT/SIGTERM (`python -m services.<name>`)."""
    settings = settings or Settings()
    configure_logging(settings)
    setup_tracing(definition.name, settings)
    service = Service(definition, settings, SystemClock())
    config = uvicorn.Config(
        service.http_app(),
        host=settings.http_host,
        port=settings.http_port_for(definition.name),
        log_level=settings.log_level.lower(),
        lifespan="on",
        access_log=False,
    )
    uvicorn.Server(config).run()
