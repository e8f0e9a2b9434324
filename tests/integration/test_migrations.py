"""Alembic migrations per service on SQLite and PostgreSQL: to head, idempotent, stamping of
databases made by create_all, downgrade, concurrent replicas, and `mentorship migrate`."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import migrations
from shared.db import create_schema, make_engine
from shared.settings import SERVICES

Engines = Callable[[str], AsyncEngine]
AT = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)
# schemas and concurrent replicas exist on PostgreSQL only (SQLite: one file, one process)
ON_POSTGRESQL_ONLY = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
async def engine_for(tmp_path: Path, database_url: str | None) -> AsyncIterator[Engines]:
    """Engines as the services make them: a SQLite file each, or one schema each on PostgreSQL."""
    made: list[AsyncEngine] = []

    def make(service: str) -> AsyncEngine:
        url = database_url or f"sqlite+aiosqlite:///{tmp_path / f'{service}.sqlite3'}"
        made.append(make_engine(url, schema=service))
        return made[-1]

    yield make
    for engine in made:
        await engine.dispose()


def _shape(connection: Connection) -> dict[str, Any]:
    """Tables, columns, keys and indexes as the database reports them."""
    found = inspect(connection)
    return {
        table: (
            [(c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns(table)],
            found.get_pk_constraint(table)["constrained_columns"],
            sorted((i["name"], tuple(i["column_names"])) for i in found.get_indexes(table)),
        )
        for table in sorted(found.get_table_names())
    }


async def _shape_of(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as conn:
        return await conn.run_sync(_shape)


async def _to_first_revision_without_version_table(engine: AsyncEngine, service: str) -> None:
    """The tables as create_all made them before migrations existed: 0001, no alembic_version."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text(f'CREATE SCHEMA "{service}"'))
        await conn.run_sync(
            lambda sync: command.upgrade(migrations.alembic_config(service, sync), "0001")
        )
        await conn.execute(text(f"DROP TABLE {_version_table(conn.dialect.name, service)}"))


def _version_table(dialect: str, service: str) -> str:
    return f'"{service}".alembic_version' if dialect == "postgresql" else "alembic_version"


async def _count(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


async def test_an_empty_database_upgrades_to_head_and_matches_the_models(engine_for):
    for service in SERVICES:
        engine = engine_for(service)
        await migrations.upgrade(engine, service=service)
        assert await migrations.current_revision(engine, service=service) == (
            migrations.head_revision(service)
        )
        assert await migrations.pending_diff(engine, service=service) == []
        tables = set(await _shape_of(engine))
        assert set(migrations.service_metadata(service).tables) <= tables


async def test_a_new_database_created_from_the_models_is_at_head_and_matches_them(tmp_path):
    for service in SERVICES:
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / f'{service}.sqlite3'}")
        try:
            await migrations.upgrade(engine, service=service, create_empty=True)
            assert await migrations.current_revision(engine, service=service) == (
                migrations.head_revision(service)
            )
            assert await migrations.pending_diff(engine, service=service) == []
            await migrations.upgrade(engine, service=service, create_empty=True)  # no-op now
            assert await migrations.pending_diff(engine, service=service) == []
        finally:
            await engine.dispose()


async def test_upgrading_a_database_at_head_again_changes_nothing(engine_for):
    for service in SERVICES:
        engine = engine_for(service)
        await migrations.upgrade(engine, service=service)
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO inbox (consumer, event_id, processed_at) VALUES ('c', 'e', :at)"),
                {"at": AT},
            )
        before = await _shape_of(engine)
        await migrations.upgrade(engine, service=service)
        assert await _shape_of(engine) == before
        assert await _count(engine, "inbox") == 1
        assert await migrations.pending_diff(engine, service=service) == []


async def test_a_database_created_before_migrations_is_stamped_and_upgraded_keeping_its_rows(
    engine_for,
):
    for service in SERVICES:
        engine = engine_for(service)
        await _to_first_revision_without_version_table(engine, service)
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO inbox (consumer, event_id, processed_at) VALUES ('c', 'e', :at)"),
                {"at": AT},
            )
        assert await migrations.current_revision(engine, service=service) is None

        await migrations.upgrade(engine, service=service)

        assert await migrations.current_revision(engine, service=service) == (
            migrations.head_revision(service)
        )
        assert await migrations.pending_diff(engine, service=service) == []
        assert await _count(engine, "inbox") == 1


