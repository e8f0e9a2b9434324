"""insights' handlers on a real SQLite database, without NATS: what the read models show."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event as sa_event

from services.insights import store
from services.insights.handlers import (
    SUBSCRIPTIONS,
    on_any_event,
    on_matching_completed,
    on_notification_failed,
    on_notification_sent,
    on_pair_formed,
    on_participant_registered,
    on_session_scheduled,
    on_timezone_changed,
)
from shared.cpu import CpuPool
from shared.errors import ProgramMismatch, UnknownReference
from shared.events import (
    CATALOGUE,
    Event,
    MatchingCompleted,
    NotificationFailed,
    NotificationSent,
    PairFormed,
    PairPaused,
    ParticipantRegistered,
    ParticipantTimezoneChanged,
    SessionScheduled,
)
from shared.unit_of_work import UnitOfWork, write_upserts
from tests.support.factories import registration
from tests.support.handlers import HandlerDb, handler_db

A, B = "program-a", "program-b"
REGISTERED = ParticipantRegistered.subject
SENT_SUBJECT = NotificationSent.subject
FAILED_SUBJECT = NotificationFailed.subject


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[HandlerDb]:
    async with handler_db(store.Base.metadata, store.delivery, tmp_path, source="insights") as db:
        yield db


def _at(db: HandlerDb) -> dict[str, Any]:
    return {"event_id": uuid.uuid4(), "occurred_at": db.clock.now()}


def registered(
    db: HandlerDb, program: str, participant: str, *, role: str = "mentee", timezone: str = "UTC"
) -> ParticipantRegistered:
    body = registration(program, participant, role=role, timezone=timezone)
    return ParticipantRegistered.model_validate(body | _at(db))


def zone_changed(db: HandlerDb, program: str, participant: str, new: str) -> Event:
    return ParticipantTimezoneChanged(
        **_at(db),
        program_id=program,
        participant_id=participant,
        old_timezone="UTC",
        new_timezone=new,
        effective_date=db.clock.now().date(),
    )


def formed(db: HandlerDb, program: str, pair: str = "pair-1") -> PairFormed:
    return PairFormed(
        **_at(db),
        program_id=program,
        pair_id=pair,
        round_id="r1",
        mentor_id="m",
        mentee_id="e",
        language="en",
    )


def scheduled(
    db: HandlerDb,
    program: str,
    session: str = "session-1",
    *,
    pair: str = "pair-1",
    start: dt.datetime | None = None,
) -> SessionScheduled:
    start = start or db.clock.now() + dt.timedelta(days=2)
    return SessionScheduled(
        **_at(db),
        program_id=program,
        session_id=session,
        pair_id=pair,
        kind="kickoff",
        start=start,
        end=start + dt.timedelta(minutes=45),
        anchor_timezone="UTC",
        attendee_ids=["m", "e"],
        uid=f"{session}@mentorship",
        sequence=0,
        ical="BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
    )


def sent(db: HandlerDb, program: str, delivery: str = "delivery-1") -> NotificationSent:
    return NotificationSent(
        **_at(db),
        program_id=program,
        delivery_id=delivery,
        recipient_id="e",
        kind="session.kickoff",
        channel="email",
        source_event_id=uuid.uuid4(),
        message_id=f"<{delivery}@mentorship>",
    )


def failed(db: HandlerDb, program: str, delivery: str = "delivery-1") -> NotificationFailed:
    return NotificationFailed(
        **_at(db),
        program_id=program,
        delivery_id=delivery,
        recipient_id="e",
        kind="session.kickoff",
        channel="email",
        source_event_id=uuid.uuid4(),
        attempts=5,
        reason="550 mailbox unavailable",
    )


def completed(db: HandlerDb, program: str, round_id: str, unmatched: int) -> MatchingCompleted:
    return MatchingCompleted(
        **_at(db),
        program_id=program,
        round_id=round_id,
        pairs_formed=3,
        unmatched_mentees=unmatched,
    )


def utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands DateTime(timezone=True) back naive; the instant is UTC."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


async def counts(db: HandlerDb, program: str) -> dict[str, int]:
    async with db.sessions() as session:
        return await store.overview_counts(session, program_id=program)


async def seen(db: HandlerDb, program: str) -> dict[str, int]:
    async with db.sessions() as session:
        return await store.events_seen(session, program_id=program)


async def test_every_catalogue_event_has_one_subscription_in_catalogue_order():
    assert [s.event for s in SUBSCRIPTIONS] == list(CATALOGUE)
    projected = {s.event: s.handler for s in SUBSCRIPTIONS if s.handler is not on_any_event}
    assert projected == {
        ParticipantRegistered: on_participant_registered,
        ParticipantTimezoneChanged: on_timezone_changed,
        PairFormed: on_pair_formed,
        MatchingCompleted: on_matching_completed,
        SessionScheduled: on_session_scheduled,
        NotificationSent: on_notification_sent,
        NotificationFailed: on_notification_failed,
    }


async def test_registrations_count_participants_by_role_and_zone_and_emit_nothing(db):
    uows = [
        await db.apply(on_participant_registered, registered(db, A, "m1", role="mentor")),
        await db.apply(on_participant_registered, registered(db, A, "e1", timezone="Asia/Tokyo")),
        await db.apply(on_participant_registered, registered(db, A, "e2")),
    ]
    assert [uow.emitted for uow in uows] == [[], [], []]
    numbers = await counts(db, A)
    assert (numbers["mentors"], numbers["mentees"], numbers["timezones"]) == (1, 2, 2)
    assert await seen(db, A) == {ParticipantRegistered.subject: 3}


async def test_a_re_registration_replaces_role_and_zone_without_a_second_participant(db):
    await db.apply(on_participant_registered, registered(db, A, "p", role="mentee"))
    await db.apply(
        on_participant_registered, registered(db, A, "p", role="mentor", timezone="Asia/Tokyo")
    )
    numbers = await counts(db, A)
    assert (numbers["mentors"], numbers["mentees"], numbers["timezones"]) == (1, 0, 1)
    async with db.sessions() as session:
        row = await session.get(store.ParticipantView, (A, "p"))
    assert row is not None and row.timezone == "Asia/Tokyo"


async def test_the_same_participant_id_in_two_programs_is_two_participants(db):
    await db.apply(on_participant_registered, registered(db, A, "p"))
    await db.apply(on_participant_registered, registered(db, B, "p", role="mentor"))
    assert (await counts(db, A))["mentees"] == 1
    assert (await counts(db, B))["mentors"] == 1
    assert (await counts(db, B))["mentees"] == 0


async def test_every_event_is_counted_per_program_and_subject(db):
    for program, times in ((A, 3), (B, 1)):
        for _ in range(times):
            pause = PairPaused(**_at(db), program_id=program, pair_id="pair-1")
            assert (await db.apply(on_any_event, pause)).emitted == []
    assert await seen(db, A) == {PairPaused.subject: 3}
    assert await seen(db, B) == {PairPaused.subject: 1}


async def test_a_timezone_change_moves_the_participant_to_the_new_zone(db):
    await db.apply(on_participant_registered, registered(db, A, "p", timezone="UTC"))
    await db.apply(on_participant_registered, registered(db, A, "q", timezone="UTC"))
    await db.apply(on_timezone_changed, zone_changed(db, A, "p", "America/Lima"))
    assert (await counts(db, A))["timezones"] == 2
    assert (await seen(db, A))[ParticipantTimezoneChanged.subject] == 1


async def test_a_timezone_change_of_an_unregistered_participant_is_an_unknown_reference(db):
    with pytest.raises(UnknownReference, match=r"publish participant\.registered first"):
        await db.apply(on_timezone_changed, zone_changed(db, A, "ghost", "America/Lima"))
    assert await seen(db, A) == {}


async def test_a_timezone_change_naming_another_programs_participant_is_a_mismatch(db):
    await db.apply(on_participant_registered, registered(db, A, "p", timezone="UTC"))
    with pytest.raises(ProgramMismatch, match="another program"):
        await db.apply(on_timezone_changed, zone_changed(db, B, "p", "America/Lima"))
    async with db.sessions() as session:
        row = await session.get(store.ParticipantView, (A, "p"))
    assert row is not None and row.timezone == "UTC"
    assert await seen(db, B) == {}


async def test_a_repeated_pair_formed_keeps_one_pair_formed_at_its_first_time(db):
    first = formed(db, A)
    await db.apply(on_pair_formed, first)
    db.clock.advance(dt.timedelta(hours=1))
    await db.apply(on_pair_formed, formed(db, A))
    assert (await counts(db, A))["pairs_formed"] == 1
    assert (await seen(db, A))[PairFormed.subject] == 2
    async with db.sessions() as session:
        row = await session.get(store.PairView, (A, "pair-1"))
    assert row is not None and utc(row.formed_at) == first.occurred_at


async def test_pair_formed_reusing_another_programs_pair_id_is_a_mismatch_changing_nothing(db):
    await db.apply(on_pair_formed, formed(db, A))
    with pytest.raises(ProgramMismatch, match="pair 'pair-1' belongs to another program"):
        await db.apply(on_pair_formed, formed(db, B))
    assert (await counts(db, A))["pairs_formed"] == 1
    assert (await counts(db, B))["pairs_formed"] == 0
    assert await seen(db, B) == {}


async def test_the_overview_reports_the_latest_rounds_unmatched_mentees_and_each_round_once(db):
    await db.apply(on_matching_completed, completed(db, A, "r1", unmatched=4))
    db.clock.advance(dt.timedelta(days=7))
    await db.apply(on_matching_completed, completed(db, A, "r2", unmatched=1))
    await db.apply(on_matching_completed, completed(db, A, "r1", unmatched=9))
    numbers = await counts(db, A)
    assert (numbers["matching_rounds"], numbers["unmatched_mentees"]) == (2, 1)
    # round ids are the program's own: another program's "r1" is its own round
    await db.apply(on_matching_completed, completed(db, B, "r1", unmatched=2))
    assert (await counts(db, B))["unmatched_mentees"] == 2


async def test_scheduling_a_session_again_moves_its_start_and_keeps_one_session(db):
    await db.apply(on_session_scheduled, scheduled(db, A))
    later = db.clock.now() + dt.timedelta(days=5)
    await db.apply(on_session_scheduled, scheduled(db, A, start=later))
    assert (await counts(db, A))["sessions_scheduled"] == 1
    async with db.sessions() as session:
        row = await session.get(store.SessionView, (A, "session-1"))
    assert row is not None and utc(row.start) == later


async def test_a_session_scheduled_with_another_programs_session_id_is_a_mismatch(db):
    await db.apply(on_session_scheduled, scheduled(db, A))
    moved = db.clock.now() + dt.timedelta(days=9)
    with pytest.raises(ProgramMismatch, match="session 'session-1' belongs to another program"):
        await db.apply(on_session_scheduled, scheduled(db, B, pair="pair-b", start=moved))
    async with db.sessions() as session:
        row = await session.get(store.SessionView, (A, "session-1"))
    assert row is not None and utc(row.start) != moved
    assert (await counts(db, B))["sessions_scheduled"] == 0


async def test_a_session_scheduled_for_another_programs_pair_is_a_mismatch(db):
    await db.apply(on_pair_formed, formed(db, A, "pair-a"))
    with pytest.raises(ProgramMismatch, match="pair 'pair-a' belongs to another program"):
        await db.apply(on_session_scheduled, scheduled(db, B, "session-b", pair="pair-a"))
    assert (await counts(db, B))["sessions_scheduled"] == 0
    assert await seen(db, B) == {}


async def test_a_session_of_a_pair_not_seen_yet_is_recorded(db):
    # pair.formed travels on another subject and may arrive after its first session
    await db.apply(on_session_scheduled, scheduled(db, A, pair="pair-later"))
    assert (await counts(db, A))["sessions_scheduled"] == 1


Report = Callable[[Any, UnitOfWork], Awaitable[None]]
REPORTS: list[tuple[Report, Callable[..., Event], str]] = [
    (on_notification_sent, sent, SENT_SUBJECT),
    (on_notification_failed, failed, FAILED_SUBJECT),
]


@pytest.mark.parametrize(("handler", "report", "subject"), REPORTS, ids=["sent", "failed"])
async def test_a_delivery_report_of_another_program_naming_a_delivery_changes_no_counter(
    db, handler, report, subject
):
    await db.apply(on_notification_sent, sent(db, A, "delivery-a1"))
    await db.apply(on_notification_failed, failed(db, A, "delivery-a2"))
    before_a, seen_a = await counts(db, A), await seen(db, A)
    with pytest.raises(ProgramMismatch, match="delivery 'delivery-a2' belongs to another"):
        await db.apply(handler, report(db, B, "delivery-a2"))
    assert await counts(db, A) == before_a
    assert await seen(db, A) == seen_a
    numbers_b = await counts(db, B)
    assert (numbers_b["emails_sent"], numbers_b["emails_failed"]) == (0, 0)
    assert await seen(db, B) == {}


@pytest.mark.parametrize(("handler", "report", "subject"), REPORTS, ids=["sent", "failed"])
async def test_the_first_report_of_a_delivery_creates_it_in_its_program(
    db, handler, report, subject
):
    await db.apply(handler, report(db, B, "delivery-b"))
    numbers = await counts(db, B)
    expected = (1, 0) if subject == SENT_SUBJECT else (0, 1)
    assert (numbers["emails_sent"], numbers["emails_failed"]) == expected
    assert await seen(db, B) == {subject: 1}


async def test_a_delivery_reported_failed_then_sent_counts_as_sent_once(db):
    await db.apply(on_notification_failed, failed(db, A))
    await db.apply(on_notification_sent, sent(db, A))
    numbers = await counts(db, A)
    assert (numbers["emails_sent"], numbers["emails_failed"]) == (1, 0)


async def test_a_delivery_reported_sent_stays_sent_when_a_failure_report_arrives_later(db):
    await db.apply(on_notification_sent, sent(db, A))
    await db.apply(on_notification_failed, failed(db, A))
    numbers = await counts(db, A)
    assert (numbers["emails_sent"], numbers["emails_failed"]) == (1, 0)


async def apply_batch(db: HandlerDb, batch: list[tuple[Report, Event]]) -> list[Exception | None]:
    """Applies a batch as the consumer does once one of its events failed: one transaction, a
    savepoint per event holding its handler and its queued writes; what each event raised."""
    outcomes: list[Exception | None] = []
    async with db.sessions() as session, session.begin():
        for handler, event in batch:
            uow = UnitOfWork(
                session=session,
                tables=db.tables,
                clock=db.clock,
                settings=db.settings,
                source=db.source,
                cpu=CpuPool(threads=True),
            )
            try:
                async with session.begin_nested():
                    await handler(event, uow)
                    await write_upserts(session, uow.writes)
            except Exception as exc:  # the consumer retries or parks this event alone
                outcomes.append(exc)
            else:
                outcomes.append(None)
    return outcomes


async def test_events_of_one_batch_touching_one_row_apply_in_order_and_fail_alone(db):
    batch: list[tuple[Report, Event]] = [
        (on_participant_registered, registered(db, A, "p", role="mentee")),
        (on_participant_registered, registered(db, A, "p", role="mentor")),
        (on_participant_registered, registered(db, A, "q")),
        (on_notification_failed, failed(db, A)),
        (on_notification_sent, sent(db, B)),  # A's delivery under program B
        (on_notification_sent, sent(db, A)),
    ]
    outcomes = await apply_batch(db, batch)
    assert [type(outcome) for outcome in outcomes] == [type(None)] * 4 + [
        ProgramMismatch,
        type(None),
    ]
    numbers = await counts(db, A)
    assert (numbers["mentors"], numbers["mentees"]) == (1, 1)
    assert (numbers["emails_sent"], numbers["emails_failed"]) == (1, 0)
    assert await seen(db, A) == {REGISTERED: 3, SENT_SUBJECT: 1, FAILED_SUBJECT: 1}
    assert await seen(db, B) == {}


async def test_a_batch_of_registrations_writes_one_statement_per_table(db):
    batch: list[tuple[Report, Event]] = [
        (on_participant_registered, registered(db, A, f"p{i}")) for i in range(25)
    ]
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engine = db.sessions.kw["bind"].sync_engine
    sa_event.listen(engine, "before_cursor_execute", record)
    try:
        async with db.unit_of_work() as uow:
            for handler, event in batch:
                await handler(event, uow)
    finally:
        sa_event.remove(engine, "before_cursor_execute", record)
    writes = [s.split("(")[0].strip() for s in statements if not s.startswith("SELECT")]
    assert writes == ["INSERT INTO participants", "INSERT INTO event_counts"]
    assert await seen(db, A) == {REGISTERED: 25}
    assert (await counts(db, A))["mentees"] == 25
