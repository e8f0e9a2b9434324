"""Preferences end to end on both databases: notifications served on a real port, a real
nats-server and a real SMTP sink. A mail's List-Unsubscribe URL is POSTed as a mail client does
(RFC 8058) and that kind stops for that person; a person on the daily digest gets one digest
when its durable timer is due (the service's clock moved), and never a second."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email
import email.policy
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cli.launcher import free_port
from cli.mailcatcher import MailCatcher
from services.notifications import preferences, store
from services.notifications.app import definition
from shared.clock import FixedClock
from shared.db import make_engine, make_sessions
from shared.links import link_signer
from shared.service import Service
from shared.settings import Settings
from tests.support.factories import envelope, publish, registration
from tests.support.handlers import HandlerDb
from tests.support.serving import served
from tests.support.waiting import bodies_on, eventually, settings_for, subject_counts
from tests.unit.notifications import test_preferences as unit

REGISTERED = "mentorship.participant.registered"
FORMED = "mentorship.pair.formed"
MILESTONE = "mentorship.milestone.reached"
SUBMITTED = "mentorship.assessment.submitted"
NOW = dt.datetime(2027, 3, 1, 10, tzinfo=dt.UTC)  # a Monday, 11:00 in Berlin


@contextlib.contextmanager
def catching(folder: Path, port: int) -> Iterator[MailCatcher]:
    catcher = MailCatcher(folder, port=port)
    catcher.start()
    try:
        yield catcher
    finally:
        catcher.stop()


def parsed(catcher: MailCatcher) -> list[Any]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in catcher.messages()
    ]


def to(mails: list[Any], who: str, subject_start: str) -> list[Any]:
    return [
        m
        for m in mails
        if m["To"].addresses[0].addr_spec == f"{who}@example.org"
        and str(m["Subject"]).startswith(subject_start)
    ]


async def test_one_click_unsubscribe_stops_that_kind_and_a_daily_digest_goes_once(
    tmp_path, nats_server, js, database_url
):
    smtp, http = free_port(), free_port()
    settings = settings_for(
        tmp_path,
        nats_server.url,
        database_url,
        smtp_port=smtp,
        smtp_host="127.0.0.1",
        notifications_http_port=http,
        notifications_public_url=f"http://127.0.0.1:{http}",
        link_secret="z" * 40,
        quiet_hours="",
        quiet_weekends=False,
        daily_mail_cap=0,
    )
    clock = FixedClock(NOW)
    service = Service(definition(), settings, clock)
    with catching(tmp_path / "mail", smtp) as catcher:
        async with served(service, http) as base:
            assert service.running is not None
            for body in (
                registration("prog", "m", role="mentor"),
                registration("prog", "e"),
                registration("prog", "m2", role="mentor"),
                registration("prog", "d", notification_frequency="daily"),
            ):
                await publish(js, REGISTERED, body)
            for pair, mentor, mentee in (("pair-1", "m", "e"), ("pair-2", "m2", "d")):
                await publish(
                    js,
                    FORMED,
                    envelope(
                        "prog", pair_id=pair, round_id="r1", mentor_id=mentor,
                        mentee_id=mentee, language="en",
                    ),
                )  # fmt: skip
            await publish(
                js, MILESTONE, envelope("prog", pair_id="pair-1", milestone_id="a", title="First")
            )
            await publish(
                js, MILESTONE, envelope("prog", pair_id="pair-2", milestone_id="b", title="Ship")
            )

            async def first_mails() -> bool:  # 4 pair.formed, pair-1: 4, m2: 2 (d waits)
                return len(catcher.messages()) >= 10

            await eventually(first_mails, what="the pair and milestone mails")
            mails = parsed(catcher)
            [formed] = to(mails, "e", "You are matched")
            assert "List-Unsubscribe" not in formed  # essential
            [celebration] = to(mails, "e", "Milestone reached")
            assert celebration["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            url = celebration["List-Unsubscribe"].strip("<>")
            assert url.startswith(f"{base}/links/unsubscribe?t=")
            assert to(mails, "d", "Milestone reached") == []  # held for d's digest

            async with httpx.AsyncClient() as client:
                page = await client.get(url)  # a scanner's prefetch changes nothing
                assert page.status_code == 200 and "Unsubscribe from milestone" in page.text
                async with service.running.sessions() as session:
                    assert list(await session.scalars(select(store.Unsubscription))) == []
                ready = (await client.get(f"{base}/readyz")).json()
                assert ready["counters"] == {"unsubscribes": 0, "unsubscribed_people": 0}
                answer = await client.post(
                    url,
                    content="List-Unsubscribe=One-Click",
                    headers={"content-type": "application/x-www-form-urlencoded"},
                )
                assert answer.status_code == 200, answer.text
                assert "unsubscribed from milestone celebrations" in answer.text
                ready = (await client.get(f"{base}/readyz")).json()
                assert ready["counters"] == {"unsubscribes": 1, "unsubscribed_people": 1}
                forged = await client.post(
                    url.replace("?t=", "?t=x"), content="List-Unsubscribe=One-Click"
                )
                assert forged.status_code == 400 and "not valid" in forged.text

            await publish(
                js, MILESTONE, envelope("prog", pair_id="pair-1", milestone_id="c", title="Second")
            )

            async def second_recorded() -> bool:
                async with service.running.sessions() as session:
                    rows = list(
                        await session.scalars(
                            select(store.Delivery).where(store.Delivery.recipient_id == "e")
                        )
                    )
                return sum(r.status == "unsubscribed" for r in rows) == 1 and len(rows) == 5

            await eventually(second_recorded, what="e's second celebration recorded, not sent")
            await eventually(
                lambda: _at_least(catcher, 13), what="m's two mails and e's feedback request"
            )
            clock.advance(dt.timedelta(days=1))  # past d's digest hour (09:00 Berlin)

            async def digested() -> bool:
                return len(to(parsed(catcher), "d", "Your mentorship digest")) >= 1

            await eventually(digested, what="d's digest")
            await asyncio.sleep(1.5)  # the timer loop polls every 0.5 s: a second would be here
            mails = parsed(catcher)
    assert len(to(mails, "e", "Milestone reached")) == 1  # the first only
    assert len(to(mails, "e", "How is it going?")) == 2  # another kind still goes
    assert len(to(mails, "m", "Milestone reached")) == 2  # another person still gets both
    [digest] = to(mails, "d", "Your mentorship digest")
    text = digest.get_body(("plain",)).get_content()
    assert "Milestone reached: Ship" in text and "Feedback after Ship" in text
    assert to(mails, "d", "Milestone reached") == []
    assert len({m["Message-ID"] for m in mails}) == len(mails)


async def _at_least(catcher: MailCatcher, n: int) -> bool:
    return len(catcher.messages()) >= n


def test_the_kinds_named_on_the_page_are_the_kinds_that_can_be_refused():
    assert set(preferences.KIND_NAMES) == preferences.NON_ESSENTIAL | {preferences.ALL}


@pytest.fixture
async def db(tmp_path: Path, database_url: str | None) -> AsyncIterator[HandlerDb]:
    """The unit tests' tables and settings, on SQLite and on PostgreSQL (the cap's adding
    upsert, the digest timers' upserts and the withdrawals differ between the two)."""
    url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'preferences.sqlite3'}"
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(store.Base.metadata.create_all)
    try:
        yield HandlerDb(
            sessions=make_sessions(engine),
            tables=store.delivery_tables,
            clock=FixedClock(unit.MONDAY),
            settings=Settings(
                data_dir=tmp_path / "data",
                mail_from="team@mentoring.example",
                mail_from_name="Mentoring Team",
                link_secret="y" * 40,
                daily_mail_cap=3,
                notifications_public_url="https://mail.mentoring.example/",
                program_video_urls={"p1": "https://meet.example.org/p1"},
            ),
            source="notifications",
        )
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    "case",
    [
        unit.test_the_daily_cap_folds_the_rest_into_one_digest_sent_once,
        unit.test_the_cap_holds_within_one_batch_of_events_too,
        unit.test_a_person_who_chose_the_daily_digest_gets_low_urgency_mail_only_in_it,
        unit.test_each_person_gets_their_digest_at_their_own_local_hour,
        unit.test_unsubscribed_kinds_are_recorded_not_sent_and_essential_mail_still_goes,
        unit.test_unsubscribing_withdraws_mail_queued_and_items_held,
        unit.test_the_unsubscribe_counters_count_what_people_chose_not_who_left,
        unit.test_public_milestones_go_in_the_weekly_wins_to_everyone_private_ones_do_not,
        unit.test_the_quarterly_survey_links_to_the_form_and_arms_the_next_quarter,
    ],
    ids=lambda case: case.__name__.removeprefix("test_")[:40],
)
async def test_preferences_on_both_databases(db, case):
    await case(db)


