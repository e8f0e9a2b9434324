"""notifications' handlers on a real SQLite database, without NATS: what they store and queue."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from services.notifications import deliveries, store
from services.notifications.handlers import (
    SUBSCRIPTIONS,
    on_pair_formed,
    on_participant_registered,
    on_session_cancelled,
    on_session_rescheduled,
    on_session_scheduled,
    on_timezone_changed,
)
from services.notifications.queueing import URGENT_LEAD
from shared.errors import ProgramMismatch, UnknownReference
from shared.events import (
    PairFormed,
    ParticipantRegistered,
    ParticipantTimezoneChanged,
    SessionCancelled,
    SessionRescheduled,
    SessionScheduled,
)
from tests.support.factories import envelope, registration
from tests.support.handlers import START, HandlerDb, handler_db

ICAL = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nMETHOD:REQUEST\r\n"
    "BEGIN:VEVENT\r\nUID:s1@mentorship\r\nSEQUENCE:0\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[HandlerDb]:
    async with handler_db(
        store.Base.metadata,
        store.delivery_tables,
        tmp_path,
        source="notifications",
        mail_from="team@mentoring.example",
        mail_from_name="Mentoring Team",
    ) as db:
        yield db


def registered(program: str, participant: str, **options: Any) -> ParticipantRegistered:
    return ParticipantRegistered.model_validate(registration(program, participant, **options))


def scheduled(program: str, *attendees: str, **changes: Any) -> SessionScheduled:
    start = dt.datetime(2027, 3, 3, 15, tzinfo=dt.UTC)
    body = envelope(
        program,
        session_id="s1",
        pair_id="pair-1",
        kind="kickoff",
        start=start.isoformat(),
        end=(start + dt.timedelta(hours=1)).isoformat(),
        anchor_timezone="Europe/Berlin",
        attendee_ids=list(attendees or ("m", "e")),
        uid="s1@mentorship",
        sequence=0,
        ical=ICAL,
    )
    return SessionScheduled.model_validate(body | changes)


async def register_pair(db: HandlerDb, program: str) -> None:
    await db.apply(on_participant_registered, registered(program, "m", role="mentor"))
    await db.apply(on_participant_registered, registered(program, "e", timezone="Asia/Tokyo"))


async def all_deliveries(db: HandlerDb) -> list[store.Delivery]:
    async with db.sessions() as session:
        rows = await session.scalars(select(store.Delivery).order_by(store.Delivery.recipient_id))
        return list(rows)


async def all_timers(db: HandlerDb) -> list[dict[str, Any]]:
    async with db.sessions() as session:
        rows = await session.execute(  # the sends (reminders: test_reminders.py)
            select(store.timers)
            .where(store.timers.c.kind == deliveries.SEND)
            .order_by(store.timers.c.key)
        )
        return [dict(r._mapping) for r in rows]


async def contact(db: HandlerDb, program: str, participant: str) -> store.Contact | None:
    async with db.sessions() as session:
        return await store.get_contact(session, program_id=program, participant_id=participant)


def test_every_subscription_is_a_plain_handler_of_event_and_unit_of_work():
    assert [s.event for s in SUBSCRIPTIONS[:6]] == [
        ParticipantRegistered,
        ParticipantTimezoneChanged,
        PairFormed,
        SessionScheduled,
        SessionRescheduled,
        SessionCancelled,
    ]
    assert [s.handler for s in SUBSCRIPTIONS[:6]] == [
        on_participant_registered,
        on_timezone_changed,
        on_pair_formed,
        on_session_scheduled,
        on_session_rescheduled,
        on_session_cancelled,
    ]
    # the notices (test_notices.py): one subscription per event, each after the contacts
    events = [s.event for s in SUBSCRIPTIONS]
    assert len(events) == len(set(events)) == 18
    assert all(ParticipantRegistered in s.after for s in SUBSCRIPTIONS[6:])


# --- participant.registered / timezone_changed ----------------------------------------------


async def test_a_registration_keeps_the_contact_and_a_re_registration_replaces_it(db):
    await db.apply(on_participant_registered, registered("prog", "e"))
    again = registration("prog", "e", timezone="Asia/Tokyo")
    again |= {"display_name": "Eve Ng", "email": "eve@x.org"}
    await db.apply(on_participant_registered, ParticipantRegistered.model_validate(again))
    kept = await contact(db, "prog", "e")
    assert kept is not None
    assert (kept.email, kept.display_name, kept.timezone) == ("eve@x.org", "Eve Ng", "Asia/Tokyo")


async def test_a_registration_costs_one_write_per_table_and_no_lookup(db):
    with db.statements() as first:
        await db.apply(on_participant_registered, registered("prog", "e"))
    with db.statements() as again:
        await db.apply(on_participant_registered, registered("prog", "e", timezone="Asia/Tokyo"))
    # upserts, no lookup first: the contact and the program's next quarterly survey
    assert first == again == ["INSERT INTO contacts", "INSERT INTO timers"]


async def test_a_batch_of_registrations_still_costs_one_write_per_table(db):
    with db.statements() as sent:
        async with db.unit_of_work() as uow:
            for n in range(50):
                await on_participant_registered(registered("prog", f"p{n}"), uow)
    assert sent == ["INSERT INTO contacts", "INSERT INTO timers"]


async def test_two_registrations_of_one_person_in_one_batch_leave_the_later_one(db):
    async with db.unit_of_work() as uow:
        for zone in ("Asia/Tokyo", "America/Lima"):
            async with uow.session.begin_nested():  # as the batched consumer applies each event
                await on_participant_registered(registered("prog", "e", timezone=zone), uow)
    kept = await contact(db, "prog", "e")
    assert kept is not None and kept.timezone == "America/Lima"


async def test_the_same_participant_id_in_two_programs_is_two_contacts(db):
    await db.apply(on_participant_registered, registered("prog-a", "e", timezone="Asia/Tokyo"))
    await db.apply(on_participant_registered, registered("prog-b", "e", timezone="Europe/Oslo"))
    a, b = await contact(db, "prog-a", "e"), await contact(db, "prog-b", "e")
    assert a is not None and b is not None
    assert (a.timezone, b.timezone) == ("Asia/Tokyo", "Europe/Oslo")


def zone_change(program: str, participant: str, zone: str) -> ParticipantTimezoneChanged:
    return ParticipantTimezoneChanged.model_validate(
        envelope(
            program,
            participant_id=participant,
            old_timezone="Europe/Berlin",
            new_timezone=zone,
            effective_date="2027-03-01",
        )
    )


async def test_a_timezone_change_is_kept_for_the_next_mail(db):
    await db.apply(on_participant_registered, registered("prog", "e"))
    await db.apply(on_timezone_changed, zone_change("prog", "e", "America/Sao_Paulo"))
    kept = await contact(db, "prog", "e")
    assert kept is not None and kept.timezone == "America/Sao_Paulo"


async def test_a_timezone_change_for_an_unknown_person_asks_for_the_registration(db):
    with pytest.raises(UnknownReference, match=r"publish participant\.registered first"):
        await db.apply(on_timezone_changed, zone_change("prog", "e", "Asia/Tokyo"))


async def test_a_timezone_change_naming_another_programs_person_is_rejected(db):
    await db.apply(on_participant_registered, registered("prog-a", "e"))
    with pytest.raises(ProgramMismatch, match="another program"):
        await db.apply(on_timezone_changed, zone_change("prog-b", "e", "Asia/Tokyo"))
    kept = await contact(db, "prog-a", "e")
    assert kept is not None and kept.timezone == "Europe/Berlin"


# --- session.scheduled ----------------------------------------------------------------------


async def test_a_scheduled_session_queues_one_invitation_per_attendee_with_a_send_due_now(db):
    await register_pair(db, "prog")
    event = scheduled("prog")
    uow = await db.apply(on_session_scheduled, event)
    assert uow.emitted == []  # notification.sent comes with the send, not with the queueing
    rows = await all_deliveries(db)
    assert [(d.recipient_id, d.recipient_email, d.status) for d in rows] == [
        ("e", "e@example.org", "pending"),
        ("m", "m@example.org", "pending"),
    ]
    assert {d.kind for d in rows} == {"session.kickoff"}
    assert {d.source_event_id for d in rows} == {str(event.event_id)}
    timers = await all_timers(db)
    assert sorted(t["key"] for t in timers) == sorted(d.delivery_id for d in rows)
    assert {(t["program_id"], t["kind"], t["status"]) for t in timers} == {
        ("prog", deliveries.SEND, "pending")
    }
    # due now, sorted ahead of notices due now (the sender takes the oldest due first)
    assert {t["due_at"].replace(tzinfo=dt.UTC) for t in timers} == {START - URGENT_LEAD}


async def test_each_invitation_is_addressed_and_timed_for_its_own_recipient(db):
    await register_pair(db, "prog")
    await db.apply(on_session_scheduled, scheduled("prog"))
    mentee, mentor = await all_deliveries(db)
    parsed = email.message_from_bytes(mentee.message, policy=email.policy.default)
    assert parsed["Message-ID"] == mentee.message_id
    assert mentee.message_id == f"<{mentee.delivery_id}@mentoring.example>"
    assert parsed["To"].addresses[0].addr_spec == "e@example.org"
    assert str(parsed["From"]) == "Mentoring Team <team@mentoring.example>"
    assert parsed["Subject"] == "Invitation: mentorship kickoff with Person m, Thu 4 Mar 00:00 JST"
    text = next(p for p in parsed.walk() if p.get_content_type() == "text/plain").get_content()
    assert "Thursday 4 March 2027, 00:00\u201301:00 JST" in text  # 15:00 UTC, in Tokyo
    assert mentor.message_id != mentee.message_id


async def test_the_same_session_event_again_queues_nothing_more(db):
    await register_pair(db, "prog")
    event = scheduled("prog")
    await db.apply(on_session_scheduled, event)
    first = [(d.delivery_id, d.message) for d in await all_deliveries(db)]
    await db.apply(on_session_scheduled, event)
    assert [(d.delivery_id, d.message) for d in await all_deliveries(db)] == first
    assert len(await all_timers(db)) == 2


async def test_a_session_naming_another_programs_participant_is_rejected_and_queues_nothing(db):
    await register_pair(db, "prog-a")
    await db.apply(on_participant_registered, registered("prog-b", "m", role="mentor"))
    with pytest.raises(ProgramMismatch, match="'e' belongs to another program"):
        await db.apply(on_session_scheduled, scheduled("prog-b", "m", "e"))
    assert await all_deliveries(db) == []
    assert await all_timers(db) == []


async def test_a_session_naming_an_unregistered_attendee_waits_for_the_registration(db):
    await db.apply(on_participant_registered, registered("prog", "m", role="mentor"))
    with pytest.raises(UnknownReference, match=r"publish participant\.registered first"):
        await db.apply(on_session_scheduled, scheduled("prog", "m", "e"))
    assert await all_deliveries(db) == []


async def test_one_event_id_reused_in_two_programs_makes_separate_deliveries(db):
    await register_pair(db, "prog-a")
    await register_pair(db, "prog-b")
    event_a = scheduled("prog-a")
    event_b = scheduled("prog-b", event_id=str(event_a.event_id))
    await db.apply(on_session_scheduled, event_a)
    await db.apply(on_session_scheduled, event_b)
    rows = await all_deliveries(db)
    assert sorted(d.program_id for d in rows) == ["prog-a", "prog-a", "prog-b", "prog-b"]
    assert len({d.delivery_id for d in rows}) == 4
    assert len({d.idempotency_key for d in rows}) == 4
