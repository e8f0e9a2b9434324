"""Preferences per person, on a real SQLite database: daily digests and frequency caps (their
time rules across DST), one-click unsubscribe (recorded, never silent; essential mail always
goes), and the timed kinds: weekly wins, the quarterly survey, touchpoints, video links."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from services.notifications import digests, pages, preferences, store
from services.notifications.handlers import (
    on_pair_formed,
    on_participant_left,
    on_participant_registered,
    on_participant_updated,
    on_session_scheduled,
)
from services.notifications.notices import on_milestone_reached
from services.notifications.quiet import QuietHours
from shared.events import (
    CharterAgreed,
    MilestoneReached,
    PairFormed,
    ParticipantLeft,
    ParticipantRegistered,
    ParticipantUpdated,
    SessionHeld,
    SessionScheduled,
)
from shared.links import RELATIONSHIP, link_signer
from shared.timers import Due
from tests.support.factories import envelope, registration
from tests.support.handlers import HandlerDb, handler_db

NAME = 'Ann "<b>x</b>" & <script>alert(1)</script>\u2028\u202eevil\u2066'
TEXT = 'Bad\r\nBcc: victim@evil.example\r\n\r\n<img src=x onerror="alert(1)">\u2028\u202e\u2067 end'
UNSAFE_CHARS = "\u2028\u2029\u202e\u2066\u2067"
MONDAY = dt.datetime(2027, 3, 1, 10, tzinfo=dt.UTC)  # 11:00 in Berlin, 19:00 in Tokyo
QUIET = QuietHours()  # 20:00-08:00 and weekends


# --- time rules ----------------------------------------------------------------------------


def local(at: dt.datetime, zone: str) -> dt.datetime:
    return at.astimezone(ZoneInfo(zone))


def test_the_digest_goes_at_the_next_local_digest_hour():
    due = preferences.next_digest(MONDAY, "Europe/Berlin", 9, QUIET)
    assert local(due, "Europe/Berlin") == dt.datetime(
        2027, 3, 2, 9, tzinfo=ZoneInfo("Europe/Berlin")
    )
    early = dt.datetime(2027, 3, 1, 6, tzinfo=dt.UTC)  # 07:00 Berlin: today's 09:00 is ahead
    assert (
        local(preferences.next_digest(early, "Europe/Berlin", 9, QUIET), "Europe/Berlin").day == 1
    )


def test_the_digest_hour_keeps_its_local_time_over_both_dst_changes():
    zone = "Europe/Berlin"
    spring = dt.datetime(2027, 3, 27, 10, tzinfo=dt.UTC)  # Saturday; clocks go forward Sunday
    due = preferences.next_digest(spring, zone, 9, QuietHours(weekends=False))
    assert (local(due, zone).hour, local(due, zone).day) == (9, 28)
    assert due == dt.datetime(2027, 3, 28, 7, tzinfo=dt.UTC)  # UTC+2 from now on
    autumn = dt.datetime(2027, 10, 30, 10, tzinfo=dt.UTC)  # clocks go back Sunday the 31st
    due = preferences.next_digest(autumn, zone, 9, QuietHours(weekends=False))
    assert due == dt.datetime(2027, 10, 31, 8, tzinfo=dt.UTC)  # UTC+1 again


def test_a_digest_hour_inside_the_spring_gap_moves_past_it_not_to_the_day_after():
    zone = "Europe/Berlin"  # 02:00-03:00 does not exist on 2027-03-28
    before = dt.datetime(2027, 3, 27, 23, tzinfo=dt.UTC)
    due = preferences.next_digest(before, zone, 2, QuietHours.parse("", weekends=False))
    assert local(due, zone) == dt.datetime(2027, 3, 28, 3, tzinfo=ZoneInfo(zone))


def test_a_digest_hour_in_quiet_hours_or_on_a_weekend_waits_for_the_next_allowed_time():
    zone = "America/New_York"
    friday = dt.datetime(2027, 3, 5, 15, tzinfo=dt.UTC)  # 10:00 Friday in New York
    due = preferences.next_digest(friday, zone, 21, QUIET)  # 21:00 is quiet; then the weekend
    assert local(due, zone) == dt.datetime(2027, 3, 8, 8, tzinfo=ZoneInfo(zone))  # Monday 08:00


ZONES = st.sampled_from(
    ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Lord_Howe", "UTC"]
)
INSTANTS = st.datetimes(
    min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2029, 1, 1), timezones=st.just(dt.UTC)
)


@given(now=INSTANTS, zone=ZONES, hour=st.integers(0, 23), weekends=st.booleans())
def test_the_digest_is_always_ahead_soon_and_outside_quiet_hours(now, zone, hour, weekends):
    quiet = QuietHours(weekends=weekends)
    due = preferences.next_digest(now, zone, hour, quiet)
    assert now < due <= now + dt.timedelta(days=4)
    assert quiet.allowed(local(due, zone))
    window = preferences.digest_window(due, zone)
    assert window == local(due, zone).strftime("%Y-%m-%dT%H:%M")
    if local(due, zone).hour == hour and local(due, zone).minute == 0:
        # everything held until then goes in that one digest: asking again just before it is
        # due gives the same digest
        assert preferences.next_digest(due - dt.timedelta(seconds=1), zone, hour, quiet) == due
    else:  # the hour fell in quiet hours (the digest goes when they end) or in a DST gap
        moved = local(due, zone)
        assert moved.time() == quiet.end or moved.hour == (hour + 1) % 24 or moved.minute == 30


@given(now=INSTANTS)
def test_quarters_and_weeks_follow_the_calendar(now):
    name, start = preferences.next_quarter(now)
    first = preferences.quarter_day(name)
    assert first.day == 1 and first.month in (1, 4, 7, 10) and first > now.date()
    # the timer fires when 09:00 of that day comes first anywhere (UTC+14)
    assert start == dt.datetime.combine(first, dt.time(9), tzinfo=dt.UTC) - dt.timedelta(hours=14)
    assert start - now <= dt.timedelta(days=93)
    week, due = preferences.wins_week(now)
    monday = preferences.wins_day(week)
    assert monday.weekday() == 0 and due == preferences.first_local(monday)
    assert dt.timedelta(0) < due - now <= dt.timedelta(days=7)  # still to come: nothing is lost
    assert due.astimezone(ZoneInfo("Pacific/Kiritimati")).time() == dt.time(9)


def test_program_wide_mail_goes_at_nine_in_each_recipients_own_zone():
    monday = dt.date(2027, 3, 8)
    assert local(preferences.local_hour_on(monday, "Asia/Tokyo"), "Asia/Tokyo").hour == 9
    assert preferences.local_hour_on(monday, "America/New_York") == dt.datetime(
        2027, 3, 8, 14, tzinfo=dt.UTC
    )
    # the timer fires before the first zone's 09:00, so no one's 09:00 is already past
    for zone in ("Pacific/Kiritimati", "Asia/Tokyo", "Europe/Berlin", "Pacific/Pago_Pago"):
        assert preferences.first_local(monday) <= preferences.local_hour_on(monday, zone)
    assert preferences.wins_day("2027-W09") == monday
    assert preferences.quarter_day("2027Q2") == dt.date(2027, 4, 1)


def test_the_cap_counts_per_local_day_and_zero_means_none():
    late = dt.datetime(2027, 3, 1, 23, 30, tzinfo=dt.UTC)
    assert preferences.local_day(late, "UTC") == "2027-03-01"
    assert preferences.local_day(late, "Europe/Berlin") == "2027-03-02"
    assert not preferences.over_cap(2, 3) and preferences.over_cap(3, 3)
    assert not preferences.over_cap(10_000, 0)


def test_only_optional_kinds_can_be_refused_and_invitations_never():
    for kind in ("session.kickoff", "session.rescheduled", "session.cancelled", "pair.proposed"):
        assert preferences.is_essential(kind)
        assert not preferences.unsubscribed_from(kind, {preferences.ALL, kind})
    assert preferences.unsubscribed_from("milestone.reached", {preferences.ALL})
    assert preferences.unsubscribed_from(preferences.WINS, {preferences.WINS})
    assert not preferences.unsubscribed_from(preferences.WINS, {"milestone.reached"})


# --- on a database ---------------------------------------------------------------------------


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[HandlerDb]:
    async with handler_db(
        store.Base.metadata,
        store.delivery_tables,
        tmp_path,
        source="notifications",
        now=MONDAY,
        mail_from="team@mentoring.example",
        mail_from_name="Mentoring Team",
        link_secret="y" * 40,
        daily_mail_cap=3,
        notifications_public_url="https://mail.mentoring.example/",
        program_video_urls={"p1": "https://meet.example.org/p1"},
    ) as db:
        yield db


def person(participant: str, **changes: Any) -> ParticipantRegistered:
    body = registration("p1", participant, role=changes.pop("role", "mentee"))
    return ParticipantRegistered.model_validate(body | changes)


async def pair(db: HandlerDb, *, name: str | None = None, **mentee: Any) -> None:
    names = {"display_name": name} if name else {}
    await db.apply(on_participant_registered, person("m", role="mentor", **names))
    await db.apply(on_participant_registered, person("e", timezone="Asia/Tokyo", **names | mentee))
    formed = envelope(
        "p1", pair_id="pair-1", round_id="r1", mentor_id="m", mentee_id="e", language="en"
    )
    await db.apply(on_pair_formed, PairFormed.model_validate(formed))


def milestone(n: int, **changes: Any) -> MilestoneReached:
    body = envelope("p1", pair_id="pair-1", milestone_id=f"ms{n}", title=f"Milestone {n}")
    return MilestoneReached.model_validate(body | changes)


async def rows(db: HandlerDb, model: Any, **where: Any) -> list[Any]:
    async with db.sessions() as session:
        statement = select(model)
        for name, value in where.items():
            statement = statement.where(getattr(model, name) == value)
        return list(await session.scalars(statement))


async def mails(db: HandlerDb, kind: str, recipient: str | None = None) -> list[Any]:
    found = await rows(db, store.Delivery, kind=kind, status="pending")
    return [
        email.message_from_bytes(r.message, policy=email.policy.default)
        for r in sorted(found, key=lambda r: r.recipient_id)
        if recipient is None or r.recipient_id == recipient
    ]


async def timers(db: HandlerDb, kind: str) -> list[dict[str, Any]]:
    async with db.sessions() as session:
        found = await session.execute(
            select(store.timers).where(store.timers.c.kind == kind).order_by(store.timers.c.key)
        )
        return [dict(r._mapping) for r in found]


async def fire(db: HandlerDb, kind: str, handler: Any) -> int:
    """Runs every pending timer of a kind, as the timer loop would; how many ran."""
    due = [t for t in await timers(db, kind) if t["status"] == "pending"]
    for t in due:
        item = Due(
            program_id=t["program_id"], kind=kind, key=t["key"],
            due_at=t["due_at"].replace(tzinfo=dt.UTC), payload=t["payload"], attempt=1,
            leased_until=db.clock.now() + dt.timedelta(minutes=2), lease_token="t",
        )  # fmt: skip
        async with db.unit_of_work() as uow:
            await handler(item, uow)
    return len(due)


def body(message: Any, subtype: str) -> str:
    part = message.get_body((subtype,))
    assert part is not None
    return str(part.get_content())


def token_of(url: str) -> str:
    return parse_qs(urlparse(url).query)["t"][0]


async def test_the_daily_cap_folds_the_rest_into_one_digest_sent_once(db):
    await pair(db)
    for n in (1, 2):  # each milestone: a celebration and a feedback request per person
        await db.apply(on_milestone_reached, milestone(n))
    celebrated = await mails(db, "milestone.reached", "m")
    asked = await mails(db, "feedback.request", "m")
    assert len(celebrated) + len(asked) == 3  # the cap
    held = await rows(db, store.HeldItem, participant_id="m")
    assert [(h.kind, h.status) for h in held] == [("feedback.request", "held")]
    [digest_timer] = [t for t in await timers(db, preferences.DIGEST) if t["key"].startswith("m/")]
    # Berlin, Monday 11:00: the next digest is Tuesday 09:00 local
    assert digest_timer["due_at"].replace(tzinfo=dt.UTC) == dt.datetime(
        2027, 3, 2, 8, tzinfo=dt.UTC
    )
    assert digest_timer["key"] == "m/2027-03-02T09:00"
    db.clock.advance(dt.timedelta(days=1))
    assert await fire(db, preferences.DIGEST, digests.on_digest_due) == 2  # m and e
    [digest] = await mails(db, preferences.DIGEST, "m")
    assert "Milestone 2" in body(digest, "plain")
    assert digest["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert [h.status for h in await rows(db, store.HeldItem, participant_id="m")] == ["digested"]
    # the same event again, and the digest's timer run again: nothing more
    await db.apply(on_milestone_reached, milestone(2))
    async with db.sessions() as session, session.begin():
        await session.execute(store.timers.update().values(status="pending"))
    await fire(db, preferences.DIGEST, digests.on_digest_due)
    assert len(await mails(db, preferences.DIGEST, "m")) == 1
    assert len(await rows(db, store.HeldItem, participant_id="m")) == 1


async def test_the_cap_holds_within_one_batch_of_events_too(db):
    await pair(db)
    async with db.unit_of_work() as uow:  # the consumer's batch: one transaction, writes deferred
        for n in (1, 2, 3):
            await on_milestone_reached(milestone(n), uow)
    for who in ("m", "e"):
        sent = await mails(db, "milestone.reached", who) + await mails(db, "feedback.request", who)
        assert len(sent) == 3
        assert len(await rows(db, store.HeldItem, participant_id=who)) == 3
    [count] = await rows(db, store.DailyCount, participant_id="m")
    assert count.sent == 3


async def test_a_person_who_chose_the_daily_digest_gets_low_urgency_mail_only_in_it(db):
    await pair(db, notification_frequency="daily")
    await db.apply(on_milestone_reached, milestone(1))
    assert await mails(db, "milestone.reached", "e") == []  # held: the mentee chose daily
    assert len(await mails(db, "milestone.reached", "m")) == 1  # the mentor did not
    assert {h.kind for h in await rows(db, store.HeldItem, participant_id="e")} == {
        "milestone.reached",
        "feedback.request",
    }
    [timer] = [t for t in await timers(db, preferences.DIGEST) if t["key"].startswith("e/")]
    # Tokyo, Monday 19:00: Tuesday 09:00 local is 00:00 UTC
    assert timer["due_at"].replace(tzinfo=dt.UTC) == dt.datetime(2027, 3, 2, 0, tzinfo=dt.UTC)
    db.clock.advance(dt.timedelta(hours=14))
    await fire(db, preferences.DIGEST, digests.on_digest_due)
    [digest] = await mails(db, preferences.DIGEST, "e")
    text = body(digest, "plain")
    assert "Milestone reached: Milestone 1" in text and "Feedback after Milestone 1" in text
    # a choice changed by participant.updated: immediate again
    updated = ParticipantUpdated.model_validate(
        envelope("p1", participant_id="e", notification_frequency="immediate")
    )
    await db.apply(on_participant_updated, updated)
    await db.apply(on_milestone_reached, milestone(2))
    assert len(await mails(db, "milestone.reached", "e")) == 1


async def choose(db: HandlerDb, participant: str, frequency: str, digest_hour: int) -> None:
    """A person's choice, as the preferences page stores it."""
    async with db.sessions() as session, session.begin():
        session.add(
            store.Preference(
                program_id="p1", participant_id=participant, frequency=frequency,
                digest_hour=digest_hour, updated_at=db.clock.now(),
            )
        )  # fmt: skip


