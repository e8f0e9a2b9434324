"""The one way to run a service: broker, consumers, outbox relay, background loops, HTTP.

A service describes itself with a ServiceDefinition (app.py); `run_service` wires it up.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, Response
from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.bus import (
    EVENT_HEADERS_SCHEMA,
    connect,
    consumer_config,
    durable_name,
    ensure_consumer,
    publish_acked,
    require_stream,
)
from shared.clock import Clock, SystemClock
from shared.consumer import (
    ConsumerRuntime,
    DeadLetterPolicy,
    Subscription,
    dead_letter_middleware,
    register,
)
from shared.cpu import CpuPool
from shared.db import Sessions, create_schema, make_engine, make_sessions
from shared.events import Event
from shared.outbox import (
    DeliveryTables,
    OutboxRelay,
    UnitOfWork,
    pending_count,
    prune,
    unit_of_work,
)
from shared.settings import Settings
from shared.telemetry import setup_tracing

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


class _FetchLoopNoise(logging.Filter):
    """Drops two records faststream 0.7.8 logs about its pull loop, keeping every other one.

    Around `fetch` it suppresses nats.errors.TimeoutError, yet nats-py also raises the builtin
    TimeoutError there (an expired no-wait probe under load); faststream's supervisor then
    restarts the loop, which is right, but logs it as an ERROR with a traceback. Its "callback
    ... is being executed" line accompanies every such restart.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "is being executed..." in text:
            return False
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, TimeoutError) and "raised an exception, retrying" in text)


