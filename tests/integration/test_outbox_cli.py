"""`mentorship outbox list|retry` on a service database that holds a parked row."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import insert, select

from cli.main import main
from services.pairing import store
from shared import migrations
from shared.db import make_engine, make_sessions
from shared.settings import Settings


async def _database_with_a_parked_row(settings: Settings) -> None:
    engine = make_engine(settings.database_url_for("pairing"), schema="pairing")
    await migrations.upgrade(engine, service="pairing")
    now = dt.datetime(2027, 3, 1, tzinfo=dt.UTC)
    async with make_sessions(engine)() as session, session.begin():
        await session.execute(
            insert(store.delivery.outbox).values(
                event_id="e-huge",
                subject="mentorship.pair.formed",
                payload=b"x" * 2048,
                headers="{}",
                created_at=now,
                attempts=1,
                parked_at=now,
                last_error="MaxPayloadError: nats: maximum payload exceeded",
            )
        )
    await engine.dispose()


async def _parked_at(settings: Settings) -> list[object]:
    engine = make_engine(settings.database_url_for("pairing"), schema="pairing")
    async with make_sessions(engine)() as session:
        rows = list(await session.scalars(select(store.delivery.outbox.c.parked_at)))
    await engine.dispose()
    return rows


async def test_outbox_list_shows_parked_rows_and_retry_requeues_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MENTORSHIP_DATA_DIR", str(tmp_path))
    settings = Settings()
    await _database_with_a_parked_row(settings)
    assert await _to_thread(main, ["outbox", "list", "--service", "pairing"]) == 0
    out = capsys.readouterr().out
    assert "pairing #1 mentorship.pair.formed (2,048 bytes, event e-huge)" in out
    assert "MaxPayloadError" in out
    assert await _to_thread(main, ["outbox", "retry", "--service", "pairing", "--id", "1"]) == 0
    assert "1 of 1 row(s) back in the relay's queue" in capsys.readouterr().out
    assert await _parked_at(settings) == [None]


async def test_outbox_list_refuses_to_create_a_database(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MENTORSHIP_DATA_DIR", str(tmp_path / "nowhere"))
    assert await _to_thread(main, ["outbox", "list"]) == 1
    assert "no pairing database at" in capsys.readouterr().err
    assert not (tmp_path / "nowhere" / "pairing.sqlite3").exists()


async def _to_thread(fn, *args):  # the CLI runs its own event loop
    import asyncio

    return await asyncio.to_thread(fn, *args)
