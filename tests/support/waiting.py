"""Waiting for asynchronous outcomes, and reading the stream back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from shared.bus import STREAM
from shared.clock import Clock, SystemClock
from shared.cpu import CpuPool
from shared.db import Sessions
from shared.events import Event
from shared.outbox import DeliveryTables
from shared.service import Running, Service, ServiceDefinition
from shared.settings import Settings
from shared.unit_of_work import unit_of_work


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 30.0, what: str = "condition"
) -> None:
    """Polls until check() is true; fails with `what` after the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)


async def subject_counts(js: Any) -> dict[str, int]:
    """How many messages the stream holds per subject."""
    info = await js.stream_info(STREAM, subjects_filter="mentorship.>")
    return dict(info.state.subjects or {})


async def messages_on(js: Any, subject: str) -> list[Any]:
    """Every message on a subject, read without consuming (ordered consumer)."""
    counts = await subject_counts(js)
    wanted = counts.get(subject, 0)
    sub = await js.subscribe(subject, ordered_consumer=True)
    found = []
    try:
        while len(found) < wanted:
            found.append(await sub.next_msg(timeout=5))
    finally:
        await sub.unsubscribe()
    return found


async def bodies_on(js: Any, subject: str) -> list[dict[str, Any]]:
    return [json.loads(m.data) for m in await messages_on(js, subject)]


@contextlib.asynccontextmanager
async def running(definition: ServiceDefinition, settings: Settings) -> AsyncIterator[Running]:
    """A service started in this process (broker, consumers, relay, loops)."""
    service = Service(definition, settings, SystemClock())
    async with service.started() as started:
        yield started


def settings_for(tmp_path: Any, nats_url: str, database_url: str | None, **extra: Any) -> Settings:
    """Settings for a test: its own data dir, quick retries."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "nats_url": nats_url,
        "database_url": database_url,
        "max_deliver": 3,
        "retry_base_seconds": 0.2,
        "retry_max_seconds": 1.0,
        "kickoff_lead_days": 2,
    }
    values.update(extra)
    return Settings(**values)


async def emit_standalone(
    *, sessions: Sessions, tables: DeliveryTables, clock: Clock, source: str, event: Event
) -> None:
    """Emits one event in a transaction of its own, as work not triggered by an event would."""
    async with unit_of_work(
        sessions=sessions,
        tables=tables,
        clock=clock,
        settings=Settings(),
        source=source,
        cpu=CpuPool(threads=True),
    ) as uow:
        uow.emit(event)