async def test_each_person_gets_their_digest_at_their_own_local_hour(db):
    await pair(db)
    await choose(db, "e", preferences.DAILY, 12)  # Tokyo
    await choose(db, "m", preferences.IMMEDIATE, 15)  # Berlin: only what the cap holds back
    for n in (1, 2):  # a celebration and a feedback request per person each: 4, cap 3
        await db.apply(on_milestone_reached, milestone(n))
    due = {t["key"].split("/")[0]: t["due_at"].replace(tzinfo=dt.UTC) for t in
           await timers(db, preferences.DIGEST)}  # fmt: skip
    # Monday 19:00 in Tokyo: Tuesday 12:00 there; Monday 11:00 in Berlin: 15:00 the same day
    assert due == {
        "e": dt.datetime(2027, 3, 2, 3, tzinfo=dt.UTC),
        "m": dt.datetime(2027, 3, 1, 14, tzinfo=dt.UTC),
    }
    assert len(await rows(db, store.HeldItem, participant_id="e")) == 4
    assert len(await rows(db, store.HeldItem, participant_id="m")) == 1
    db.clock.advance(dt.timedelta(hours=17))  # past both
    assert await fire(db, preferences.DIGEST, digests.on_digest_due) == 2
    [to_m] = await mails(db, preferences.DIGEST, "m")
    assert "Feedback after Milestone 2" in body(to_m, "plain")
    [to_e] = await mails(db, preferences.DIGEST, "e")
    assert "Milestone reached: Milestone 1" in body(to_e, "plain")
    # an hour inside quiet hours (20:00-08:00) waits for their end: 06:00 in Berlin goes at 08:00
    async with db.sessions() as session, session.begin():
        row = await session.get(store.Preference, ("p1", "m"))
        assert row is not None
        row.digest_hour = 6
    await db.apply(on_milestone_reached, milestone(3))
    await db.apply(on_milestone_reached, milestone(4))
    later = [
        due
        for t in await timers(db, preferences.DIGEST)
        if t["key"].startswith("m/")
        and (due := t["due_at"].replace(tzinfo=dt.UTC)) > db.clock.now()
    ]
    assert later == [dt.datetime(2027, 3, 2, 7, tzinfo=dt.UTC)]