class Service:
    """A service definition bound to settings: its broker, and once started, its runtime."""

    def __init__(self, definition: ServiceDefinition, settings: Settings, clock: Clock) -> None:
        self.definition = definition
        self.settings = settings
        self.clock = clock
        self.running: Running | None = None
        broker_log = logging.getLogger(f"mentorship.{definition.name}.faststream")
        broker_log.addFilter(_FetchLoopNoise())
        self.broker = NatsBroker(
            settings.nats_url,
            middlewares=[dead_letter_middleware(self._policy)],
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            graceful_timeout=10.0,
            logger=broker_log,
            log_level=logging.DEBUG,  # "Received"/"Processed" per message only when debugging
        )
        for subscription in definition.subscriptions:
            register(
                self.broker,
                subscription,
                self._consumers,
                service=definition.name,
                max_deliver=settings.max_deliver,
            )
        for event in definition.emits:
            self.broker.publisher(
                event.subject,
                schema=event,
                title=f"{event.subject}:{definition.name}",
                description=(event.__doc__ or "").strip() or None,
            )

    def _consumers(self) -> ConsumerRuntime:
        if self.running is None:
            raise RuntimeError("a message arrived before the service finished starting")
        return self.running.consumers

    def _policy(self) -> DeadLetterPolicy:
        return DeadLetterPolicy(self._consumers())

    def asyncapi(self) -> dict[str, Any]:
        """The service's AsyncAPI 3.0 document, generated from its subscribers and publishers."""
        spec = AsyncAPI(
            self.broker,
            title=f"mentorship-{self.definition.name}",
            version="1.0.0",
            description=self.definition.description,
            schema_version="3.0.0",
        )
        document: dict[str, Any] = spec.to_specification().to_jsonable()
        # the server is a deployment detail: document a placeholder, not this process's URL
        for server in document.get("servers", {}).values():
            server["host"] = "localhost:4222"
        for message in document.get("components", {}).get("messages", {}).values():
            message.pop("correlationId", None)  # faststream's own header; we do not use it
            message["headers"] = EVENT_HEADERS_SCHEMA
        return document

    async def _ensure_consumers(self, js: JetStreamContext) -> None:
        """Creates the durable consumers, or updates those whose config changed in code."""
        for subscription in self.definition.subscriptions:
            subject = subscription.event.subject
            config = consumer_config(
                durable=durable_name(self.definition.name, subject),
                subject=subject,
                max_deliver=self.settings.max_deliver,
            )
            await ensure_consumer(js, config)

    @contextlib.asynccontextmanager
    async def started(self) -> AsyncIterator[Running]:
        """Starts everything but HTTP; stops it all on exit."""
        d, settings = self.definition, self.settings
        engine = make_engine(settings.database_url_for(d.name), schema=d.name)
        await create_schema(engine, d.metadata, schema=d.name)
        sessions = make_sessions(engine)
        nc = await connect(settings.nats_url, name=f"mentorship-{d.name}-relay")
        js = nc.jetstream()
        await require_stream(js, settings.nats_url)
        await self._ensure_consumers(js)
        relay = OutboxRelay(
            sessions=sessions, tables=d.tables, publish=partial(publish_acked, js), clock=self.clock
        )
        cpu = CpuPool(settings.cpu_workers)
        consumers = ConsumerRuntime(
            service=d.name,
            sessions=sessions,
            tables=d.tables,
            clock=self.clock,
            settings=settings,
            cpu=cpu,
            js=js,
            on_commit=relay.wake,
            max_deliver=settings.max_deliver,
            retry_base_seconds=settings.retry_base_seconds,
            retry_max_seconds=settings.retry_max_seconds,
        )
        self.running = Running(
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
        )
        for hook in d.on_start:
            await hook(self.running)
        tasks = [
            asyncio.create_task(relay.run(), name=f"{d.name}-relay"),
            asyncio.create_task(_prune_periodically(self.running), name=f"{d.name}-prune"),
        ]
        tasks += [asyncio.create_task(loop(self.running)) for loop in d.loops]
        await self.broker.start()
        log.info("%s started: %d subscriptions", d.name, len(d.subscriptions))
        try:
            yield self.running
        finally:
            try:
                await self.broker.stop()
            except Exception as exc:  # e.g. still reconnecting: nothing left to drain
                log.warning("%s: broker did not stop cleanly: %s", d.name, exc)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            try:
                await nc.drain()
            except Exception:
                await nc.close()
            cpu.close()
            await engine.dispose()
            self.running = None

    def http_app(self) -> FastAPI:
        """Health, readiness, AsyncAPI and the service's own routes; its lifespan runs the rest."""

        @contextlib.asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            async with self.started():
                yield

        app = FastAPI(title=f"mentorship-{self.definition.name}", lifespan=lifespan)
        app.state.service = self
        app.include_router(self._health_router())
        for router in self.definition.routers:
            app.include_router(router())
        return app

    def _health_router(self) -> APIRouter:
        router = APIRouter(tags=["operations"])

        @router.get("/healthz")
        async def healthz() -> dict[str, str]:
            """Liveness: the process answers."""
            return {"status": "ok", "service": self.definition.name}

        @router.get("/readyz")
        async def readyz(response: Response) -> dict[str, Any]:
            """Readiness: NATS connected and the database answering; delivery counters."""
            running = self.running
            if running is None:
                response.status_code = 503
                return {"status": "starting"}
            try:
                async with running.sessions() as session:
                    await session.execute(text("SELECT 1"))
                backlog = await pending_count(sessions=running.sessions, tables=running.tables)
                db_ok = True
            except Exception:
                db_ok, backlog = False, -1
            nats_ok = running.nats.is_connected
            if not (db_ok and nats_ok):
                response.status_code = 503
            return {
                "status": "ready" if db_ok and nats_ok else "degraded",
                "nats": nats_ok,
                "database": db_ok,
                "outbox_pending": backlog,
                "processed": running.consumers.processed,
                "duplicates_dropped": running.consumers.duplicates,
                "dead_letters": running.consumers.dead_letters,
            }

        @router.get("/asyncapi.json")
        async def asyncapi() -> Response:
            """The AsyncAPI document of this service."""
            return Response(
                json.dumps(self.asyncapi(), indent=2, sort_keys=True), media_type="application/json"
            )

        return router


PRUNE_EVERY_SECONDS = 3600.0


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


def configure_logging(settings: Settings) -> None:
    """Plain, greppable log lines."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


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
