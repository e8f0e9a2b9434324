"""A charter drives the regular series (real SQLite): cadence and length re-planned, once."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import recurring_ical_events
from hypothesis import given
from hypothesis import strategies as st
from icalendar import Calendar
from sqlalchemy import select

from services.scheduling import followups, pauses, series, store
from services.scheduling.handlers import (
    on_charter_agreed,
    on_pair_ended,
    on_pair_formed,
    on_pair_paused,
    on_pair_resumed,
    on_participant_registered,
)
from shared.events import (
    CharterAgreed,
    PairEnded,
    PairFormed,
    PairPaused,
    PairResumed,
    ParticipantRegistered,
    SessionCancelled,
    SessionRescheduled,
    SessionScheduled,
    SessionUnschedulable,
)
from shared.timers import TimerRunner
from shared.worktime import Interval
from tests.support.factories import envelope, registration
from tests.support.handlers import HandlerDb, handler_db
from tests.unit.scheduling.test_contingencies import nine_to_five
from tests.unit.scheduling.test_planning import inside

UTC = dt.UTC
BERLIN = "Europe/Berlin"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[HandlerDb]:
    async with handler_db(
        store.Base.metadata, store.delivery, tmp_path, source="scheduling", session_cadence_days=14
    ) as db:
        yield db


def event(cls: type, **fields: Any) -> Any:
    return cls.model_validate(envelope("prog", **fields))


def charter(cadence_days: int, minutes: int) -> CharterAgreed:
    return event(CharterAgreed, pair_id="p", cadence_days=cadence_days, session_minutes=minutes)


async def formed_pair(db: HandlerDb) -> tuple[SessionScheduled, SessionScheduled]:
    for pid, role in (("m", "mentor"), ("e", "mentee")):
        body = registration("prog", pid, role=role)
        await db.apply(on_participant_registered, ParticipantRegistered.model_validate(body))
    formed = event(
        PairFormed, pair_id="p", round_id="r", mentor_id="m", mentee_id="e", language="en"
    )
    kickoff, regular = (await db.apply(on_pair_formed, formed)).emitted
    assert isinstance(kickoff, SessionScheduled) and isinstance(regular, SessionScheduled)
    return kickoff, regular


async def all_rows(db: HandlerDb) -> list[store.Session]:
    async with db.sessions() as session:
        return list(await session.scalars(select(store.Session)))


async def timers(db: HandlerDb) -> list[tuple[Any, ...]]:
    async with db.sessions() as session:
        return [tuple(r) for r in (await session.execute(store.timers.select())).all()]


def span(row: store.Session) -> Interval:
    assert row.start is not None and row.end is not None
    return Interval(store.utc(row.start), store.utc(row.end))


async def test_a_weekly_charter_replaces_the_future_of_a_biweekly_series_with_a_new_one(db):
    kickoff, regular = await formed_pair(db)
    assert regular.rrule and "INTERVAL=2" in regular.rrule
    db.clock.advance(dt.timedelta(days=30))  # the kickoff and the first occurrence are past
    now = db.clock.now()
    before = {r.session_id: (r.status, r.start) for r in await all_rows(db)}
    uow = await db.apply(on_charter_agreed, charter(7, 60))
    cancelled, scheduled = uow.emitted
    # the old series: its future occurrences cancelled under its own UID, SEQUENCE + 1
    assert isinstance(cancelled, SessionCancelled) and cancelled.uid == regular.uid
    assert cancelled.sequence == 1 and cancelled.recurrence_ids
    assert all(start > now for start in cancelled.starts)
    assert "weekly sessions of 60 min" in cancelled.reason
    cal = Calendar.from_ical(cancelled.ical)
    assert cal["METHOD"] == "CANCEL"
    assert {v["RECURRENCE-ID"].dt.astimezone(UTC) for v in cal.walk("VEVENT")} == set(
        cancelled.recurrence_ids
    )
    # the new series: a new UID, weekly, 60 minutes, in both people's hours
    assert isinstance(scheduled, SessionScheduled) and scheduled.uid != regular.uid
    assert scheduled.rrule and scheduled.rrule.startswith("FREQ=WEEKLY;INTERVAL=1;")
    assert scheduled.end - scheduled.start == dt.timedelta(minutes=60)
    assert scheduled.start >= now + dt.timedelta(hours=db.settings.session_notice_hours)
    expanded = recurring_ical_events.of(Calendar.from_ical(scheduled.ical)).between(
        scheduled.start, scheduled.start + dt.timedelta(weeks=8)
    )
    starts = sorted(e["DTSTART"].dt.astimezone(UTC) for e in expanded)
    assert len(starts) == 8
    assert all(b - a == dt.timedelta(weeks=1) for a, b in itertools.pairwise(starts))
    # what was past (the kickoff, the first occurrence) is untouched
    rows = await all_rows(db)
    for row in rows:
        if row.start and store.utc(row.start) < now:
            assert before[row.session_id] == (row.status, row.start)
    new = [r for r in rows if r.meeting_id == scheduled.series_id and r.status == "scheduled"]
    assert len(new) >= 20
    old_future = [r for r in rows if r.meeting_id == regular.series_id and store.utc(r.start) > now]  # type: ignore[arg-type]
    assert old_future and all(r.status == "cancelled" for r in old_future)
    # nobody is in two sessions at once: the new series against everything still scheduled
    live = sorted((span(r) for r in rows if r.status == "scheduled"), key=lambda i: i.start)
    assert all(a.end <= b.start for a, b in itertools.pairwise(live))
    for row in new:
        assert inside(nine_to_five(BERLIN), span(row))
    assert kickoff.uid != scheduled.uid


async def test_a_second_charter_alike_changes_nothing(db):
    await formed_pair(db)
    first = await db.apply(on_charter_agreed, charter(7, 60))
    assert [type(e) for e in first.emitted] == [SessionCancelled, SessionScheduled]
    rows_before = {(r.session_id, r.status, r.start, r.sequence) for r in await all_rows(db)}
    timers_before = await timers(db)
    again = await db.apply(on_charter_agreed, charter(6, 60))  # 6 days: weekly all the same
    assert again.emitted == []
    assert {(r.session_id, r.status, r.start, r.sequence) for r in await all_rows(db)} == (
        rows_before
    )
    assert await timers(db) == timers_before  # the next check-in keeps its date


async def test_a_charter_matching_the_planned_series_changes_nothing(db):
    await formed_pair(db)
    timers_before = await timers(db)
    uow = await db.apply(on_charter_agreed, charter(14, 45))  # biweekly, 45 min: as planned
    assert uow.emitted == []
    assert await timers(db) == timers_before


async def test_a_charter_of_another_length_keeps_the_cadence_and_changes_the_length(db):
    await formed_pair(db)
    uow = await db.apply(on_charter_agreed, charter(14, 30))
    cancelled, scheduled = uow.emitted
    assert isinstance(cancelled, SessionCancelled) and isinstance(scheduled, SessionScheduled)
    assert scheduled.rrule and "INTERVAL=2" in scheduled.rrule
    assert scheduled.end - scheduled.start == dt.timedelta(minutes=30)


async def test_a_monthly_charter_plans_a_monthly_series_a_cadence_after_the_kickoff(db):
    kickoff, _ = await formed_pair(db)
    uow = await db.apply(on_charter_agreed, charter(30, 45))
    _, scheduled = uow.emitted
    assert isinstance(scheduled, SessionScheduled)
    assert scheduled.rrule and scheduled.rrule.startswith("FREQ=MONTHLY;BYDAY=")
    assert scheduled.start >= kickoff.start + dt.timedelta(days=27)


async def test_a_charter_no_time_fits_keeps_the_series_and_says_why(db):
    await formed_pair(db)
    async with db.unit_of_work() as uow:  # the mentee now works two hours a day
        mentee = await store.person_or_raise(uow.session, program_id="prog", participant_id="e")
        mentee.working_hours = [{"weekday": d, "start": "10:00", "end": "12:00"} for d in range(5)]
    before = {(r.session_id, r.status) for r in await all_rows(db)}
    uow = await db.apply(on_charter_agreed, charter(30, 180))
    [reason] = uow.emitted
    assert isinstance(reason, SessionUnschedulable) and reason.kind == "regular"
    assert "180 min" in reason.reason and "the current series stays" in reason.reason
    assert {(r.session_id, r.status) for r in await all_rows(db)} == before


async def test_a_charter_agreed_during_a_pause_plans_nothing_and_is_kept(db):
    await formed_pair(db)
    await db.apply(on_pair_paused, event(PairPaused, pair_id="p"))
    before = {(r.session_id, r.status) for r in await all_rows(db)}
    uow = await db.apply(on_charter_agreed, charter(7, 60))
    assert uow.emitted == []
    assert {(r.session_id, r.status) for r in await all_rows(db)} == before
    async with db.sessions() as session:
        pause = await session.get(store.Pause, ("prog", "p"))
        assert pause is not None and pause.charter is not None
        assert pause.charter["cadence_days"] == 7
    assert not [t for t in await timers(db) if t[1] == followups.DUE]  # check-ins stay stopped


async def test_a_charter_kept_during_a_pause_applies_on_resume_without_the_old_series(db):
    kickoff, regular = await formed_pair(db)
    await db.apply(on_pair_paused, event(PairPaused, pair_id="p"))
    await db.apply(on_charter_agreed, charter(7, 60))
    db.clock.advance(dt.timedelta(days=20))
    now = db.clock.now()
    uow = await db.apply(on_pair_resumed, event(PairResumed, pair_id="p"))
    [scheduled] = [e for e in uow.emitted if isinstance(e, SessionScheduled)]
    assert scheduled.uid not in (regular.uid, kickoff.uid)
    assert scheduled.rrule and scheduled.rrule.startswith("FREQ=WEEKLY;INTERVAL=1;")
    assert scheduled.end - scheduled.start == dt.timedelta(minutes=60)
    assert scheduled.start >= now + dt.timedelta(hours=db.settings.session_notice_hours)
    # the replaced series is not announced again: its paused occurrences stay cancelled
    back = [e for e in uow.emitted if isinstance(e, SessionRescheduled)]
    assert all(e.uid != regular.uid for e in back)
    rows = await all_rows(db)
    old = [r for r in rows if r.meeting_id == regular.series_id]
    assert old and all(r.status == "cancelled" for r in old)
    live = sorted((span(r) for r in rows if r.status == "scheduled"), key=lambda i: i.start)
    assert all(a.end <= b.start for a, b in itertools.pairwise(live))
    # check-ins restart at the charter's (weekly) pace; the pause is over
    [due] = [t for t in await timers(db) if t[1] == followups.DUE]
    assert due[5]["cadence_days"] == 7
    async with db.sessions() as session:
        assert await session.get(store.Pause, ("prog", "p")) is None


async def test_a_charter_kept_during_a_pause_with_an_end_applies_from_that_end(db):
    _, regular = await formed_pair(db)
    end = dt.datetime(2027, 4, 1, tzinfo=UTC)
    paused = await db.apply(on_pair_paused, event(PairPaused, pair_id="p", until="2027-04-01"))
    assert any(isinstance(e, SessionCancelled) for e in paused.emitted)
    assert (await db.apply(on_charter_agreed, charter(30, 45))).emitted == []
    run = TimerRunner(
        store.timers, followups.HANDLERS | pauses.HANDLERS, sessions=db.sessions,
        unit_of_work=db.unit_of_work, clock=db.clock,
    )  # fmt: skip
    db.clock.advance(end - db.clock.now() - dt.timedelta(minutes=1))
    await run.run_due()
    assert {r.meeting_id for r in await all_rows(db) if r.kind == "regular"} == {regular.series_id}
    db.clock.advance(dt.timedelta(minutes=2))
    await run.run_due()
    rows = await all_rows(db)
    new = [r for r in rows if r.meeting_id not in (regular.series_id, regular.session_id)]
    new = [r for r in new if r.kind == "regular" and r.status == "scheduled"]
    assert new, "the charter's monthly series is planned at the pause's end"
    assert min(store.utc(r.start) for r in new) >= end  # type: ignore[arg-type]
    old_after = [r for r in rows if r.meeting_id == regular.series_id and store.utc(r.start) > end]  # type: ignore[arg-type]
    assert old_after and all(r.status == "cancelled" for r in old_after)
    assert all("monthly sessions of 45 min" in (r.note or "") for r in old_after)
    [due] = [t for t in await timers(db) if t[1] == followups.DUE]
    assert due[5]["cadence_days"] == 14  # monthly meetings: check-ins every two weeks
    async with db.sessions() as session:
        assert await session.get(store.Pause, ("prog", "p")) is None


async def test_an_ended_pair_forgets_a_charter_kept_during_its_pause(db):
    await formed_pair(db)
    await db.apply(on_pair_paused, event(PairPaused, pair_id="p", until="2027-04-01"))
    await db.apply(on_charter_agreed, charter(7, 60))
    await db.apply(on_pair_ended, event(PairEnded, pair_id="p"))
    async with db.sessions() as session:
        assert await session.get(store.Pause, ("prog", "p")) is None
    assert not [t for t in await timers(db) if t[1] in (pauses.PAUSE_END, followups.DUE)]
    resumed = await db.apply(on_pair_resumed, event(PairResumed, pair_id="p"))
    assert not [e for e in resumed.emitted if isinstance(e, SessionScheduled)]


@pytest.fixture
async def rhythms_db(tmp_path: Path) -> AsyncIterator[HandlerDb]:
    async with handler_db(
        store.Base.metadata, store.delivery, tmp_path, source="scheduling",
        session_cadence_days=14, session_rhythms="coffee_chat,quarterly_reflection",
    ) as db:  # fmt: skip
        yield db


def charter_with(rhythms: dict[str, str], cadence_days: int = 14, minutes: int = 45) -> Any:
    return event(
        CharterAgreed, pair_id="p", cadence_days=cadence_days, session_minutes=minutes,
        rhythms=rhythms,
    )  # fmt: skip


async def planned(db: HandlerDb) -> dict[str, SessionScheduled]:
    """The pair as formed, each series by kind (kickoff, regular, coffee_chat, ...)."""
    for pid, role in (("m", "mentor"), ("e", "mentee")):
        body = registration("prog", pid, role=role)
        await db.apply(on_participant_registered, ParticipantRegistered.model_validate(body))
    formed = event(
        PairFormed, pair_id="p", round_id="r", mentor_id="m", mentee_id="e", language="en"
    )
    emitted = (await db.apply(on_pair_formed, formed)).emitted
    return {e.kind.value: e for e in emitted if isinstance(e, SessionScheduled)}


def no_overlaps(rows: list[store.Session]) -> None:
    live = sorted((span(r) for r in rows if r.status == "scheduled"), key=lambda i: i.start)
    assert all(a.end <= b.start for a, b in itertools.pairwise(live))


async def test_a_charter_stops_coffee_chats_and_makes_reflections_monthly(rhythms_db):
    db = rhythms_db
    formed = await planned(db)
    assert {"coffee_chat", "quarterly_reflection"} <= set(formed)
    now = db.clock.now()
    uow = await db.apply(
        on_charter_agreed, charter_with({"coffee_chat": "none", "quarterly_reflection": "monthly"})
    )
    cancelled = {e.uid: e for e in uow.emitted if isinstance(e, SessionCancelled)}
    [scheduled] = [e for e in uow.emitted if isinstance(e, SessionScheduled)]
    assert set(cancelled) == {formed["coffee_chat"].uid, formed["quarterly_reflection"].uid}
    assert "no coffee chats" in cancelled[formed["coffee_chat"].uid].reason
    assert formed["regular"].uid not in cancelled  # the one-to-ones are as agreed already
    assert scheduled.kind == "quarterly_reflection"
    assert scheduled.uid != formed["quarterly_reflection"].uid
    assert scheduled.rrule and scheduled.rrule.startswith("FREQ=MONTHLY;BYDAY=")
    assert scheduled.end - scheduled.start == dt.timedelta(minutes=60)
    assert scheduled.start >= now + dt.timedelta(hours=db.settings.session_notice_hours)
    rows = await all_rows(db)
    coffee = [r for r in rows if r.kind == "coffee_chat"]
    assert coffee and all(r.status == "cancelled" for r in coffee)
    no_overlaps(rows)
    for row in rows:
        if row.status == "scheduled":
            assert inside(nine_to_five(BERLIN), span(row))
    again = await db.apply(
        on_charter_agreed, charter_with({"coffee_chat": "none", "quarterly_reflection": "monthly"})
    )
    assert again.emitted == []  # as agreed already


async def test_a_charter_starts_weekly_coffee_chats_for_a_pair_that_had_none(db):
    formed = await planned(db)
    assert set(formed) == {"kickoff", "regular"}
    uow = await db.apply(on_charter_agreed, charter_with({"coffee_chat": "weekly"}))
    [scheduled] = uow.emitted
    assert isinstance(scheduled, SessionScheduled) and scheduled.kind == "coffee_chat"
    assert scheduled.rrule and scheduled.rrule.startswith("FREQ=WEEKLY;INTERVAL=1;")
    assert scheduled.end - scheduled.start == dt.timedelta(minutes=30)
    no_overlaps(await all_rows(db))
    stopped = await db.apply(on_charter_agreed, charter_with({"coffee_chat": "none"}))
    [cancelled] = stopped.emitted
    assert isinstance(cancelled, SessionCancelled) and cancelled.uid == scheduled.uid
    back = await db.apply(on_charter_agreed, charter_with({"coffee_chat": "weekly"}))
    [again] = back.emitted  # the rhythm agreed once more: a new series
    assert isinstance(again, SessionScheduled) and again.uid not in (scheduled.uid, "")


async def test_a_charter_without_rhythms_keeps_coffee_chats_and_reflections(rhythms_db):
    db = rhythms_db
    formed = await planned(db)
    uow = await db.apply(on_charter_agreed, charter(7, 60))
    touched = {e.uid for e in uow.emitted if isinstance(e, SessionCancelled | SessionScheduled)}
    assert formed["coffee_chat"].uid not in touched
    assert formed["quarterly_reflection"].uid not in touched
    assert formed["regular"].uid in touched


async def test_rhythms_kept_during_a_pause_apply_on_resume(rhythms_db):
    db = rhythms_db
    formed = await planned(db)
    await db.apply(on_pair_paused, event(PairPaused, pair_id="p"))
    held = await db.apply(on_charter_agreed, charter_with({"coffee_chat": "biweekly"}))
    assert held.emitted == []
    db.clock.advance(dt.timedelta(days=10))
    uow = await db.apply(on_pair_resumed, event(PairResumed, pair_id="p"))
    [coffee] = [e for e in uow.emitted if isinstance(e, SessionScheduled)]
    assert coffee.kind == "coffee_chat" and coffee.uid != formed["coffee_chat"].uid
    assert coffee.rrule and "INTERVAL=2" in coffee.rrule
    back = [e for e in uow.emitted if isinstance(e, SessionRescheduled)]
    assert back and all(e.uid != formed["coffee_chat"].uid for e in back)
    assert {e.uid for e in back} <= {formed[k].uid for k in formed}
    no_overlaps(await all_rows(db))


def test_a_charter_without_rhythms_is_still_valid_and_a_bad_cadence_is_refused():
    assert charter(7, 60).rhythms is None
    with pytest.raises(ValueError, match="coffee_chat"):
        charter_with({"coffee_chat": "daily"})


async def test_a_charter_for_a_pair_never_planned_plans_nothing(db):
    assert (await db.apply(on_charter_agreed, charter(7, 60))).emitted == []


@given(
    cadence=st.sampled_from(list(series.Cadence)),
    first=st.datetimes(min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2028, 12, 31)),
)
def test_the_cadence_of_a_written_rule_is_the_cadence_it_was_written_for(cadence, first):
    assert series.cadence_of(series.rrule_for(cadence, first)) is cadence