async def test_without_a_digest_hour_of_their_own_a_person_gets_the_deployments(db):
    db.settings = db.settings.model_copy(update={"digest_hour": 10})
    await pair(db, notification_frequency="daily")
    await db.apply(on_milestone_reached, milestone(1))
    [timer] = await timers(db, preferences.DIGEST)
    assert timer["due_at"].replace(tzinfo=dt.UTC) == dt.datetime(2027, 3, 2, 1, tzinfo=dt.UTC)


def test_a_digest_hour_from_the_form_is_a_whole_hour_of_the_day():
    assert [preferences.parse_digest_hour(t) for t in ("0", "07", "23", " 9 ")] == [0, 7, 23, 9]
    for bad in ("24", "-1", "7.5", "", "seven", "\u0667", "007"):
        assert preferences.parse_digest_hour(bad) is None, bad


async def test_unsubscribed_kinds_are_recorded_not_sent_and_essential_mail_still_goes(db):
    await pair(db)
    [celebration] = await mails(db, "milestone.reached", "e") or [None]
    assert celebration is None
    await db.apply(on_milestone_reached, milestone(1))
    [celebration] = await mails(db, "milestone.reached", "e")
    link = celebration["List-Unsubscribe"].strip("<>")
    assert link.startswith("https://mail.mentoring.example/links/unsubscribe?t=")
    data = link_signer(db.settings).verify(
        token_of(link), preferences.UNSUBSCRIBE.purpose, db.clock.now()
    )
    assert data == {"program_id": "p1", "participant_id": "e", "kind": "milestone.reached"}
    [formed] = await mails(db, "pair.formed", "e")
    assert "List-Unsubscribe" not in formed  # essential: no link
    async with db.sessions() as session, session.begin():  # as the sender would have
        await session.execute(store.Delivery.__table__.update().values(status="sent"))
    async with db.unit_of_work() as uow:
        await pages.unsubscribe(uow, program_id="p1", participant_id="e", kind="milestone.reached")
    await db.apply(on_milestone_reached, milestone(2))
    refused = [
        r
        for r in await rows(db, store.Delivery, recipient_id="e", kind="milestone.reached")
        if r.status == "unsubscribed"
    ]
    assert len(refused) == 1 and "unsubscribed from milestone celebrations" in refused[0].last_error
    sent = await rows(db, store.Delivery, recipient_id="e", kind="milestone.reached", status="sent")
    assert len(sent) == 1  # only the first
    assert len(await mails(db, "feedback.request", "e")) == 1  # another kind: still goes
    assert len(await mails(db, "milestone.reached", "m")) == 1  # another person: still goes
    # every kind at once; invitations always go
    async with db.unit_of_work() as uow:
        await pages.unsubscribe(uow, program_id="p1", participant_id="e", kind=preferences.ALL)
    await db.apply(on_milestone_reached, milestone(3))
    assert await mails(db, "feedback.request", "e") == []  # 2's was withdrawn, 3's refused
    statuses = [r.status for r in await rows(db, store.Delivery, recipient_id="e")]
    assert statuses.count("unsubscribed") == 4  # milestone 2's two and 3's two
    await db.apply(on_session_scheduled, scheduled())
    assert len(await mails(db, "session.kickoff", "e")) == 1