async def test_pairs_of_the_first_revision_survive_the_upgrade_to_program_scoped_keys(engine_for):
    engine = engine_for("pairing")
    await _to_first_revision_without_version_table(engine, "pairing")
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO pairs (pair_id, program_id, round_id, mentor_id, mentee_id, "
                "language, status, formed_at) VALUES ('p1', 'prog', 'r1', 'm', 'e', 'en', "
                "'active', :at)"
            ),
            {"at": AT},
        )
    await migrations.upgrade(engine, service="pairing")
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT program_id, pair_id FROM pairs"))).all()
    assert [tuple(row) for row in rows] == [("prog", "p1")]


async def test_pending_deliveries_of_the_first_revision_become_send_timers_and_come_back(
    engine_for,
):
    engine = engine_for("notifications")
    await _to_first_revision_without_version_table(engine, "notifications")
    async with engine.begin() as conn:
        for delivery_id, status, next_attempt_at in (
            ("d-pending", "pending", AT),
            ("d-sent", "sent", AT - dt.timedelta(days=1)),
        ):
            await conn.execute(
                text(
                    "INSERT INTO deliveries (delivery_id, idempotency_key, program_id, "
                    "recipient_id, recipient_email, kind, source_event_id, message_id, message, "
                    "status, attempts, next_attempt_at) VALUES (:id, :id, 'prog', 'r', "
                    "'r@example.org', 'welcome', 'e', '<m@x>', :message, :status, 1, :at)"
                ),
                {"id": delivery_id, "message": b"mime", "status": status, "at": next_attempt_at},
            )

    await migrations.upgrade(engine, service="notifications")
    async with engine.connect() as conn:
        found = await conn.execute(text("SELECT program_id, kind, key, status FROM timers"))
        assert [tuple(row) for row in found] == [
            ("prog", "notifications.send", "d-pending", "pending")
        ]
    assert await _count(engine, "deliveries") == 2

    await migrations.downgrade(engine, service="notifications", revision="0001")
    async with engine.connect() as conn:
        due = await conn.execute(
            text("SELECT next_attempt_at FROM deliveries WHERE delivery_id = 'd-pending'")
        )
        assert _as_utc(due.scalar_one()) == AT


def _as_utc(value: Any) -> dt.datetime:
    """A timestamp read back by raw SQL: a datetime (PostgreSQL) or its text (SQLite)."""
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
    return moment.replace(tzinfo=moment.tzinfo or dt.UTC).astimezone(dt.UTC)


async def test_a_database_create_all_made_from_todays_models_is_stamped_at_head(engine_for):
    for service in SERVICES:
        engine = engine_for(service)
        await create_schema(engine, migrations.service_metadata(service), schema=service)

        await migrations.upgrade(engine, service=service)

        assert await migrations.current_revision(engine, service=service) == (
            migrations.head_revision(service)
        )
        assert await migrations.pending_diff(engine, service=service) == []


async def test_downgrade_to_base_removes_every_table_and_upgrade_restores_head(engine_for):
    for service in SERVICES:
        engine = engine_for(service)
        await migrations.upgrade(engine, service=service)
        at_head = await _shape_of(engine)

        await migrations.downgrade(engine, service=service, revision="base")
        assert set(await _shape_of(engine)) <= {"alembic_version"}
        assert await migrations.current_revision(engine, service=service) is None

        await migrations.upgrade(engine, service=service)
        assert await _shape_of(engine) == at_head
        assert await migrations.pending_diff(engine, service=service) == []


async def test_a_database_behind_head_is_reported_with_what_to_run(engine_for):
    engine = engine_for("pairing")
    await _to_first_revision_without_version_table(engine, "pairing")
    async with engine.begin() as conn:
        await conn.run_sync(
            lambda sync: command.stamp(migrations.alembic_config("pairing", sync), "0001")
        )
    if migrations.head_revision("pairing") == "0001":
        pytest.fail("pairing has a single revision: this test needs one after 0001")

    differences = await migrations.pending_diff(engine, service="pairing")

    assert differences[0] == (
        f"database at revision 0001, migrations at {migrations.head_revision('pairing')}: "
        "run `mentorship migrate`"
    )


