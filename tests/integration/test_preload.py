"""Read-modify-write handlers at batch speed: rows a subscription preloads come from one query
per batch, later events of a batch see the rows earlier ones added, and the results are those of
applying the events one by one (real nats-server, SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Integer, String, select
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.bus import durable_name
from shared.clock import SystemClock
from shared.consumer import Subscription
from shared.events import ParticipantRegistered
from shared.outbox import add_delivery_tables
from shared.service import Service, ServiceDefinition
from shared.unit_of_work import Preload, UnitOfWork
from tests.integration.test_batching import settled
from tests.support.factories import publish, registration
from tests.support.waiting import eventually, settings_for


class Base(DeclarativeBase):
    pass


tables = add_delivery_tables(Base.metadata)


class Tally(Base):
    __tablename__ = "tally"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    participant_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    registrations: Mapped[int] = mapped_column(Integer)
    last_name: Mapped[str] = mapped_column(String(200))


async def on_registered(event: ParticipantRegistered, uow: UnitOfWork) -> None:
    row = await uow.get(Tally, (event.program_id, event.participant_id))
    if row is None:
        uow.add(
            Tally(
                program_id=event.program_id,
                participant_id=event.participant_id,
                registrations=1,
                last_name=event.display_name,
            )
        )
    else:
        row.registrations += 1
        row.last_name = event.display_name


async def on_registered_upserting(event: ParticipantRegistered, uow: UnitOfWork) -> None:
    # a new row goes with the batch's one upsert statement; later events of the batch see it
    row = await uow.get(Tally, (event.program_id, event.participant_id))
    if row is None:
        values = {
            "program_id": event.program_id,
            "participant_id": event.participant_id,
            "registrations": 1,
            "last_name": event.display_name,
        }
        uow.upsert_row(Tally, values)
    else:
        row.registrations += 1
        row.last_name = event.display_name


def definition(handler: Any = on_registered) -> ServiceDefinition:
    preload = Preload(Tally, lambda e: (e.program_id, e.participant_id))
    return ServiceDefinition(
        name="preload",
        description="preload test service",
        metadata=Base.metadata,
        tables=tables,
        subscriptions=[Subscription(ParticipantRegistered, handler, preload=(preload,))],
        emits=[],
        migrations=False,
    )


@pytest.mark.parametrize("handler", [on_registered, on_registered_upserting])
async def test_preloaded_rows_cost_one_query_per_batch_and_match_applying_one_by_one(
    tmp_path, nats_server, js, database_url, handler
):
    settings = settings_for(tmp_path, nats_server.url, database_url)
    first = Service(definition(handler), settings, SystemClock())
    async with first.started() as rt, rt.sessions() as session, session.begin():
        session.add_all(  # rows known before the events
            Tally(program_id="p1", participant_id=f"m{i}", registrations=10, last_name="old")
            for i in range(0, 100, 10)
        )
    for round_ in range(3):  # each participant three times, in stream order, while it is down
        for i in range(100):
            body = registration("p1", f"m{i}")
            body["display_name"] = f"name {round_}"
            await publish(js, ParticipantRegistered.subject, body)
    selects: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "tally" in statement:
            selects.append(statement)

    sa_event.listen(Engine, "before_cursor_execute", record)  # every engine, from its start
    try:
        async with Service(definition(handler), settings, SystemClock()).started() as rt:
            durable = durable_name("preload", ParticipantRegistered.subject)
            await eventually(lambda: settled(js, durable), what="all 300 settled")
            queries = len(selects)
            async with rt.sessions() as session:
                rows = {
                    row.participant_id: (row.registrations, row.last_name)
                    for row in await session.scalars(select(Tally))
                }
        expected = {f"m{i}": (13 if i % 10 == 0 else 3, "name 2") for i in range(100)}
        assert rows == expected
        assert rt.consumers.processed == 300
        # the 300 waiting events come in one batch (or two, should the first fetch be cut short):
        # one query each, never one per event
        assert 1 <= queries <= 2, f"{queries} SELECTs for 300 events"
    finally:
        sa_event.remove(Engine, "before_cursor_execute", record)