async def test_the_unsubscribe_counters_count_what_people_chose_not_who_left(db):
    async def counts() -> dict[str, int]:
        async with db.sessions() as session:
            return await store.unsubscribe_counts(session)

    assert await counts() == {"unsubscribes": 0, "unsubscribed_people": 0}
    await pair(db)
    for who, kind in (("e", "milestone.reached"), ("e", preferences.WINS), ("m", "*")):
        async with db.unit_of_work() as uow:
            await pages.unsubscribe(uow, program_id="p1", participant_id=who, kind=kind)
    async with db.unit_of_work() as uow:  # the same choice again counts once
        await pages.unsubscribe(uow, program_id="p1", participant_id="e", kind=preferences.WINS)
    await db.apply(
        on_participant_left, ParticipantLeft.model_validate(envelope("p1", participant_id="x"))
    )
    assert len(await rows(db, store.Unsubscription)) == 4
    assert await counts() == {"unsubscribes": 3, "unsubscribed_people": 2}


async def test_unsubscribing_withdraws_mail_queued_and_items_held(db):
    await pair(db)
    db.clock.advance(dt.timedelta(hours=10))  # 21:00 in Berlin: the celebration waits
    await db.apply(on_milestone_reached, milestone(1))
    [row] = await rows(db, store.Delivery, recipient_id="m", kind="milestone.reached")
    assert row.status == "pending"
    async with db.unit_of_work() as uow:
        withdrawn = await pages.unsubscribe(
            uow, program_id="p1", participant_id="m", kind="milestone.reached"
        )
    assert withdrawn == 1
    [row] = await rows(db, store.Delivery, recipient_id="m", kind="milestone.reached")
    assert row.status == "unsubscribed" and "unsubscribed" in row.last_error
    sends = await timers(db, "notifications.send")
    assert row.delivery_id not in {t["key"] for t in sends}


