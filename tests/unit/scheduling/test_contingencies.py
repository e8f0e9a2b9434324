"""Contingencies on a real SQLite database: zone changes, absences, pauses, addresses, declines."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from icalendar import Calendar
from sqlalchemy import select

from services.scheduling import store
from services.scheduling.handlers import (
    on_milestone_reached,
    on_pair_ended,
    on_pair_formed,
    on_pair_paused,
    on_pair_resumed,
    on_participant_registered,
    on_participant_unavailable,
    on_participant_updated,
    on_session_held,
    on_session_responded,
    on_timezone_changed,
)
from services.scheduling.planning import Planner
from shared.errors import UnknownReference
from shared.events import (
    MilestoneReached,
    PairEnded,
    PairFormed,
    PairPaused,
    PairResumed,
    ParticipantRegistered,
    ParticipantTimezoneChanged,
    ParticipantUnavailable,
    ParticipantUpdated,
    SessionCancelled,
    SessionHeld,
    SessionRescheduled,
    SessionResponded,
    SessionScheduled,
)
from shared.worktime import Availability, Hours, Interval
from tests.support.factories import envelope, registration
from tests.support.handlers import HandlerDb, handler_db
from tests.unit.scheduling.test_planning import inside

UTC = dt.UTC
NEW_YORK = "America/New_York"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[HandlerDb]:
    async with handler_db(
        store.Base.metadata, store.delivery, tmp_path, source="scheduling", session_cadence_days=7
    ) as db:
        yield db


def event(cls: type, **fields: Any) -> Any:
    return cls.model_validate(envelope("prog", **fields))


async def formed_pair(db: HandlerDb) -> tuple[SessionScheduled, SessionScheduled]:
    for pid, role in (("m", "mentor"), ("e", "mentee")):
        body = registration("prog", pid, role=role)
        await db.apply(on_participant_registered, ParticipantRegistered.model_validate(body))
    formed = event(
        PairFormed, pair_id="p", round_id="r", mentor_id="m", mentee_id="e", language="en"
    )
    uow = await db.apply(on_pair_formed, formed)
    kickoff, regular = uow.emitted
    assert isinstance(kickoff, SessionScheduled) and isinstance(regular, SessionScheduled)
    return kickoff, regular


def nine_to_five(zone: str) -> Planner:
    return Planner("x", Availability(zone, [Hours(d, dt.time(9), dt.time(17)) for d in range(5)]))


async def rows(db: HandlerDb) -> list[store.Session]:
    async with db.sessions() as session:
        return await store.future_sessions(
            session, program_id="prog", after=db.clock.now(), statuses=("scheduled", "cancelled")
        )


async def test_a_timezone_change_moves_every_later_occurrence_into_the_new_overlap(db):
    kickoff, regular = await formed_pair(db)
    change = event(
        ParticipantTimezoneChanged, participant_id="e", old_timezone="Europe/Berlin",
        new_timezone=NEW_YORK, effective_date="2027-03-20",
    )  # fmt: skip
    uow = await db.apply(on_timezone_changed, change)
    moved = [e for e in uow.emitted if isinstance(e, SessionRescheduled)]
    assert moved and all(e.uid == regular.uid for e in moved)
    assert [e.sequence for e in moved] == list(range(1, len(moved) + 1))  # strictly increasing
    for e in moved:
        assert e.start >= dt.datetime(2027, 3, 20, 4, tzinfo=UTC)
        slot = Interval(e.start, e.end)
        assert inside(nine_to_five(NEW_YORK), slot) and inside(nine_to_five("Europe/Berlin"), slot)
        [vevent] = Calendar.from_ical(e.ical).walk("VEVENT")
        assert vevent["RECURRENCE-ID"].dt.astimezone(UTC) == e.recurrence_id
        assert vevent["SEQUENCE"] == e.sequence and str(vevent["UID"]) == regular.uid
        assert e.reason and "now works from America/New_York" in e.reason
    # the kickoff (3 March) and the first occurrences are before the move: unchanged
    assert kickoff.session_id not in {e.session_id for e in moved}
    for row in await rows(db):
        if row.start and row.start.replace(tzinfo=UTC) >= dt.datetime(2027, 3, 21, tzinfo=UTC):
            span = Interval(row.start.replace(tzinfo=UTC), row.end.replace(tzinfo=UTC))  # type: ignore[union-attr]
            assert inside(nine_to_five(NEW_YORK), span)


async def test_a_whole_series_is_re_planned_in_a_few_statements_and_its_checks_re_armed(db):
    await formed_pair(db)
    change = event(
        ParticipantTimezoneChanged, participant_id="e", old_timezone="Europe/Berlin",
        new_timezone=NEW_YORK, effective_date="2027-03-01",
    )  # fmt: skip
    with db.statements() as sent:
        uow = await db.apply(on_timezone_changed, change)
    moved = [e for e in uow.emitted if isinstance(e, SessionRescheduled)]
    assert len(moved) >= 20
    # loads (the person, the rows, both people's busy time, the meetings), one write per table
    # and the re-armed checks in one statement: a statement per occurrence was 137 in all
    # 18 before people and busy time came in one query each, 11 before the person came with
    # the occurrences' people and the absences with the planned sessions
    assert len(sent) <= 9, sent
    # the occurrences' meetings come in one query: no per-UID lookup (and flush) mid-handler
    assert sum(s.startswith("SELECT meetings") for s in sent) == 1, sent
    assert sum(s.startswith("INSERT INTO timers") for s in sent) == 1
    async with db.sessions() as session:
        armed = dict(
            (await session.execute(
                select(store.timers.c.key, store.timers.c.due_at).where(
                    store.timers.c.kind == "session.missed", store.timers.c.status == "pending"
                )
            )).all()
        )  # fmt: skip
    for e in moved:  # each moved occurrence is checked for a confirmation after its new end
        due = armed[e.session_id].replace(tzinfo=UTC)
        assert due == e.end + dt.timedelta(hours=db.settings.missed_after_hours)


async def test_an_absence_cancels_its_occurrences_with_recurrence_ids_and_the_rhythm_resumes(db):
    _, regular = await formed_pair(db)
    absent = event(
        ParticipantUnavailable, participant_id="e", start_date="2027-03-15", end_date="2027-03-28"
    )
    uow = await db.apply(on_participant_unavailable, absent)
    [cancelled] = [e for e in uow.emitted if isinstance(e, SessionCancelled)]
    assert cancelled.uid == regular.uid and cancelled.sequence == 1
    assert [d.date() for d in cancelled.recurrence_ids] == [
        dt.date(2027, 3, 16),
        dt.date(2027, 3, 23),
    ]
    calendar = Calendar.from_ical(cancelled.ical)
    assert str(calendar["METHOD"]) == "CANCEL"
    ids = [v["RECURRENCE-ID"].dt.astimezone(UTC) for v in calendar.walk("VEVENT")]
    assert ids == cancelled.recurrence_ids
    assert all(str(v["STATUS"]) == "CANCELLED" for v in calendar.walk("VEVENT"))
    series_rows = [r for r in await rows(db) if r.meeting_id == regular.series_id]
    kept = sorted(r.start.date() for r in series_rows if r.start and r.status == "scheduled")
    assert dt.date(2027, 3, 9) in kept and dt.date(2027, 3, 30) in kept  # before and after
    again = await db.apply(on_participant_unavailable, absent)  # the same absence again
    assert again.emitted == []


async def test_an_absence_over_the_kickoff_moves_the_kickoff_after_it(db):
    kickoff, _ = await formed_pair(db)
    absent = event(
        ParticipantUnavailable, participant_id="m", start_date="2027-03-01", end_date="2027-03-05"
    )
    uow = await db.apply(on_participant_unavailable, absent)
    [moved] = [e for e in uow.emitted if isinstance(e, SessionRescheduled)]
    assert moved.session_id == kickoff.session_id and moved.sequence == 1
    assert moved.start >= dt.datetime(2027, 3, 6, tzinfo=UTC)
    assert moved.previous_start == kickoff.start


async def test_a_pause_cancels_a_resume_reinstates_and_an_end_cancels_the_rest(db):
    kickoff, regular = await formed_pair(db)
    paused = await db.apply(on_pair_paused, event(PairPaused, pair_id="p", until="2027-04-01"))
    cancelled = [e for e in paused.emitted if isinstance(e, SessionCancelled)]
    assert {e.uid for e in cancelled} == {kickoff.uid, regular.uid}
    assert all(s < dt.datetime(2027, 4, 1, tzinfo=UTC) for e in cancelled for s in e.starts)
    resumed = await db.apply(on_pair_resumed, event(PairResumed, pair_id="p"))
    back = [e for e in resumed.emitted if isinstance(e, SessionRescheduled)]
    assert len(back) == sum(len(e.session_ids) for e in cancelled)
    assert all(e.sequence >= 2 for e in back)
    ended = await db.apply(on_pair_ended, event(PairEnded, pair_id="p", reason="goals met"))
    [rest] = [e for e in ended.emitted if isinstance(e, SessionCancelled) and e.uid == regular.uid]
    assert rest.sequence > max(e.sequence for e in back if e.uid == regular.uid)
    assert {r.status for r in await rows(db)} == {"cancelled"}


async def test_a_new_address_is_used_in_later_updates(db):
    _, regular = await formed_pair(db)
    await db.apply(
        on_participant_updated,
        event(
            ParticipantUpdated, participant_id="e", email="new@example.org", display_name="Eve New"
        ),
    )
    reply = event(
        SessionResponded, session_id=regular.session_id, pair_id="p", participant_id="m",
        uid=regular.uid, sequence=0, recurrence_id=regular.start.isoformat(), response="declined",
    )  # fmt: skip
    uow = await db.apply(on_session_responded, reply)
    [moved] = [e for e in uow.emitted if isinstance(e, SessionRescheduled)]
    assert "mailto:new@example.org" in moved.ical.replace("\r\n ", "")
    assert [a.email for a in moved.attendees] == ["m@example.org", "new@example.org"]


async def test_a_declined_occurrence_moves_to_another_slot_both_can_make(db):
    _, regular = await formed_pair(db)
    reply = event(
        SessionResponded, session_id=regular.session_id, pair_id="p", participant_id="e",
        uid=regular.uid, sequence=0, recurrence_id=regular.start.isoformat(), response="declined",
    )  # fmt: skip
    uow = await db.apply(on_session_responded, reply)
    [moved] = [e for e in uow.emitted if isinstance(e, SessionRescheduled)]
    assert moved.recurrence_id == regular.start and moved.start != regular.start
    assert moved.sequence == 1 and moved.reason and "declined" in moved.reason
    slot = Interval(moved.start, moved.end)
    assert inside(nine_to_five("Europe/Berlin"), slot)
    accepted = reply.model_copy(update={"response": "accepted"})
    assert (await db.apply(on_session_responded, accepted)).emitted == []


async def test_a_declined_kickoff_moves_to_the_next_slot_both_can_make_and_old_replies_wait(db):
    kickoff, _ = await formed_pair(db)
    reply = event(
        SessionResponded, session_id=kickoff.session_id, pair_id="p", participant_id="m",
        uid=kickoff.uid, sequence=0, response="declined",
    )  # fmt: skip
    [moved] = [
        e for e in (await db.apply(on_session_responded, reply)).emitted
        if isinstance(e, SessionRescheduled)
    ]  # fmt: skip
    assert moved.session_id == kickoff.session_id and moved.sequence == 1
    assert moved.previous_start == kickoff.start
    declined = Interval(kickoff.start, kickoff.end)
    assert not (moved.start < declined.end and declined.start < moved.end)  # not the same time
    assert inside(nine_to_five("Europe/Berlin"), Interval(moved.start, moved.end))
    buffer = dt.timedelta(minutes=db.settings.session_buffer_minutes)
    for row in await rows(db):  # clear of the series, with the buffer
        if row.session_id != kickoff.session_id and row.status == "scheduled" and row.start:
            start, end = row.start.replace(tzinfo=UTC), row.end.replace(tzinfo=UTC)  # type: ignore[union-attr]
            assert end + buffer <= moved.start or moved.end + buffer <= start
    # the same decline again answers the old version (SEQUENCE 0): it changes nothing
    assert (await db.apply(on_session_responded, reply)).emitted == []


async def test_a_reply_for_an_unknown_session_names_what_to_publish(db):
    await formed_pair(db)
    reply = event(
        SessionResponded, session_id="nope", pair_id="p", participant_id="e", uid="x",
        sequence=0, response="declined",
    )  # fmt: skip
    with pytest.raises(UnknownReference, match=r"session\.scheduled"):
        await db.apply(on_session_responded, reply)


async def test_a_milestone_reached_plans_one_feedback_moment_both_can_make(db):
    kickoff, regular = await formed_pair(db)
    reached = event(MilestoneReached, pair_id="p", milestone_id="ms-1", title="First talk given")
    uow = await db.apply(on_milestone_reached, reached)
    [moment] = uow.emitted
    assert isinstance(moment, SessionScheduled)
    assert moment.kind == "feedback_moment" and moment.series_id is None
    assert moment.end - moment.start == dt.timedelta(minutes=30)
    assert moment.agenda.startswith("A milestone was reached")
    assert moment.uid not in (kickoff.uid, regular.uid)
    assert moment.start >= db.clock.now() + dt.timedelta(hours=db.settings.session_notice_hours)
    slot = Interval(moment.start, moment.end)
    assert inside(nine_to_five("Europe/Berlin"), slot)
    # never on top of the pair's other sessions (kickoff or series), with the buffer
    buffer = dt.timedelta(minutes=db.settings.session_buffer_minutes)
    for row in await rows(db):
        if row.session_id != moment.session_id and row.start and row.end:
            start, end = row.start.replace(tzinfo=UTC), row.end.replace(tzinfo=UTC)
            assert end + buffer <= moment.start or moment.end + buffer <= start
    [vevent] = Calendar.from_ical(moment.ical).walk("VEVENT")
    assert str(vevent["SUMMARY"]).startswith("Feedback moment")
    again = await db.apply(on_milestone_reached, reached)
    assert again.emitted == []  # the same milestone again plans nothing more
    other = event(MilestoneReached, pair_id="p", milestone_id="ms-2", title="Second")
    [second] = (await db.apply(on_milestone_reached, other)).emitted
    assert isinstance(second, SessionScheduled) and second.session_id != moment.session_id
    assert second.start >= moment.end + buffer or second.end + buffer <= moment.start


async def test_a_milestone_of_a_pair_scheduling_never_planned_plans_nothing(db):
    reached = event(MilestoneReached, pair_id="nobody", milestone_id="ms", title="x")
    assert (await db.apply(on_milestone_reached, reached)).emitted == []


async def test_a_series_id_names_one_occurrence_for_we_met_links_and_tools(db):
    _, regular = await formed_pair(db)
    series_rows = [r for r in await rows(db) if r.meeting_id == regular.series_id]
    second, third = series_rows[1], series_rows[2]
    assert second.start is not None and second.recurrence_id is not None
    after_second = second.start.replace(tzinfo=UTC) + dt.timedelta(minutes=50)
    async with db.sessions() as session:
        named = store.named_occurrence
        by_rule = await named(
            session, program_id="prog", session_id=regular.series_id,
            recurrence_id=third.recurrence_id.replace(tzinfo=UTC), now=after_second,  # type: ignore[union-attr]
        )  # fmt: skip
        latest = await named(
            session, program_id="prog", session_id=regular.series_id, recurrence_id=None,
            now=after_second,
        )  # fmt: skip
        before_any = await named(
            session, program_id="prog", session_id=regular.series_id, recurrence_id=None,
            now=db.clock.now(),
        )  # fmt: skip
    assert by_rule is not None and by_rule.session_id == third.session_id
    assert latest is not None and latest.session_id == second.session_id
    assert before_any is None  # nothing of the series has started yet
    held = event(
        SessionHeld, session_id=regular.series_id, pair_id="p",
        held_at=second.start.replace(tzinfo=UTC).isoformat(), duration_minutes=40,
        present_ids=["m", "e"], source="video-tool",
    )  # fmt: skip
    await db.apply(on_session_held, held)
    status = {r.session_id: r.status for r in await rows_all(db)}
    assert status[second.session_id] == "held"
    assert status[third.session_id] == "scheduled" and status[series_rows[0].session_id] != "held"


async def rows_all(db: HandlerDb) -> list[store.Session]:
    async with db.sessions() as session:
        return list(await session.scalars(select(store.Session)))
