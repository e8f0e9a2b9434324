"""pairing's migration 0003 on SQLite and PostgreSQL: rows an earlier race left are repaired."""

from __future__ import annotations

import datetime as dt

from alembic import command
from sqlalchemy import text

from shared import migrations
from tests.integration.test_migrations import engine_for  # noqa: F401 (fixture)

AT = dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC)


async def test_0003_keeps_each_mentees_earliest_open_pair_and_counts_mentors_slots(engine_for):  # noqa: F811
    engine = engine_for("pairing")
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text('CREATE SCHEMA "pairing"'))
        await conn.run_sync(
            lambda sync: command.upgrade(migrations.alembic_config("pairing", sync), "0002")
        )
        for i, mentor in enumerate(("m-1", "m-1", "m-2", "m-1")):
            await conn.execute(
                text(
                    "INSERT INTO participants (program_id, participant_id, role, timezone, "
                    "working_hours, languages, skills_offered, skills_sought, capacity, active, "
                    "registered_at) VALUES ('prog', :id, 'mentor', 'UTC', '[]', '[]', '[]', "
                    "'[]', 3, true, :at) ON CONFLICT DO NOTHING"
                ),
                {"id": mentor, "at": AT},
            )
            # e-1: paired with m-1 twice (the same pair), then with m-2; e-2 once, with m-1
            await conn.execute(
                text(
                    "INSERT INTO pairs (program_id, pair_id, round_id, mentor_id, mentee_id, "
                    "language, status, formed_at) VALUES ('prog', :pair, 'r', :mentor, :mentee, "
                    "'en', 'active', :at)"
                ),
                {
                    "pair": f"p{i}",
                    "mentor": mentor,
                    "mentee": "e-2" if i == 3 else "e-1",
                    "at": AT + dt.timedelta(minutes=i),
                },
            )
    await migrations.upgrade(engine, service="pairing")
    async with engine.connect() as conn:
        pairs = (
            await conn.execute(text("SELECT pair_id, status FROM pairs ORDER BY pair_id"))
        ).all()
        slots = (
            await conn.execute(
                text("SELECT participant_id, active_pairs FROM participants ORDER BY 1")
            )
        ).all()
    assert [tuple(p) for p in pairs] == [("p0", "active"), ("p2", "ended"), ("p3", "active")]
    assert [tuple(s) for s in slots] == [("m-1", 2), ("m-2", 0)]