def scheduled(**changes: Any) -> SessionScheduled:
    start = dt.datetime(2027, 3, 3, 15, tzinfo=dt.UTC)
    ical = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nMETHOD:REQUEST\r\n"
        "BEGIN:VEVENT\r\nUID:s1@mentorship\r\nSEQUENCE:0\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    body = envelope(
        "p1", session_id="s1", pair_id="pair-1", kind="kickoff", start=start.isoformat(),
        end=(start + dt.timedelta(hours=1)).isoformat(), anchor_timezone="Europe/Berlin",
        attendee_ids=["m", "e"], uid="s1@mentorship", sequence=0, ical=ical,
    )  # fmt: skip
    return SessionScheduled.model_validate(body | changes)


async def test_the_programs_video_link_is_used_when_the_event_carries_none(db):
    await pair(db)
    await db.apply(on_session_scheduled, scheduled())
    [invitation] = await mails(db, "session.kickoff", "e")
    assert "https://meet.example.org/p1" in body(invitation, "plain")
    reminder_payloads = [t["payload"] for t in await timers(db, "notifications.reminder")]
    assert reminder_payloads and all(
        p["video_url"] == "https://meet.example.org/p1" for p in reminder_payloads
    )


async def test_the_events_own_video_link_wins_over_the_programs(db):
    await pair(db)
    await db.apply(on_session_scheduled, scheduled(video_url="https://video.example/own"))
    [invitation] = await mails(db, "session.kickoff", "e")
    text = body(invitation, "plain")
    assert "https://video.example/own" in text and "meet.example.org" not in text


