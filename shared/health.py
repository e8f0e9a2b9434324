"""Every service's HTTP side: liveness, readiness with delivery counters, its AsyncAPI document."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Response
from sqlalchemy import text

from shared.outbox import backlog

if TYPE_CHECKING:
    from shared.service import Service


def http_app(service: Service) -> FastAPI:
    """Health, readiness, AsyncAPI and the service's own routes; its lifespan runs the rest."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with service.started():
            yield

    app = FastAPI(title=f"mentorship-{service.definition.name}", lifespan=lifespan)
    app.state.service = service
    app.include_router(health_router(service))
    for router in service.definition.routers:
        app.include_router(router())
    for setup in service.definition.http_setup:
        setup(app)
    return app


def health_router(service: Service) -> APIRouter:
    """/healthz, /readyz and /asyncapi.json."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers (the event loop is not blocked)."""
        return {"status": "ok", "service": service.definition.name}

    @router.get("/readyz")
    async def readyz(response: Response) -> dict[str, Any]:
        """Readiness: NATS connected, the database answering, nothing parked; counters."""
        running = service.running
        if running is None:
            response.status_code = 503
            return {"status": "starting"}
        try:
            async with running.sessions() as session:
                await session.execute(text("SELECT 1"))
            pending, parked = await backlog(sessions=running.sessions, tables=running.tables)
            db_ok = True
        except Exception:
            db_ok, pending, parked = False, -1, -1
        nats_ok = running.nats.is_connected
        if not (db_ok and nats_ok):
            response.status_code = 503
        problems = []
        if parked > 0:
            problems.append(
                f"{parked} outbox row(s) can never be published: `mentorship outbox list "
                f"--service {service.definition.name}`"
            )
        problems += [problem for check in running.checks if (problem := check())]
        counters: dict[str, int] = {}
        for count in running.counters:
            try:
                counters.update(await count(running))
            except Exception as exc:  # a counter must not take readiness down with it
                problems.append(f"a counter could not be read ({type(exc).__name__}: {exc})")
        consumers = running.consumers
        return {
            "status": "ready" if db_ok and nats_ok and not problems else "degraded",
            "nats": nats_ok,
            "database": db_ok,
            "problems": problems,
            "outbox_pending": pending,
            "outbox_parked": parked,
            "processed": consumers.processed,
            "duplicates_dropped": consumers.duplicates,
            "retried": consumers.retried,
            "dead_letters": consumers.dead_letters,
            "counters": counters,
        }

    @router.get("/asyncapi.json")
    async def asyncapi() -> Response:
        """The AsyncAPI document of this service."""
        body = json.dumps(service.asyncapi(), indent=2, sort_keys=True)
        return Response(body, media_type="application/json")

    return router
