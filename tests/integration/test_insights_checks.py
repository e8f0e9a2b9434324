"""Checks of insights as a whole: projections rebuilt from the stream equal the live ones, and
schemathesis finds no 5xx and no response outside the OpenAPI document."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy import func, select

from services.insights import store
from services.insights.app import definition
from shared.bus import STREAM, durable_name
from shared.clock import SystemClock
from shared.service import Running, Service
from tests.integration.test_insights_api import auth, fed
from tests.integration.test_insights_service import Insights, insights
from tests.support import servers
from tests.support.serving import served
from tests.support.waiting import eventually, settings_for
from tests.unit.insights.scenario import PROGRAM, sample_program
from tests.unit.insights.test_handlers import read_models


@contextlib.asynccontextmanager
async def second_database(database_url: str | None, tmp_path: Any) -> AsyncIterator[str | None]:
    """Another empty database of the same kind (None: SQLite in another data directory)."""
    if database_url is None:
        yield None
        return
    base, _, _ = database_url.rpartition("/")
    name = f"mentorship_rebuild_{uuid.uuid4().hex[:10]}"
    admin = servers.plain_url(database_url)
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield f"{base}/{name}"
    finally:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def timers_done(running: Running) -> None:
    """Waits until no contact deadline that has passed is still to be done."""

    async def none_due() -> bool:
        async with running.sessions() as session:
            due = await session.scalar(
                select(func.count())
                .select_from(store.timers)
                .where(
                    store.timers.c.status == "pending", store.timers.c.due_at <= running.clock.now()
                )
            )
        return due == 0

    await eventually(none_due, what="the contact deadlines that passed")


async def test_read_models_rebuilt_from_the_stream_equal_the_live_ones(
    tmp_path, nats_server, js, database_url
):
    events = sample_program(now=dt.datetime.now(dt.UTC)).events
    live = settings_for(tmp_path / "live", nats_server.url, database_url)
    async with insights(live) as app:
        token = await app.token_for(PROGRAM)
        await fed(app, js, token, events)
        running = app.service.running
        assert running is not None
        await timers_done(running)
        expected = await read_models(running.sessions)
    # from scratch: a new, empty database and consumers that start at the stream's beginning
    for subscription in definition().subscriptions:
        await js.delete_consumer(STREAM, durable_name("insights", subscription.event.subject))
    async with second_database(database_url, tmp_path) as url:
        rebuilt = settings_for(tmp_path / "rebuilt", nats_server.url, url)
        async with insights(rebuilt) as app:
            token = await app.token_for(PROGRAM)
            # nothing new is published: the stream already holds it all
            await fed(app, js, token, [], expected=len(events))
            running = app.service.running
            assert running is not None
            await timers_done(running)
            found = await read_models(running.sessions)
    assert found.keys() == expected.keys()
    # pairs.scored_at is the instant health was last scored, and pairs.at_risk_crossings how
    # often health crossed into risk on the way: a contact deadline that passed between two
    # events fires or not depending on when those events arrived (docs/insights.md, "Known
    # limits"); what coordinators see (health, score, reasons) must be equal
    columns = list(store.PairView.__table__.c.keys())
    path_dependent = {columns.index("scored_at"), columns.index("at_risk_crossings")}
    for rows in (found, expected):
        rows["pairs"] = [
            tuple(value for i, value in enumerate(row) if i not in path_dependent)
            for row in rows["pairs"]
        ]
    for table in expected:
        assert found[table] == expected[table], table


def check_api(base_url: str, token: str, document: dict[str, Any], examples: int) -> int:
    """Runs schemathesis' checks on every operation, mostly for the token's own program."""
    schema = schemathesis.openapi.from_dict(document)
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(), own=st.booleans())
        @settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case: Any, own: bool) -> None:
            if own:  # else a random program: the token's scope answers 403, as documented
                case.path_parameters["program_id"] = PROGRAM
            if (case.query or {}).get("cursor") is None:
                case.call_and_validate(base_url=base_url, headers=auth(token))
                return
            # a cursor is opaque: one made up fits the schema, yet no list handed it out, so it
            # is refused with the documented 400 (or 401/403/404 before it is read)
            response = case.call_and_validate(
                base_url=base_url,
                headers=auth(token),
                excluded_checks=[positive_data_acceptance],
            )
            assert response.status_code in (400, 401, 403, 404), response.text

        run()
        checked += 1
    return checked


async def test_schemathesis_finds_no_server_error_and_no_response_outside_the_schema(
    tmp_path, nats_server, js, database_url
):
    service = Service(
        definition(), settings_for(tmp_path, nats_server.url, database_url), SystemClock()
    )
    async with served(service) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        app = Insights(service, client)
        token = await app.token_for(PROGRAM)
        await fed(app, js, token, sample_program(now=dt.datetime.now(dt.UTC)).events)
        document = (await client.get("/openapi.json", headers=auth(token))).json()
        checked = await asyncio.to_thread(check_api, base_url, token, document, 25)
    assert checked == 11
