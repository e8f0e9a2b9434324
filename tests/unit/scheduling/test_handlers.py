"""scheduling's handlers on a real SQLite database, without NATS: what they store and emit."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar
from sqlalchemy import func, select

from services.scheduling import kinds, store
from services.scheduling.handlers import (
    SUBSCRIPTIONS,
    on_pair_formed,
    on_participant_registered,
    on_timezone_changed,
)
from services.scheduling.plans import kickoff_session_id
from shared.errors import ProgramMismatch, UnknownReference
from shared.events import (
    PairFormed,
    ParticipantRegistered,
    ParticipantTimezoneChanged,
    SessionKind,
    SessionScheduled,
    SessionUnschedulable,
)
from tests.support.factories import envelope, registration
from tests.support.handlers import HandlerDb, handler_db

ORGANIZER = "coordinator@mentorship.example"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[HandlerDb]:
    async with handler_db(
        store.Base.metadata,
        store.delivery,
        tmp_path,
        source="scheduling",
        mail_from=ORGANIZER,
        mail_from_name="Mentoring Team",
        kickoff_lead_days=2,
    ) as db:
        yield db


def registered(
    program: str,
    participant: str,
    *,
    role: str = "mentee",
    timezone: str = "Europe/Berlin",
    **fields: Any,
) -> ParticipantRegistered:
    body = registration(program, participant, role=role, timezone=timezone)
    return ParticipantRegistered.model_validate(body | fields)


def formed(program: str, pair: str = "pair-1", mentor: str = "m", mentee: str = "e") -> PairFormed:
    return PairFormed.model_validate(
        envelope(
            program, pair_id=pair, round_id="r1", mentor_id=mentor, mentee_id=mentee, language="en"
        )
    )


async def register_pair(db: HandlerDb, program: str, **mentee_options: Any) -> None:
    await db.apply(on_participant_registered, registered(program, "m", role="mentor"))
    await db.apply(on_participant_registered, registered(program, "e", **mentee_options))


async def sessions_of(db: HandlerDb, program: str) -> list[store.Session]:
    async with db.sessions() as session:
        rows = await session.scalars(
            select(store.Session).where(store.Session.program_id == program)
        )
        return list(rows)


def kickoff_of(uow) -> SessionScheduled:
    [kickoff] = [e for e in uow.emitted if isinstance(e, SessionScheduled) and e.kind == "kickoff"]
    return kickoff


def series_of(uow) -> SessionScheduled:
    [regular] = [e for e in uow.emitted if isinstance(e, SessionScheduled) and e.kind == "regular"]
    return regular


async def test_pair_formed_plans_a_kickoff_in_both_working_hours_with_an_invitation(db):
    await register_pair(db, "prog", timezone="America/New_York")
    uow = await db.apply(on_pair_formed, formed("prog"))
    assert [type(e) for e in uow.emitted] == [SessionScheduled, SessionScheduled]
    scheduled = kickoff_of(uow)
    assert scheduled.session_id == kickoff_session_id("prog", "pair-1")
    assert scheduled.attendee_ids == ["m", "e"]
    assert [(a.email, a.role, a.timezone) for a in scheduled.attendees] == [
        ("m@example.org", "mentor", "Europe/Berlin"),
        ("e@example.org", "mentee", "America/New_York"),
    ]
    assert scheduled.agenda.startswith("Get to know each other")
    assert scheduled.occurred_at == db.clock.now()
    # Monday 08:00 UTC plus two local days: Wednesday 3 March, 09:00 in New York (EST)
    assert scheduled.start == dt.datetime(2027, 3, 3, 14, tzinfo=dt.UTC)
    assert scheduled.end - scheduled.start == dt.timedelta(hours=1)
    [vevent] = Calendar.from_ical(scheduled.ical).walk("VEVENT")
    assert str(vevent["UID"]) == scheduled.uid
    assert str(vevent["ORGANIZER"]) == f"mailto:{ORGANIZER}"
    assert [str(a) for a in vevent["ATTENDEE"]] == ["mailto:m@example.org", "mailto:e@example.org"]
    assert vevent["DTSTART"].dt == scheduled.start.astimezone(ZoneInfo("Europe/Berlin"))
    assert str(vevent["SUMMARY"]) == "Mentorship kickoff: Person m & Person e"
    rows = await sessions_of(db, "prog")
    [row] = [r for r in rows if r.session_id == scheduled.session_id]
    assert (row.status, row.uid, row.note) == ("scheduled", scheduled.uid, None)
    # SQLite hands DateTime(timezone=True) back without its offset; the instant is UTC
    assert row.start is not None and row.start.replace(tzinfo=dt.UTC) == scheduled.start


async def test_the_series_follows_the_kickoff_and_takes_the_other_persons_edge(tmp_path):
    async with handler_db(
        store.Base.metadata, store.delivery, tmp_path, session_cadence_days=7
    ) as db:
        await register_pair(db, "prog", timezone="America/New_York")
        uow = await db.apply(on_pair_formed, formed("prog"))
        kickoff, regular = kickoff_of(uow), series_of(uow)
        # before the US switch the only overlap is 15:00-17:00 Berlin = 09:00-11:00 New York:
        # the kickoff took New York's early edge, so the series takes Berlin's late one
        assert regular.start == dt.datetime(2027, 3, 9, 15, tzinfo=dt.UTC)
        assert regular.start.astimezone(ZoneInfo("Europe/Berlin")).time() == dt.time(16)
        assert regular.rrule == "FREQ=WEEKLY;INTERVAL=1;BYDAY=TU;COUNT=26"
        assert regular.series_id == regular.session_id and regular.uid != kickoff.uid
        assert regular.end - regular.start == dt.timedelta(minutes=45)
        await _check_series_rows(db, regular, 26)


async def _check_series_rows(db: HandlerDb, regular: SessionScheduled, count: int) -> None:
    rows = [r for r in await sessions_of(db, "prog") if r.meeting_id == regular.series_id]
    assert len(rows) == count and all(r.uid == regular.uid for r in rows)
    async with db.sessions() as session:
        m = await store.get_person(session, program_id="prog", participant_id="m")
        e = await store.get_person(session, program_id="prog", participant_id="e")
    assert e is not None and m is not None and e.edge_burden == 1 and m.edge_burden >= 1


async def test_a_program_with_rhythms_plans_coffee_chats_and_quarterly_reflections(tmp_path):
    async with handler_db(
        store.Base.metadata, store.delivery, tmp_path, session_cadence_days=7,
        session_rhythms="coffee_chat, quarterly_reflection",
    ) as db:  # fmt: skip
        await register_pair(db, "prog", timezone="America/New_York")
        uow = await db.apply(on_pair_formed, formed("prog"))
        planned = {e.kind: e for e in uow.emitted if isinstance(e, SessionScheduled)}
        assert list(planned) == ["kickoff", "regular", "coffee_chat", "quarterly_reflection"]
        kickoff, coffee, reflection = (
            planned[k] for k in ("kickoff", "coffee_chat", "quarterly_reflection")
        )
        assert coffee.rrule is not None and coffee.rrule.startswith("FREQ=MONTHLY;BYDAY=")
        assert coffee.end - coffee.start == dt.timedelta(minutes=30)
        assert coffee.start >= kickoff.start + dt.timedelta(days=14)
        assert reflection.rrule is not None and "INTERVAL=3" in reflection.rrule
        assert reflection.end - reflection.start == dt.timedelta(minutes=60)
        assert reflection.agenda.startswith("Look back on the quarter")
        assert len({e.uid for e in planned.values()}) == 4
        # every occurrence of every kind: inside both people's hours, never two at once
        rows = [r for r in await sessions_of(db, "prog") if r.start is not None]
        assert {r.kind for r in rows} == set(planned)
        spans = sorted((r.start, r.end) for r in rows)
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end + dt.timedelta(minutes=15) <= start


def test_an_unknown_rhythm_is_refused_naming_the_known_ones():
    assert kinds.rhythms("") == []
    assert kinds.rhythms("coffee_chat,coffee_chat") == [SessionKind.COFFEE_CHAT]
    with pytest.raises(ValueError, match="coffee_chat, quarterly_reflection"):
        kinds.rhythms("coffee_chat,brunch")


async def test_a_mentor_with_two_mentees_is_never_in_two_sessions_at_once(db):
    await db.apply(on_participant_registered, registered("prog", "m", role="mentor"))
    for mentee in ("e1", "e2", "e3"):
        await db.apply(on_participant_registered, registered("prog", mentee))
    async with db.unit_of_work() as uow:  # one batch, as the consumer applies it
        for n, mentee in enumerate(("e1", "e2", "e3")):
            async with uow.session.begin_nested():
                await on_pair_formed(formed("prog", pair=f"p{n}", mentee=mentee), uow)
    rows = [r for r in await sessions_of(db, "prog") if r.start is not None]
    spans = sorted((r.start, r.end) for r in rows)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end + dt.timedelta(minutes=15) <= start
    assert len({r.pair_id for r in rows}) == 3


async def test_kickoff_lead_time_comes_from_the_settings_of_the_unit_of_work(tmp_path):
    async with handler_db(
        store.Base.metadata, store.delivery, tmp_path, kickoff_lead_days=10
    ) as db:
        await register_pair(db, "prog")
        scheduled = kickoff_of(await db.apply(on_pair_formed, formed("prog")))
    # ten days after Monday 1 March is Thursday 11 March, from 10:00 in Berlin (CET), away
    # from both people's edge of the day
    assert scheduled.start == dt.datetime(2027, 3, 11, 9, tzinfo=dt.UTC)


async def test_a_repeated_pair_formed_plans_no_second_kickoff(db):
    await register_pair(db, "prog")
    first = await db.apply(on_pair_formed, formed("prog"))
    db.clock.advance(dt.timedelta(days=3))
    again = await db.apply(on_pair_formed, formed("prog"))  # same pair, a new event id
    assert len(first.emitted) == 2
    assert again.emitted == []
    assert len(await sessions_of(db, "prog")) == 1 + 13


async def test_two_pair_formed_of_one_batch_plan_one_kickoff(db):
    await register_pair(db, "prog")
    async with db.unit_of_work() as uow:
        for _ in range(2):  # as the batched consumer applies them: one savepoint per event
            async with uow.session.begin_nested():
                await on_pair_formed(formed("prog"), uow)
    assert len(uow.emitted) == 2
    assert len(await sessions_of(db, "prog")) == 1 + 13


async def test_the_same_pair_id_in_two_programs_gives_two_kickoffs(db):
    await register_pair(db, "prog-a")
    await register_pair(db, "prog-b")
    a = kickoff_of(await db.apply(on_pair_formed, formed("prog-a", pair="shared")))
    b = kickoff_of(await db.apply(on_pair_formed, formed("prog-b", pair="shared")))
    assert (a.program_id, b.program_id) == ("prog-a", "prog-b")
    assert a.session_id != b.session_id
    assert a.uid != b.uid
    assert {r.pair_id for r in await sessions_of(db, "prog-a")} == {"shared"}
    assert {r.pair_id for r in await sessions_of(db, "prog-b")} == {"shared"}


async def test_a_pair_formed_naming_a_participant_of_another_program_is_a_program_mismatch(db):
    await register_pair(db, "prog-a")
    await db.apply(on_participant_registered, registered("prog-b", "m", role="mentor"))
    with pytest.raises(ProgramMismatch, match="participant 'e' belongs to another program"):
        await db.apply(on_pair_formed, formed("prog-b"))
    assert await sessions_of(db, "prog-b") == []


async def test_a_pair_formed_naming_a_participant_unknown_everywhere_is_an_unknown_reference(db):
    await db.apply(on_participant_registered, registered("prog", "m", role="mentor"))
    with pytest.raises(UnknownReference, match=r"publish participant\.registered first"):
        await db.apply(on_pair_formed, formed("prog"))
    assert await sessions_of(db, "prog") == []


async def test_a_pair_without_a_shared_working_hour_is_kept_unschedulable_without_invitation(db):
    # Berlin 09:00-10:00 is 00:00-01:00 in Los Angeles: never inside both days
    short = [{"weekday": d, "start": "09:00", "end": "10:00"} for d in range(5)]
    await db.apply(
        on_participant_registered, registered("prog", "m", role="mentor", working_hours=short)
    )
    await db.apply(
        on_participant_registered,
        registered("prog", "e", timezone="America/Los_Angeles", working_hours=short),
    )
    uow = await db.apply(on_pair_formed, formed("prog"))
    assert [type(e) for e in uow.emitted] == [SessionUnschedulable, SessionUnschedulable]
    kickoff, regular = uow.emitted
    assert isinstance(kickoff, SessionUnschedulable) and isinstance(regular, SessionUnschedulable)
    assert (kickoff.kind, regular.kind) == ("kickoff", "regular")
    assert "share no working hour" in kickoff.reason and "America/Los_Angeles" in kickoff.reason
    assert kickoff.session_id == kickoff_session_id("prog", "pair-1")
    [row] = await sessions_of(db, "prog")
    assert (row.status, row.start) == ("unschedulable", None)
    assert row.note is not None and "share no working hour" in row.note


async def test_a_re_registration_replaces_zone_hours_and_address(db):
    await db.apply(on_participant_registered, registered("prog", "e"))
    hours = [{"weekday": 5, "start": "10:00", "end": "12:00"}]
    changed = registered(
        "prog", "e", timezone="Asia/Tokyo", email="new@example.org", working_hours=hours
    )
    await db.apply(on_participant_registered, changed)
    async with db.sessions() as session:
        person = await store.get_person(session, program_id="prog", participant_id="e")
    assert person is not None
    assert (person.timezone, person.email) == ("Asia/Tokyo", "new@example.org")
    assert person.working_hours == [{"weekday": 5, "start": "10:00:00", "end": "12:00:00"}]


async def test_a_registration_costs_one_write_and_no_lookup(db):
    with db.statements() as first:
        await db.apply(on_participant_registered, registered("prog", "e"))
    with db.statements() as again:
        await db.apply(on_participant_registered, registered("prog", "e", timezone="Asia/Tokyo"))
    assert first == again == ["INSERT INTO people"]  # an upsert, no lookup first


async def test_a_timezone_change_is_used_by_the_next_kickoff(db):
    await register_pair(db, "prog")
    change = ParticipantTimezoneChanged.model_validate(
        envelope(
            "prog",
            participant_id="e",
            old_timezone="Europe/Berlin",
            new_timezone="America/New_York",
            effective_date="2027-03-01",
        )
    )
    await db.apply(on_timezone_changed, change)
    scheduled = kickoff_of(await db.apply(on_pair_formed, formed("prog")))
    # Berlin's 17:00 is New York's 11:00: the overlap is 14:00-16:00 UTC
    assert scheduled.start == dt.datetime(2027, 3, 3, 14, tzinfo=dt.UTC)


async def test_a_timezone_change_for_a_participant_of_another_program_is_a_program_mismatch(db):
    await db.apply(on_participant_registered, registered("prog-a", "e"))
    change = ParticipantTimezoneChanged.model_validate(
        envelope(
            "prog-b",
            participant_id="e",
            old_timezone="Europe/Berlin",
            new_timezone="Asia/Tokyo",
            effective_date="2027-03-01",
        )
    )
    with pytest.raises(ProgramMismatch):
        await db.apply(on_timezone_changed, change)
    async with db.sessions() as session:
        count = await session.scalar(select(func.count()).select_from(store.Person))
        person = await store.get_person(session, program_id="prog-a", participant_id="e")
    assert count == 1
    assert person is not None and person.timezone == "Europe/Berlin"


async def test_a_batch_of_pair_formed_preloaded_as_the_consumer_does_plans_each_pair_once(db):
    """Preloaded kickoffs and people, busy time read once a person, one flush for the batch:
    a mentor of three pairs is never double-booked, a pair.formed repeated inside the batch
    plans nothing more, and the batch costs a few statements per pair, not one per read."""
    await db.apply(on_participant_registered, registered("prog", "m", role="mentor"))
    for mentee in ("e1", "e2", "e3"):
        await db.apply(on_participant_registered, registered("prog", mentee))
    events = [formed("prog", pair=f"p{n}", mentee=f"e{n + 1}") for n in range(3)]
    events.append(formed("prog", pair="p0", mentee="e1"))  # the first again, a new event id
    preloads = next(s.preload for s in SUBSCRIPTIONS if s.event is PairFormed)
    with db.statements() as sent:
        async with db.unit_of_work() as uow:  # one batch, as the consumer's fast path runs it
            uow.batch = events
            for preload in preloads:
                uow.preloaded(preload.model, await preload.load(uow.session, events))
            for event in events:
                await on_pair_formed(event, uow)
    rows = [r for r in await sessions_of(db, "prog") if r.start is not None]
    assert len({r.pair_id for r in rows}) == 3
    assert len([r for r in rows if r.kind == "kickoff"]) == 3
    spans = sorted((r.start, r.end) for r in rows)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end + dt.timedelta(minutes=15) <= start
    reads = [s for s in sent if s.startswith("SELECT")]
    # 2 preloads, then everyone's busy time (sessions, absences) in one statement for the batch:
    # not the seven or so reads per pair of a read before every lookup, nor one per pair
    busy = [s for s in reads if s.startswith("SELECT sessions.session_id, sessions.start")]
    assert len(busy) == 1, reads
    assert len(reads) == 3, reads