async def test_the_survey_form_sends_the_answers_to_insights_once(
    tmp_path, nats_server, js, database_url
):
    http = free_port()
    settings = settings_for(
        tmp_path,
        nats_server.url,
        database_url,
        smtp_port=free_port(),
        smtp_host="127.0.0.1",
        notifications_http_port=http,
        link_secret="z" * 40,
    )
    clock = FixedClock(NOW)
    service = Service(definition(), settings, clock)
    data = {"program_id": "prog", "participant_id": "e", "quarter": "2027Q1"}
    token = link_signer(settings).sign(
        preferences.ASSESSMENT_FORM.purpose, data, NOW + dt.timedelta(days=30)
    )
    form = {"content-type": "application/x-www-form-urlencoded"}
    async with served(service, http) as base, httpx.AsyncClient() as client:
        url = f"{base}{preferences.ASSESSMENT_FORM.path}?t={token}"
        page = await client.get(url)
        assert page.status_code == 200 and "I am treated fairly" in page.text
        bad = await client.post(url, content="relevance=9", headers=form)
        assert bad.status_code == 422 and "from 1 to 5" in bad.text
        answers = "relevance=4&impact=3&satisfaction=5&fairness=2"
        first = await client.post(url, content=f"t={token}&{answers}", headers=form)
        assert first.status_code == 200 and "Thank you" in first.text
        again = await client.post(url, content=answers, headers=form)
        assert again.status_code == 200 and "Already received" in again.text
        unsubscribe = link_signer(settings).sign(
            preferences.UNSUBSCRIBE.purpose, data, NOW + dt.timedelta(days=30)
        )
        wrong = await client.post(
            f"{base}{preferences.ASSESSMENT_FORM.path}?t={unsubscribe}",
            content=answers,
            headers=form,
        )
        assert wrong.status_code == 400  # a token for something else

        async def published() -> bool:
            return (await subject_counts(js)).get(SUBMITTED, 0) >= 1

        await eventually(published, what="assessment.submitted")
        await asyncio.sleep(0.5)
        [event] = await bodies_on(js, SUBMITTED)
    assert event["participant_id"] == "e" and event["instrument"] == "program-assessment-2027Q1"
    assert event["scores"] == {"relevance": 4, "impact": 3, "satisfaction": 5, "fairness": 2}


