"""Reminders before each session on durable timers, on a real SQLite database and a fake clock:
armed when scheduled, sent in each recipient's zone with a "we met" link, moved when
rescheduled, withdrawn when cancelled; each occurrence of a series has its own."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

import icalendar
import pytest
from sqlalchemy import select

from services.notifications import reminders, store
from services.notifications.app import TIMERS
from services.notifications.handlers import (
    on_participant_registered,
    on_session_cancelled,
    on_session_rescheduled,
    on_session_scheduled,
)
from shared.events import (
    ParticipantRegistered,
    SessionCancelled,
    SessionRescheduled,
    SessionScheduled,
)
from shared.links import SESSION_HELD, link_signer
from shared.timers import TimerRunner
from tests.support.factories import envelope, registration
from tests.support.handlers import HandlerDb, handler_db

START = dt.datetime(2027, 3, 3, 15, tzinfo=dt.UTC)  # a Wednesday; the clock starts Monday
HOUR = dt.timedelta(hours=1)


def single_ical(uid: str = "s1@mentorship") -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nMETHOD:REQUEST\r\n"
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nSEQUENCE:0\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def series_ical(first: dt.datetime, *, count: int, exdate: dt.datetime | None = None) -> str:
    cal = icalendar.Calendar()
    cal.add("prodid", "-//Test//EN")
    cal.add("version", "2.0")
    cal.add("method", "REQUEST")
    master = icalendar.Event()
    master.add("uid", "series-1@mentorship")
    master.add("dtstart", first)
    master.add("dtend", first + HOUR)
    master.add("rrule", {"freq": "weekly", "count": count})
    if exdate is not None:
        master.add("exdate", exdate)
    cal.add_component(master)
    return cal.to_ical().decode()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[HandlerDb]:
    async with handler_db(
        store.Base.metadata,
        store.delivery_tables,
        tmp_path,
        source="notifications",
        mail_from="team@mentoring.example",
        mail_from_name="Mentoring Team",
        link_secret="x" * 40,
    ) as db:
        await db.apply(
            on_participant_registered,
            person("m", role="mentor"),
        )
        await db.apply(
            on_participant_registered,
            person("e", timezone="Asia/Tokyo", display_name="Eli <b>Sato</b>"),
        )
        yield db


def person(participant: str, **changes: Any) -> ParticipantRegistered:
    body = registration("p1", participant, role=changes.pop("role", "mentee"))
    return ParticipantRegistered.model_validate(body | changes)


def scheduled(start: dt.datetime = START, **changes: Any) -> SessionScheduled:
    body = envelope(
        "p1",
        session_id="s1",
        pair_id="pair-1",
        kind="kickoff",
        start=start.isoformat(),
        end=(start + HOUR).isoformat(),
        anchor_timezone="Europe/Berlin",
        attendee_ids=["m", "e"],
        uid="s1@mentorship",
        sequence=0,
        ical=single_ical(),
        video_url="https://meet.example/pair-1",
    )
    return SessionScheduled.model_validate(body | changes)


def rescheduled(start: dt.datetime, previous: dt.datetime = START, **changes: Any) -> Any:
    body = envelope(
        "p1",
        session_id="s1",
        pair_id="pair-1",
        previous_start=previous.isoformat(),
        start=start.isoformat(),
        end=(start + HOUR).isoformat(),
        attendee_ids=["m", "e"],
        uid="s1@mentorship",
        sequence=1,
        ical=single_ical(),
        kind="kickoff",
    )
    return SessionRescheduled.model_validate(body | changes)


def cancelled(**changes: Any) -> SessionCancelled:
    body = envelope(
        "p1",
        session_id="s1",
        pair_id="pair-1",
        attendee_ids=["m", "e"],
        uid="s1@mentorship",
        sequence=1,
        ical=single_ical(),
        kind="kickoff",
        starts=[START.isoformat()],
        session_ids=["s1"],
    )
    return SessionCancelled.model_validate(body | changes)


def runner(db: HandlerDb) -> TimerRunner:
    return TimerRunner(
        store.timers,
        TIMERS,
        sessions=db.sessions,
        unit_of_work=db.unit_of_work,
        clock=db.clock,
    )


async def reminder_timers(db: HandlerDb) -> dict[str, dt.datetime]:
    """The reminders armed: `<occurrence prefix><minutes>` -> when it is due (UTC), from the
    pending timer items (one per occurrence: due at its first reminder, the later ones in its
    payload, each armed in turn)."""
    t = store.timers
    async with db.sessions() as session:
        rows = await session.execute(
            select(t.c.key, t.c.due_at, t.c.payload).where(
                t.c.kind == reminders.REMINDER, t.c.status == "pending"
            )
        )
        armed = {}
        for r in rows:
            assert r.key.endswith("|")  # one item per occurrence
            armed[r.key + str(r.payload["minutes"])] = r.due_at.replace(tzinfo=dt.UTC)
            start = dt.datetime.fromisoformat(r.payload["start"])
            for minutes in r.payload["later"]:
                armed[r.key + str(minutes)] = start - dt.timedelta(minutes=minutes)
        return armed


async def reminder_mails(db: HandlerDb) -> list[tuple[store.Delivery, email.message.EmailMessage]]:
    async with db.sessions() as session:
        rows = await session.scalars(
            select(store.Delivery)
            .where(store.Delivery.kind == "session.reminder")
            .order_by(store.Delivery.recipient_id)
        )
        found = []
        for row in rows:
            parsed = email.message_from_bytes(row.message, policy=email.policy.default)
            found.append((row, parsed))  # type: ignore[arg-type]
        return found


async def run_at(db: HandlerDb, at: dt.datetime) -> int:
    db.clock.advance(at - db.clock.now())
    return await runner(db).run_due()


def text_of(message: email.message.EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


async def test_a_session_gets_a_reminder_a_day_and_an_hour_before_in_each_recipients_zone(db):
    await db.apply(on_session_scheduled, scheduled())
    assert await reminder_timers(db) == {"s1||1440": START - 24 * HOUR, "s1||60": START - HOUR}

    assert await run_at(db, START - 25 * HOUR) == 0  # nothing due yet
    assert await reminder_mails(db) == []

    assert await run_at(db, START - 24 * HOUR) == 1
    mails = await reminder_mails(db)
    assert [(row.recipient_id, row.status) for row, _ in mails] == [
        ("e", "pending"),
        ("m", "pending"),
    ]
    (eli_row, eli), (mia_row, mia) = mails
    # Thursday 00:00 in Tokyo, Wednesday 16:00 in Berlin
    assert eli["Subject"].endswith("tomorrow, Thu 4 Mar 00:00 JST")
    assert mia["Subject"] == (
        "Reminder: mentorship kickoff with Eli <b>Sato</b> tomorrow, Wed 3 Mar 16:00 CET"
    )
    assert eli["Auto-Submitted"] == "auto-generated"
    assert "List-Unsubscribe" not in eli  # about a session: essential
    text = text_of(eli)
    assert "Thursday 4 March 2027, 00:00\u201301:00 JST" in text
    assert "https://meet.example/pair-1" in text
    # the "we met" link is signed for this session and this recipient
    link = next(word for word in text.split() if "/links/session-held" in word)
    token = parse_qs(urlparse(link).query)["t"][0]
    data = link_signer(db.settings).verify(token, SESSION_HELD.purpose, db.clock.now())
    assert data == {"program_id": "p1", "session_id": "s1", "participant_id": "e"}
    # a send timer is armed for each reminder, due now
    async with db.sessions() as session:
        sends = set(
            await session.scalars(
                select(store.timers.c.key).where(store.timers.c.kind == "notifications.send")
            )
        )
    assert {eli_row.delivery_id, mia_row.delivery_id} <= sends

    assert await run_at(db, START - HOUR) == 1
    assert len(await reminder_mails(db)) == 4
    assert await run_at(db, START + HOUR) == 0
    assert len(await reminder_mails(db)) == 4  # each reminder once


async def test_cancelling_a_session_withdraws_its_reminders(db):
    await db.apply(on_session_scheduled, scheduled())
    assert len(await reminder_timers(db)) == 2
    await db.apply(on_session_cancelled, cancelled())
    assert await reminder_timers(db) == {}
    assert await run_at(db, START - HOUR) == 0
    assert await reminder_mails(db) == []


async def test_rescheduling_a_session_moves_its_reminders_to_the_new_time(db):
    await db.apply(on_session_scheduled, scheduled())
    moved = START + 48 * HOUR
    await db.apply(on_session_rescheduled, rescheduled(moved))
    assert await reminder_timers(db) == {"s1||1440": moved - 24 * HOUR, "s1||60": moved - HOUR}

    assert await run_at(db, START - HOUR) == 0  # the old times pass without a reminder
    assert await reminder_mails(db) == []
    assert await run_at(db, moved - 24 * HOUR) == 1
    [(_, eli), _] = await reminder_mails(db)
    assert eli["Subject"].endswith("Sat 6 Mar 00:00 JST")


async def test_a_reminder_already_sent_goes_again_for_the_new_time_and_past_ones_are_dropped(db):
    await db.apply(on_session_scheduled, scheduled())
    assert await run_at(db, START - 24 * HOUR) == 1
    assert len(await reminder_mails(db)) == 2
    # moved to 30 minutes from now: the 24 h and the 1 h reminder are both in the past
    soon = db.clock.now() + dt.timedelta(minutes=30)
    await db.apply(on_session_rescheduled, rescheduled(soon))
    assert await reminder_timers(db) == {}
    # moved again, three hours ahead: the 1 h reminder is armed again, for the new time
    later = db.clock.now() + 3 * HOUR
    await db.apply(on_session_rescheduled, rescheduled(later, previous=soon))
    assert await reminder_timers(db) == {"s1||60": later - HOUR}
    assert await run_at(db, later - HOUR) == 1
    mails = await reminder_mails(db)
    assert len(mails) == 4
    assert len({row.idempotency_key for row, _ in mails}) == 4


async def test_a_reminder_due_after_its_session_began_is_not_sent(db):
    await db.apply(on_session_scheduled, scheduled())
    # the service was away: the occurrence's item is done without a mail, nothing re-armed
    assert await run_at(db, START + dt.timedelta(minutes=5)) == 1
    assert await reminder_mails(db) == []
    assert await reminder_timers(db) == {}


async def test_a_reminder_done_late_still_arms_the_next_one_if_it_is_ahead(db):
    await db.apply(on_session_scheduled, scheduled())
    assert await run_at(db, START - 2 * HOUR) == 1  # the 24 h one, late (the service was away)
    assert await reminder_timers(db) == {"s1||60": START - HOUR}
    assert await run_at(db, START - HOUR) == 1
    assert len({row.idempotency_key for row, _ in await reminder_mails(db)}) == 4
    assert await reminder_timers(db) == {}


async def test_reminder_hours_come_from_the_settings(db):
    db.settings = db.settings.model_copy(update={"reminder_hours": "48, 2,2"})
    await db.apply(on_session_scheduled, scheduled(START + 24 * HOUR))
    assert sorted(await reminder_timers(db)) == ["s1||120", "s1||2880"]
    db.settings = db.settings.model_copy(update={"reminder_hours": ""})
    await db.apply(on_session_scheduled, scheduled(START, session_id="s2"))
    assert not any(k.startswith("s2|") for k in await reminder_timers(db))


async def test_each_occurrence_of_a_series_has_reminders_and_one_can_be_cancelled_or_moved(db):
    first = START + 7 * 24 * HOUR
    skipped = first + 14 * 24 * HOUR
    event = scheduled(
        first,
        session_id="series-1",
        series_id="series-1",
        kind="regular",
        rrule="FREQ=WEEKLY;COUNT=4",
        ical=series_ical(first, count=4, exdate=skipped),
    )
    await db.apply(on_session_scheduled, event)
    timers = await reminder_timers(db)
    starts = [first, first + 7 * 24 * HOUR, first + 21 * 24 * HOUR]  # the third is an EXDATE
    assert sorted(timers.values()) == sorted(
        [s - 24 * HOUR for s in starts] + [s - HOUR for s in starts]
    )
    second = starts[1]
    prefix = f"series-1|{second.isoformat()}|"
    # one occurrence cancelled: its two reminders go, the others stay
    await db.apply(
        on_session_cancelled,
        cancelled(
            session_id="series-1",
            series_id="series-1",
            recurrence_ids=[second.isoformat()],
            session_ids=["occ-2"],
            starts=[second.isoformat()],
        ),
    )
    timers = await reminder_timers(db)
    assert len(timers) == 4 and not any(k.startswith(prefix) for k in timers)
    # another occurrence moved by two hours: its reminders follow it
    last = starts[2]
    await db.apply(
        on_session_rescheduled,
        rescheduled(
            last + 2 * HOUR,
            previous=last,
            session_id="occ-4",
            series_id="series-1",
            recurrence_id=last.isoformat(),
        ),
    )
    timers = await reminder_timers(db)
    assert timers[f"series-1|{last.isoformat()}|60"] == last + HOUR
    # the whole series cancelled: every reminder goes
    await db.apply(on_session_cancelled, cancelled(session_id="series-1", series_id="series-1"))
    assert await reminder_timers(db) == {}


async def test_hostile_names_are_inert_in_a_reminder(db):
    hostile = 'Mal "<script>alert(1)</script>" \u2028\u202eevil'
    await db.apply(
        on_participant_registered,
        person("m", role="mentor", display_name=hostile),
    )
    await db.apply(
        on_session_scheduled,
        scheduled(video_url='https://x.example/"><script>\r\nBcc: x@evil.example'),
    )
    assert await run_at(db, START - 24 * HOUR) == 1
    for row, message in await reminder_mails(db):
        head = row.message.split(b"\r\n\r\n", 1)[0].decode()
        assert "Bcc" not in [line.split(":")[0] for line in head.split("\r\n")]
        html = message.get_body(("html",))
        assert html is not None
        content = str(html.get_content())
        assert "<script>" not in content and "&lt;script&gt;" in content
        for char in "\u2028\u202e":
            assert char not in content and char not in text_of(message)  # type: ignore[arg-type]


def test_the_fast_series_reader_agrees_with_recurring_ical_events_across_dst():
    berlin = ZoneInfo("Europe/Berlin")
    first = dt.datetime(2027, 3, 10, 16, 0, tzinfo=berlin)  # weekly over the 28 March change
    cal = icalendar.Calendar()
    cal.add("prodid", "-//Test//EN")
    cal.add("version", "2.0")
    master = icalendar.Event()
    master.add("uid", "series-1@mentorship")
    master.add("dtstart", first)
    master.add("dtend", first + HOUR)
    master.add("rrule", {"freq": "weekly", "count": 8})
    master.add("exdate", first + dt.timedelta(weeks=2))
    cal.add_component(master)
    override = icalendar.Event()
    override.add("uid", "series-1@mentorship")
    override.add("recurrence-id", first + dt.timedelta(weeks=3))
    override.add("dtstart", first + dt.timedelta(weeks=3, hours=2))
    override.add("dtend", first + dt.timedelta(weeks=3, hours=3))
    cal.add_component(override)
    ical = cal.to_ical().decode()
    assert "TZID=Europe/Berlin" in ical
    after = dt.datetime(2027, 3, 1, tzinfo=dt.UTC)
    fast = reminders.series_occurrences(ical, series_id="x", after=after)
    slow = reminders.series_occurrences(ical, series_id="x", after=after, quick=False)
    assert fast == sorted(fast, key=lambda o: o.start)
    assert len(fast) == 7
    # 16:00 Berlin is 15:00 UTC before the change and 14:00 UTC after it
    assert fast[0].start == dt.datetime(2027, 3, 10, 15, tzinfo=dt.UTC)
    assert fast[-1].start == dt.datetime(2027, 4, 28, 14, tzinfo=dt.UTC)
    moved = next(o for o in fast if o.recurrence_id != o.start)
    assert moved.start - moved.recurrence_id == 2 * HOUR
    assert [(o.recurrence_id, o.start, o.end) for o in fast] == [
        (o.recurrence_id, o.start, o.end) for o in slow
    ]
