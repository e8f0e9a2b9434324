"""Missed sessions and check-in escalation on the durable timers, driven by the fake clock."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from services.scheduling import checkins, followups, store
from services.scheduling.handlers import (
    on_checkin_submitted,
    on_pair_formed,
    on_participant_registered,
    on_session_held,
)
from shared.events import CheckinSubmitted, PairFormed, ParticipantRegistered, SessionHeld
from shared.timers import TimerRunner
from tests.support.factories import envelope, registration
from tests.support.handlers import HandlerDb, handler_db

UTC = dt.UTC


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[HandlerDb]:
    async with handler_db(
        store.Base.metadata, store.delivery, tmp_path, source="scheduling",
        checkin_escalation_by_program={"prog": "48,96,168"},
    ) as db:  # fmt: skip
        yield db


def set_clock(db: HandlerDb, at: dt.datetime) -> None:
    db.clock.advance(at - db.clock.now())


def runner(db: HandlerDb) -> TimerRunner:
    return TimerRunner(
        store.timers, followups.HANDLERS, sessions=db.sessions, unit_of_work=db.unit_of_work,
        clock=db.clock,
    )  # fmt: skip


async def emitted(db: HandlerDb, subject: str) -> list[dict[str, Any]]:
    outbox = db.tables.outbox
    async with db.sessions() as session:
        rows = await session.execute(
            select(outbox.c.payload).where(outbox.c.subject == subject).order_by(outbox.c.id)
        )
        return [json.loads(r.payload) for r in rows]


async def formed(db: HandlerDb) -> Any:
    for pid, role in (("m", "mentor"), ("e", "mentee")):
        body = registration("prog", pid, role=role)
        await db.apply(on_participant_registered, ParticipantRegistered.model_validate(body))
    pair = PairFormed.model_validate(
        envelope("prog", pair_id="p", round_id="r", mentor_id="m", mentee_id="e", language="en")
    )
    uow = await db.apply(on_pair_formed, pair)
    return uow.emitted[0]  # the kickoff


async def test_an_unconfirmed_session_is_missed_by_both_after_the_confirmation_time(db):
    kickoff = await formed(db)
    set_clock(db, kickoff.end + dt.timedelta(hours=23))
    await runner(db).run_due()
    assert await emitted(db, "mentorship.session.missed") == []
    set_clock(db, kickoff.end + dt.timedelta(hours=24, minutes=1))
    await runner(db).run_due()
    [missed] = await emitted(db, "mentorship.session.missed")
    assert missed["session_id"] == kickoff.session_id
    assert (missed["no_show_ids"], missed["confirmed_ids"]) == (["m", "e"], [])
    async with db.sessions() as session:
        row = await store.get_session(session, program_id="prog", session_id=kickoff.session_id)
    assert row is not None and row.status == "missed"


async def test_a_held_session_is_never_reported_missed(db):
    kickoff = await formed(db)
    held = SessionHeld.model_validate(
        envelope(
            "prog", session_id=kickoff.session_id, pair_id="p", held_at=kickoff.start.isoformat(),
            duration_minutes=50, present_ids=["m", "e"], speaking_share={"m": 0.4, "e": 0.6},
            source="video-tool",
        )
    )  # fmt: skip
    await db.apply(on_session_held, held)
    set_clock(db, kickoff.end + dt.timedelta(days=3))
    await runner(db).run_due()
    missed = await emitted(db, "mentorship.session.missed")
    assert kickoff.session_id not in {m["session_id"] for m in missed}
    async with db.sessions() as session:
        row = await store.get_session(session, program_id="prog", session_id=kickoff.session_id)
    assert row is not None and (row.status, row.attendance) == ("held", {"m": True, "e": True})


async def test_a_check_in_is_due_then_escalates_once_per_level(db):
    await formed(db)
    start = db.clock.now()
    set_clock(db, start + dt.timedelta(days=14))
    await runner(db).run_due()
    [due] = await emitted(db, "mentorship.checkin.due")
    assert due["participant_id"] == "e"
    levels = []
    for hours in (47, 49, 97, 169, 400):
        set_clock(db, start + dt.timedelta(days=14, hours=hours))
        await runner(db).run_due()
        overdue = await emitted(db, "mentorship.checkin.overdue")
        levels.append(
            [o["escalation_level"] for o in overdue if o["checkin_id"] == due["checkin_id"]]
        )
    assert levels == [[], [1], [1, 2], [1, 2, 3], [1, 2, 3]]


async def test_a_report_stops_the_escalation(db):
    await formed(db)
    start = db.clock.now()
    set_clock(db, start + dt.timedelta(days=14, hours=49))
    await runner(db).run_due()  # the check-in is due; it arms level 1, due already
    await runner(db).run_due()  # level 1
    [due] = await emitted(db, "mentorship.checkin.due")
    report = CheckinSubmitted.model_validate(
        envelope(
            "prog", checkin_id=due["checkin_id"], pair_id="p", participant_id="e", progress=4,
            accomplishments=["shipped"],
            roadblocks=[{"roadblock": "tests", "proposed_solution": "pair"}],
        )
    )  # fmt: skip
    await db.apply(on_checkin_submitted, report)
    set_clock(db, start + dt.timedelta(days=30))
    await runner(db).run_due()
    overdue = [
        o
        for o in await emitted(db, "mentorship.checkin.overdue")
        if o["checkin_id"] == due["checkin_id"]
    ]
    assert [o["escalation_level"] for o in overdue] == [1]


def test_escalation_hours_are_checked_with_a_fix_in_the_message():
    assert checkins.escalation_hours("a", "48,96,168", {"b": "1,2,3"}) == (48, 96, 168)
    assert checkins.escalation_hours("b", "48,96,168", {"b": "1,2,3"}) == (1, 2, 3)
    with pytest.raises(ValueError, match="MENTORSHIP_CHECKIN_ESCALATION_HOURS"):
        checkins.escalation_hours("a", "soon", {})
    with pytest.raises(ValueError, match="three increasing"):
        checkins.escalation_hours("a", "96,48,168", {})


def test_a_session_is_held_only_when_two_people_were_there():
    assert checkins.attendance(["m", "e"], ["m", "e", "stranger"]).held
    alone = checkins.attendance(["m", "e"], ["m"])
    assert not alone.held and alone.absent == ("e",)
