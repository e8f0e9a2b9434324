"""scheduling against a real nats-server and database: registrations and pair.formed, as events."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

from icalendar import Calendar
from sqlalchemy import func, select

from services.scheduling import store
from services.scheduling.app import definition
from shared.bus import STREAM, durable_name
from shared.events import dead_letter_subject
from shared.service import Running
from tests.support.factories import envelope, publish, registration
from tests.support.waiting import eventually, messages_on, running, settings_for, subject_counts

REGISTERED = "mentorship.participant.registered"
FORMED = "mentorship.pair.formed"
SCHEDULED = "mentorship.session.scheduled"
DLQ = dead_letter_subject("scheduling")


def pair_formed(program: str, pair_id: str = "pair-1") -> dict[str, Any]:
    return envelope(
        program, pair_id=pair_id, round_id="r1", mentor_id="m", mentee_id="e", language="en"
    )


async def register_pair(js: Any, program: str) -> None:
    await publish(js, REGISTERED, registration(program, "m", role="mentor"))
    await publish(js, REGISTERED, registration(program, "e", timezone="America/New_York"))


async def count(js: Any, subject: str) -> int:
    return (await subject_counts(js)).get(subject, 0)


async def _has(js: Any, subject: str, n: int) -> bool:
    return await count(js, subject) == n


async def sessions_of(rt: Running, program: str) -> list[store.Session]:
    async with rt.sessions() as session:
        query = select(store.Session).where(store.Session.program_id == program)
        return list(await session.scalars(query))


async def settled(js: Any, rt: Running, subject: str, through: int) -> bool:
    """Every message on `subject` up to stream sequence `through` is acked, its events published."""
    info = await js.consumer_info(STREAM, durable_name("scheduling", subject))
    outbox = rt.tables.outbox
    async with rt.sessions() as session:
        unpublished = await session.scalar(
            select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
        )
    return (
        info.ack_floor.stream_seq >= through
        and info.num_ack_pending == 0
        and info.num_pending == 0
        and unpublished == 0
    )


async def test_a_formed_pair_gets_a_kickoff_invitation_on_the_stream(
    tmp_path, nats_server, js, database_url
):
    settings = settings_for(tmp_path, nats_server.url, database_url)
    async with running(definition(), settings):
        await register_pair(js, "prog")
        # no pause: pair.formed is on another subject, its consumer waits for the registrations
        await publish(js, FORMED, pair_formed("prog"))
        await eventually(lambda: _has(js, SCHEDULED, 2), what="kickoff and series scheduled")
        messages = await messages_on(js, SCHEDULED)
    [message] = [m for m in messages if json.loads(m.data)["kind"] == "kickoff"]
    body = json.loads(message.data)
    assert message.headers["Nats-Msg-Id"] == body["event_id"]
    assert message.headers["ce-type"] == SCHEDULED
    assert (body["program_id"], body["pair_id"], body["kind"]) == ("prog", "pair-1", "kickoff")
    assert body["attendee_ids"] == ["m", "e"]
    start = dt.datetime.fromisoformat(body["start"])
    # inside both working days: 09:00-17:00 in Berlin and in New York
    for zone in ("Europe/Berlin", "America/New_York"):
        local = start.astimezone(ZoneInfo(zone))
        assert dt.time(9) <= local.time() and (local + dt.timedelta(hours=1)).time() <= dt.time(17)
    calendar = Calendar.from_ical(body["ical"])
    assert str(calendar["METHOD"]) == "REQUEST"
    [vevent] = calendar.walk("VEVENT")
    assert str(vevent["UID"]) == body["uid"]
    assert vevent["DTSTART"].params["TZID"] == "Europe/Berlin"
    assert vevent["DTSTART"].dt == start
    assert [str(a) for a in vevent["ATTENDEE"]] == ["mailto:m@example.org", "mailto:e@example.org"]
    assert [tz["TZID"] for tz in calendar.walk("VTIMEZONE")] == ["Europe/Berlin"]


async def test_a_redelivered_or_repeated_pair_formed_schedules_no_second_kickoff(
    tmp_path, nats_server, js, database_url
):
    settings = settings_for(tmp_path, nats_server.url, database_url)
    async with running(definition(), settings) as rt:
        await register_pair(js, "prog")
        body = pair_formed("prog")
        await publish(js, FORMED, body)
        await eventually(lambda: _has(js, SCHEDULED, 2), what="the first kickoff and series")
        # the same event again past JetStream's duplicate window (another Nats-Msg-Id), as
        # after a lost ack, and the same fact as a new event
        await publish(js, FORMED, body, msg_id="redelivered")
        last = await publish(js, FORMED, pair_formed("prog"))
        await eventually(lambda: settled(js, rt, FORMED, last.seq), what="both copies acked")
        assert await count(js, FORMED) == 3
        assert await count(js, SCHEDULED) == 2
        assert await count(js, DLQ) == 0  # both copies were applied as no-ops, not rejected
        assert len(await sessions_of(rt, "prog")) == 1 + 13  # the kickoff, the series' 13


async def test_the_same_pair_id_in_two_programs_gets_two_kickoffs_and_a_cross_program_pair_none(
    tmp_path, nats_server, js, database_url
):
    settings = settings_for(tmp_path, nats_server.url, database_url)
    async with running(definition(), settings) as rt:
        await register_pair(js, "prog-a")
        await register_pair(js, "prog-b")
        await publish(js, FORMED, pair_formed("prog-a", "shared"))
        await publish(js, FORMED, pair_formed("prog-b", "shared"))
        # prog-c knows only its mentor; its mentee "e" is a participant of prog-a and prog-b
        await publish(js, REGISTERED, registration("prog-c", "m", role="mentor"))
        await publish(js, FORMED, pair_formed("prog-c", "shared"))
        await eventually(lambda: _has(js, DLQ, 1), what="the cross-program pair's dead letter")
        await eventually(lambda: _has(js, SCHEDULED, 4), what="both programs' kickoffs")
        [letter] = await messages_on(js, DLQ)
        scheduled = [json.loads(m.data) for m in await messages_on(js, SCHEDULED)]
        scheduled = [s for s in scheduled if s["kind"] == "kickoff"]
        assert await sessions_of(rt, "prog-c") == []
    assert sorted(s["program_id"] for s in scheduled) == ["prog-a", "prog-b"]
    assert len({s["session_id"] for s in scheduled}) == len({s["uid"] for s in scheduled}) == 2
    reason = letter.headers["Mentorship-Dlq-Reason"]
    assert "participant 'e' belongs to another program" in reason
    assert letter.headers["Mentorship-Dlq-Deliveries"] == "1"  # never retried
    assert json.loads(letter.data)["program_id"] == "prog-c"


async def test_a_pair_formed_for_an_unknown_participant_is_dead_lettered_after_its_retries(
    tmp_path, nats_server, js, database_url
):
    settings = settings_for(
        tmp_path, nats_server.url, database_url, max_deliver=2, retry_base_seconds=0.1
    )
    async with running(definition(), settings) as rt:
        await publish(js, REGISTERED, registration("prog", "m", role="mentor"))
        body = pair_formed("prog")
        ack = await publish(js, FORMED, body)
        await eventually(lambda: _has(js, DLQ, 1), what="the dead letter")
        await eventually(lambda: settled(js, rt, FORMED, ack.seq), what="the original acked")
        [letter] = await messages_on(js, DLQ)
        assert await count(js, SCHEDULED) == 0
        assert await sessions_of(rt, "prog") == []
    assert json.loads(letter.data) == body
    assert letter.headers["Mentorship-Dlq-Original-Subject"] == FORMED
    assert letter.headers["Mentorship-Dlq-Deliveries"] == "2"
    reason = letter.headers["Mentorship-Dlq-Reason"]
    assert "unknown reference after 2 deliveries" in reason
    assert "participant 'e' of program 'prog' is unknown" in reason
    assert "publish participant.registered first" in reason