async def test_a_column_added_by_hand_is_reported_as_a_difference(engine_for):
    engine = engine_for("insights")
    await migrations.upgrade(engine, service="insights")
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE event_counts ADD COLUMN stray INTEGER"))

    assert await migrations.pending_diff(engine, service="insights") == [
        "remove_column event_counts.stray"
    ]


async def test_new_revision_refuses_to_write_an_empty_revision(tmp_path, monkeypatch):
    # a copy of the folder: were the models ahead of the migrations (another change under way
    # in this work tree), a revision must not land in the source tree
    real = migrations.migrations_folder("pairing")
    copy = tmp_path / "migrations"
    shutil.copytree(real, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(migrations, "migrations_folder", lambda service: copy)
    before = sorted(migrations.migrations_folder("pairing").glob("versions/*.py"))
    url = f"sqlite+aiosqlite:///{tmp_path / 'pairing.sqlite3'}"

    with pytest.raises(migrations.MigrationError, match="agree already"):
        await asyncio.to_thread(
            migrations.new_revision, service="pairing", message="nothing", url=url
        )

    assert sorted(migrations.migrations_folder("pairing").glob("versions/*.py")) == before


@ON_POSTGRESQL_ONLY
async def test_on_postgresql_each_version_table_lives_in_its_service_schema(engine_for):
    for service in SERVICES:
        await migrations.upgrade(engine_for(service), service=service)
    async with engine_for("pairing").connect() as conn:
        found = await conn.execute(
            text(
                "SELECT table_schema FROM information_schema.tables "
                "WHERE table_name = 'alembic_version' ORDER BY table_schema"
            )
        )
        schemas = [row[0] for row in found]
    assert schemas == sorted(SERVICES)


@ON_POSTGRESQL_ONLY
async def test_two_replicas_upgrading_one_empty_postgresql_schema_at_once_both_succeed(engine_for):
    first, second = engine_for("notifications"), engine_for("notifications")

    await asyncio.gather(
        migrations.upgrade(first, service="notifications"),
        migrations.upgrade(second, service="notifications"),
    )

    head = migrations.head_revision("notifications")
    assert await migrations.current_revision(first, service="notifications") == head
    assert await migrations.pending_diff(second, service="notifications") == []


def _mentorship(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, from another working directory."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MENTORSHIP_")}
    clean |= {"MENTORSHIP_DATA_DIR": str(tmp_path / "data"), **env}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "migrate", *args],
        cwd=tmp_path,
        env=clean | {"PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_migrate_brings_every_service_to_head_with_a_line_each_then_finds_nothing_to_do(
    tmp_path,
):
    first = _mentorship(tmp_path)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == list(SERVICES)
    for service, line in zip(SERVICES, lines, strict=True):
        assert f"empty -> {migrations.head_revision(service)}" in line
        assert str(tmp_path / "data" / f"{service}.sqlite3") in line

    again = _mentorship(tmp_path, "--service", "pairing")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"pairing: already at {migrations.head_revision('pairing')}")


def test_migrate_check_passes_on_throwaway_databases(tmp_path):
    result = _mentorship(tmp_path, "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("models and migrations agree") == len(SERVICES)
    assert not (tmp_path / "data").exists()


async def test_migrate_check_exits_1_listing_a_drifted_database(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'insights.sqlite3'}"
    engine = make_engine(url, schema="insights")
    try:
        await migrations.upgrade(engine, service="insights")
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE event_counts ADD COLUMN stray INTEGER"))
    finally:
        await engine.dispose()

    result = await asyncio.to_thread(
        _mentorship, tmp_path, "--check", "--service", "insights", "--url", url
    )

    assert result.returncode == 1
    assert "insights: models and migrations disagree" in result.stdout
    assert "  remove_column event_counts.stray" in result.stdout
    assert "mentorship migrate --new" in result.stderr


def test_migrate_names_the_database_and_the_variables_when_it_cannot_connect(tmp_path):
    unreachable = "postgresql+asyncpg://nobody@127.0.0.1:1/nowhere"

    result = _mentorship(tmp_path, "--service", "scheduling", MENTORSHIP_DATABASE_URL=unreachable)

    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: scheduling: the database at " + unreachable)
    assert "MENTORSHIP_SCHEDULING_DATABASE_URL, else MENTORSHIP_DATABASE_URL" in line