async def test_public_milestones_go_in_the_weekly_wins_to_everyone_private_ones_do_not(db):
    await pair(db)
    await db.apply(on_participant_registered, person("x"))  # in the program, not in the pair
    await db.apply(on_milestone_reached, milestone(1))  # private (the default)
    await db.apply(on_milestone_reached, milestone(2, visibility="public"))
    [(win)] = await rows(db, store.Win)
    assert (win.title, win.names) == ("Milestone 2", "Person m and Person e")
    [timer] = await timers(db, preferences.WINS)
    assert timer["key"] == "2027-W09"
    # 09:00 on Monday 8 March in the first zone (UTC+14): Sunday 19:00 UTC
    assert timer["due_at"].replace(tzinfo=dt.UTC) == dt.datetime(2027, 3, 7, 19, tzinfo=dt.UTC)
    [celebration] = [
        m for m in await mails(db, "milestone.reached", "e") if "Milestone 2" in m["Subject"]
    ]
    assert "weekly wins" in body(celebration, "plain")
    db.clock.advance(dt.timedelta(days=6, hours=9))  # the timer is due: Sunday 19:00 UTC
    await fire(db, preferences.WINS, digests.on_wins_due)
    wins = await mails(db, preferences.WINS)
    assert len(wins) == 3  # m, e and x
    # each at 09:00 on that Monday in their own zone: Tokyo first, then Berlin
    sends = {
        r.recipient_id: t["due_at"].replace(tzinfo=dt.UTC)
        for r in await rows(db, store.Delivery, kind=preferences.WINS)
        for t in await timers(db, "notifications.send")
        if t["key"] == r.delivery_id
    }
    assert sends == {
        "e": dt.datetime(2027, 3, 8, 0, tzinfo=dt.UTC),  # 09:00 in Tokyo
        "m": dt.datetime(2027, 3, 8, 8, tzinfo=dt.UTC),  # 09:00 in Berlin
        "x": dt.datetime(2027, 3, 8, 8, tzinfo=dt.UTC),
    }
    text = body(wins[0], "plain")
    assert "Milestone 2" in text and "Milestone 1" not in text
    assert wins[0]["List-Unsubscribe"]
    await fire(db, preferences.WINS, digests.on_wins_due)  # nothing pending: nothing more
    async with db.sessions() as session, session.begin():
        await session.execute(store.timers.update().values(status="pending"))
    await fire(db, preferences.WINS, digests.on_wins_due)
    assert len(await mails(db, preferences.WINS)) == 3