async def test_the_preferences_page_sets_a_persons_own_digest_hour(
    tmp_path, nats_server, js, database_url
):
    http = free_port()
    settings = settings_for(
        tmp_path,
        nats_server.url,
        database_url,
        smtp_port=free_port(),
        smtp_host="127.0.0.1",
        notifications_http_port=http,
        link_secret="z" * 40,
    )
    service = Service(definition(), settings, FixedClock(NOW))
    data = {"program_id": "prog", "participant_id": "e", "kind": "milestone.reached"}
    token = link_signer(settings).sign(
        preferences.UNSUBSCRIBE.purpose, data, NOW + dt.timedelta(days=30)
    )
    form = {"content-type": "application/x-www-form-urlencoded"}

    async def choice() -> tuple[str, int | None] | None:
        assert service.running is not None
        async with service.running.sessions() as session:
            row = await session.get(store.Preference, ("prog", "e"))
            return None if row is None else (row.frequency, row.digest_hour)

    async with served(service, http) as base, httpx.AsyncClient() as client:
        url = f"{base}{preferences.UNSUBSCRIBE.path}?t={token}"
        page = await client.get(url)
        assert page.status_code == 200 and '<option value="9" selected>09:00' in page.text
        assert await choice() is None  # a GET changes nothing
        bad = await client.post(url, content="frequency=daily&digest_hour=24", headers=form)
        assert bad.status_code == 422 and "0 to 23" in bad.text
        chosen = await client.post(url, content="frequency=daily&digest_hour=7", headers=form)
        assert chosen.status_code == 200 and "at 07:00 your time" in chosen.text
        assert await choice() == ("daily", 7)
        again = await client.get(url)
        assert '<option value="7" selected>07:00' in again.text
        assert '<option value="9" selected>' not in again.text
        back = await client.post(url, content="frequency=immediate", headers=form)
        assert back.status_code == 200
        assert await choice() == ("immediate", 7)  # the hour stays for what a cap holds back
