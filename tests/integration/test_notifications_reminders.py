"""Reminders on both databases (the timer rows, the prefix withdrawal and the upserts differ
between SQLite and PostgreSQL): armed, moved, withdrawn, sent once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.notifications import store
from shared.clock import FixedClock
from shared.db import make_engine, make_sessions
from shared.settings import Settings
from tests.support.handlers import START, HandlerDb
from tests.unit.notifications import test_reminders as unit


@pytest.fixture
async def db(tmp_path: Path, database_url: str | None) -> AsyncIterator[HandlerDb]:
    url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'reminders.sqlite3'}"
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(store.Base.metadata.create_all)
    db = HandlerDb(
        sessions=make_sessions(engine),
        tables=store.delivery_tables,
        clock=FixedClock(START),
        settings=Settings(
            data_dir=tmp_path / "data", mail_from="team@mentoring.example", link_secret="x" * 40
        ),
        source="notifications",
    )
    for person in (unit.person("m", role="mentor"), unit.person("e", timezone="Asia/Tokyo")):
        await db.apply(unit.on_participant_registered, person)
    try:
        yield db
    finally:
        await engine.dispose()


async def test_reminders_are_armed_moved_withdrawn_and_sent_once(db):
    await db.apply(unit.on_session_scheduled, unit.scheduled())
    await db.apply(unit.on_session_scheduled, unit.scheduled(session_id="s_%"))  # LIKE-unsafe id
    moved = unit.START + 48 * unit.HOUR
    await db.apply(unit.on_session_rescheduled, unit.rescheduled(moved))
    timers = await unit.reminder_timers(db)
    assert {k: v for k, v in timers.items() if k.startswith("s1|")} == {
        "s1||1440": moved - 24 * unit.HOUR,
        "s1||60": moved - unit.HOUR,
    }
    await db.apply(unit.on_session_cancelled, unit.cancelled(session_id="s_%"))
    assert sorted(await unit.reminder_timers(db)) == ["s1||1440", "s1||60"]
    assert await unit.run_at(db, moved - 24 * unit.HOUR) == 1
    assert await unit.run_at(db, moved - unit.HOUR) == 1
    assert await unit.run_at(db, moved + unit.HOUR) == 0
    mails = await unit.reminder_mails(db)
    assert len(mails) == 4 and len({row.message_id for row, _ in mails}) == 4
    assert await unit.reminder_timers(db) == {}