async def test_someone_who_left_gets_no_optional_mail_but_session_mail_still_goes(db):
    await pair(db)
    await db.apply(on_participant_registered, person("x"))
    await db.apply(
        on_participant_left, ParticipantLeft.model_validate(envelope("p1", participant_id="x"))
    )
    db.clock.advance(dt.timedelta(days=31))
    await fire(db, preferences.ASSESSMENT, digests.on_assessment_due)
    assert len(await mails(db, preferences.ASSESSMENT)) == 2  # m and e
    [refused] = await rows(db, store.Delivery, recipient_id="x")
    assert (
        refused.status == "unsubscribed"
        and "from the quarterly program survey" in refused.last_error
    )


async def test_the_quarterly_survey_links_to_the_form_and_arms_the_next_quarter(db):
    await pair(db)
    [timer] = await timers(db, preferences.ASSESSMENT)
    assert timer["key"] == "2027Q2"
    # 09:00 on 1 April in the first zone (UTC+14): 31 March, 19:00 UTC
    assert timer["due_at"].replace(tzinfo=dt.UTC) == dt.datetime(2027, 3, 31, 19, tzinfo=dt.UTC)
    db.clock.advance(dt.timedelta(days=30, hours=9))  # 31 March, 19:00 UTC
    await fire(db, preferences.ASSESSMENT, digests.on_assessment_due)
    surveys = await mails(db, preferences.ASSESSMENT)
    assert len(surveys) == 2
    sends = {
        r.recipient_id: t["due_at"].replace(tzinfo=dt.UTC)
        for r in await rows(db, store.Delivery, kind=preferences.ASSESSMENT)
        for t in await timers(db, "notifications.send")
        if t["key"] == r.delivery_id
    }
    assert sends == {  # 1 April, 09:00 in Tokyo (mentee) and in Berlin (summer time)
        "e": dt.datetime(2027, 4, 1, 0, tzinfo=dt.UTC),
        "m": dt.datetime(2027, 4, 1, 7, tzinfo=dt.UTC),
    }
    text = body(surveys[0], "plain")
    assert "I am treated fairly in the program." in text
    link = next(w for w in text.split() if "/links/assessment?t=" in w)
    data = link_signer(db.settings).verify(
        token_of(link), preferences.ASSESSMENT_FORM.purpose, db.clock.now()
    )
    assert data == {"program_id": "p1", "participant_id": "e", "quarter": "2027Q2"}
    keys = [t["key"] for t in await timers(db, preferences.ASSESSMENT)]
    assert keys == ["2027Q2", "2027Q3"]


