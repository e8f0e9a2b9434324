"""A timer kind with `after`: its items run once this service's consumers of those events have
consumed what the stream held when the items were claimed (a real nats-server, both databases).

A deadline about silence judged while a backlog waits unread is judged on stale facts: insights'
contact deadline did that after an outage (a pair "heard nothing for 21 days" while its session
reports sat in the stream), see docs/insights.md.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field

import pytest
from sqlalchemy import Integer, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.clock import SystemClock
from shared.consumer import Subscription
from shared.events import ParticipantRegistered
from shared.outbox import add_delivery_tables
from shared.service import Service, ServiceDefinition
from shared.timers import Due, TimerHandler, add_timer_table, schedule, timer_loop
from shared.unit_of_work import UnitOfWork
from tests.support.factories import publish, registration
from tests.support.waiting import eventually, settings_for

REGISTERED = ParticipantRegistered.subject
BACKLOG = 120


class Base(DeclarativeBase):
    pass


tables = add_delivery_tables(Base.metadata)
timers = add_timer_table(Base.metadata)


class Applied(Base):
    __tablename__ = "applied"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    label: Mapped[str] = mapped_column(String(200))


@dataclass
class Observed:
    delay_seconds: float = 0.02
    hang: set[str] = field(default_factory=set)
    applied_when_run: list[int] = field(default_factory=list)


def definition(name: str, observed: Observed, *, after: bool) -> ServiceDefinition:
    async def on_registered(event: ParticipantRegistered, uow: UnitOfWork) -> None:
        await asyncio.sleep(observed.delay_seconds)
        if event.display_name in observed.hang:
            await asyncio.Event().wait()
        uow.session.add(Applied(label=event.display_name))
        if event.display_name == "p-0":  # due at once, while the rest is still in the stream
            await schedule(
                uow.session,
                timers,
                program_id=event.program_id,
                kind="check",
                key="silence",
                due_at=dt.datetime.now(dt.UTC),
            )

    async def check(due: Due, uow: UnitOfWork) -> None:
        applied = await uow.session.scalar(select(func.count()).select_from(Applied))
        observed.applied_when_run.append(int(applied or 0))

    handler = TimerHandler(done=check, after=(ParticipantRegistered,) if after else ())
    return ServiceDefinition(
        name=name,
        description="timers-after test service",
        metadata=Base.metadata,
        tables=tables,
        subscriptions=[Subscription(ParticipantRegistered, on_registered)],
        emits=[],
        loops=[timer_loop(timers, {"check": handler})],
        migrations=False,
    )


async def backlog(js: object, *, hang: str | None = None) -> None:
    for i in range(BACKLOG):
        body = registration("p1", f"p{i}")
        body["display_name"] = hang if (hang and i == 1) else f"p-{i}"
        await publish(js, REGISTERED, body)


async def test_a_timer_with_after_runs_once_the_backlog_before_it_is_consumed(
    tmp_path, nats_server, js, database_url
):
    await backlog(js)  # before the service starts: it finds them all waiting
    observed = Observed()
    settings = settings_for(tmp_path, nats_server.url, database_url, batch_size=8)
    service = Service(definition("patient", observed, after=True), settings, SystemClock())
    async with service.started():
        await eventually(lambda: _ran(observed), timeout=60, what="the timer ran")
    assert observed.applied_when_run == [BACKLOG]


async def test_without_after_the_same_timer_runs_in_the_middle_of_the_backlog(
    tmp_path, nats_server, js, database_url
):
    await backlog(js)
    observed = Observed()
    settings = settings_for(tmp_path, nats_server.url, database_url, batch_size=8)
    service = Service(definition("hasty", observed, after=False), settings, SystemClock())
    async with service.started():
        await eventually(lambda: _ran(observed), timeout=60, what="the timer ran")
    [applied] = observed.applied_when_run
    assert applied < BACKLOG  # what `after` is for: the case above is not luck


async def test_a_stalled_consumer_does_not_hold_the_timer_for_ever(
    tmp_path, nats_server, js, database_url, caplog
):
    if database_url is None:  # SQLite in the data dir
        pytest.skip(
            "a handler hung inside its transaction holds SQLite's one connection, so nothing "
            "else runs, timers included (ADR 0006); the stall itself is the same on both"
        )
    await backlog(js, hang="stuck")  # the second registration's handler never returns
    observed = Observed(hang={"stuck"})
    settings = settings_for(
        tmp_path, nats_server.url, database_url, batch_size=1, barrier_stall_seconds=1.0
    )
    service = Service(definition("stalled", observed, after=True), settings, SystemClock())
    with caplog.at_level(logging.WARNING, logger="mentorship.timers"):
        async with service.started():
            await eventually(lambda: _ran(observed), timeout=60, what="the timer ran")
    assert observed.applied_when_run == [1]
    assert any(
        "before mentorship.participant.registered caught up" in r.message for r in caplog.records
    )


async def _ran(observed: Observed) -> bool:
    return bool(observed.applied_when_run)
