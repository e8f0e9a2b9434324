"""scheduling's migration 0003 on SQLite and PostgreSQL: a kickoff planned before series becomes
a single-session meeting, and two occurrences of a series may share their UID."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import migrations
from shared.db import make_engine

AT = dt.datetime(2027, 3, 3, 14, tzinfo=dt.UTC)


@pytest.fixture
async def engine(tmp_path: Path, database_url: str | None) -> AsyncIterator[AsyncEngine]:
    url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'scheduling.sqlite3'}"
    made = make_engine(url, schema="scheduling")
    yield made
    await made.dispose()


async def test_a_kickoff_of_revision_0002_becomes_a_meeting_and_uids_may_repeat(engine):
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text('CREATE SCHEMA IF NOT EXISTS "scheduling"'))
        await conn.run_sync(
            lambda sync: command.upgrade(migrations.alembic_config("scheduling", sync), "0002")
        )
        await conn.execute(
            text(
                'INSERT INTO sessions (program_id, session_id, pair_id, kind, status, start, "end",'
                " anchor_timezone, uid, sequence, attendee_ids, note) VALUES ('prog', 'k1', 'p1',"
                " 'kickoff', 'scheduled', :start, :end, 'Europe/Berlin', 'k1@mentorship', 0,"
                " :ids, NULL)"
            ),
            {"start": AT, "end": AT + dt.timedelta(hours=1), "ids": json.dumps(["m", "e"])},
        )
    await migrations.upgrade(engine, service="scheduling")
    async with engine.begin() as conn:
        meeting = (
            await conn.execute(text("SELECT meeting_id, uid, mentor_id, mentee_id FROM meetings"))
        ).all()
        session = (
            await conn.execute(text("SELECT meeting_id, mentor_id, mentee_id FROM sessions"))
        ).all()
        # occurrences of one series share the UID now
        await conn.execute(
            text(
                'INSERT INTO sessions (program_id, session_id, pair_id, kind, status, start, "end",'
                " anchor_timezone, uid, sequence, attendee_ids) VALUES ('prog', 'o2', 'p1',"
                " 'regular', 'scheduled', :start, :end, 'Europe/Berlin', 'k1@mentorship', 0, :ids)"
            ),
            {"start": AT, "end": AT, "ids": json.dumps(["m", "e"])},
        )
    assert [tuple(r) for r in meeting] == [("k1", "k1@mentorship", "m", "e")]
    assert [tuple(r) for r in session] == [("k1", "m", "e")]