async def test_a_held_session_brings_a_touchpoint_with_the_pairs_takeaways(db):
    await pair(db)
    held = SessionHeld.model_validate(
        envelope(
            "p1", session_id="s1", pair_id="pair-1", held_at=MONDAY.isoformat(),
            duration_minutes=45, takeaways=["Read 'Staff Engineer' chapter 2"],
        )
    )  # fmt: skip
    await db.apply(digests.on_session_held, held)
    [timer] = await timers(db, preferences.TOUCHPOINT)
    assert timer["due_at"].replace(tzinfo=dt.UTC) == MONDAY + dt.timedelta(days=3)
    db.clock.advance(dt.timedelta(days=3))
    await fire(db, preferences.TOUCHPOINT, digests.on_touchpoint_due)
    found = await mails(db, preferences.TOUCHPOINT)
    assert len(found) == 2
    text = body(found[0], "plain")
    assert digests.prompt_for("s1") in text and "Staff Engineer" in text
    for message in found:  # each person's own link to the pair's charter, goals, milestones
        link = next(w for w in body(message, "plain").split() if RELATIONSHIP.path in w)
        assert link.startswith(db.settings.public_url_for("pairing") + RELATIONSHIP.path)
        data = link_signer(db.settings).verify(token_of(link), RELATIONSHIP.purpose, db.clock.now())
        assert data["pair_id"] == "pair-1"
        assert message["To"].addresses[0].addr_spec == f"{data['participant_id']}@example.org"


async def test_a_touchpoint_sends_what_the_pairs_charter_chose_instead_of_a_prompt(db):
    await pair(db)
    charter = CharterAgreed.model_validate(
        envelope(
            "p1", pair_id="pair-1", cadence_days=14, session_minutes=45,
            touchpoint="Read 'The Manager's Path', chapter 3",
        )
    )  # fmt: skip
    await db.apply(digests.on_charter_agreed, charter)
    held = SessionHeld.model_validate(
        envelope(
            "p1", session_id="s2", pair_id="pair-1", held_at=MONDAY.isoformat(),
            duration_minutes=45,
        )
    )  # fmt: skip
    await db.apply(digests.on_session_held, held)
    db.clock.advance(dt.timedelta(days=3))
    await fire(db, preferences.TOUCHPOINT, digests.on_touchpoint_due)
    [first, _] = await mails(db, preferences.TOUCHPOINT)
    text = body(first, "plain")
    assert "The Manager's Path" in text and digests.prompt_for("s2") not in text


async def _hostile(db: HandlerDb) -> list[Any]:
    """Every timed kind, built from hostile names, titles and takeaways."""
    await pair(db, name=NAME, notification_frequency="daily")
    await db.apply(on_milestone_reached, milestone(1, title=TEXT[:200], visibility="public"))
    charter = envelope("p1", pair_id="pair-1", cadence_days=14, session_minutes=45)
    await db.apply(
        digests.on_charter_agreed, CharterAgreed.model_validate(charter | {"touchpoint": TEXT})
    )
    held = SessionHeld.model_validate(
        envelope(
            "p1", session_id="s1", pair_id="pair-1", held_at=MONDAY.isoformat(),
            duration_minutes=45, takeaways=[TEXT],
        )
    )  # fmt: skip
    await db.apply(digests.on_session_held, held)
    db.clock.advance(dt.timedelta(days=31))
    for kind, handler in (
        (preferences.DIGEST, digests.on_digest_due),
        (preferences.WINS, digests.on_wins_due),
        (preferences.ASSESSMENT, digests.on_assessment_due),
        (preferences.TOUCHPOINT, digests.on_touchpoint_due),
    ):
        await fire(db, kind, handler)
    return [
        r
        for r in await rows(db, store.Delivery, status="pending")
        if not preferences.is_essential(r.kind)
    ]


async def test_every_timed_kind_renders_hostile_input_inert(db):
    found = await _hostile(db)
    kinds = {r.kind for r in found}
    # the mentee chose daily: their touchpoint and survey are held for the next digest
    assert {
        preferences.DIGEST,
        preferences.WINS,
        preferences.ASSESSMENT,
        preferences.TOUCHPOINT,
    } <= kinds
    for row in found:
        message = email.message_from_bytes(row.message, policy=email.policy.default)
        head = row.message.split(b"\r\n\r\n", 1)[0].decode("ascii")
        names = [line.split(":", 1)[0] for line in head.split("\r\n") if not line.startswith(" ")]
        assert "Bcc" not in names and len(names) == len(set(names)), row.kind
        html, text = body(message, "html"), body(message, "plain")
        assert "<script" not in html and "<img" not in html and "<b>" not in html, row.kind
        assert "&lt;" in html, row.kind
        for char in UNSAFE_CHARS:
            assert char not in html and char not in text, row.kind
            assert char not in str(message["Subject"]), row.kind
        assert "\nBcc:" not in text and "\nBcc:" not in html, row.kind
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
