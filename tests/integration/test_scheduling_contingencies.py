"""scheduling on a real nats-server and database: contingencies, links and timers, as events."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import recurring_ical_events
from icalendar import Calendar

from services.scheduling import feeds, plans
from services.scheduling.app import definition
from shared.clock import FixedClock
from shared.links import CHECKIN_REPORT, SESSION_HELD, link_signer
from shared.service import Service
from tests.support.factories import envelope, publish, registration
from tests.support.waiting import bodies_on, eventually, settings_for, subject_counts

SCHEDULED = "mentorship.session.scheduled"
NOW = dt.datetime(2027, 3, 1, 8, tzinfo=dt.UTC)  # a Monday


@contextlib.asynccontextmanager
async def scheduling(
    settings: Any, clock: FixedClock
) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    """scheduling started for real on the fake clock; its HTTP app served in-process."""
    service = Service(definition(), settings, clock)
    async with service.started():
        transport = httpx.ASGITransport(app=service.http_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://scheduling") as client:
            yield service, client


async def count(js: Any, subject: str) -> int:
    return (await subject_counts(js)).get(subject, 0)


async def at_least(js: Any, subject: str, n: int) -> bool:
    return await count(js, subject) >= n


async def formed_pair(
    js: Any, program: str, pair: str = "p", mentor: str = "m", mentee: str = "e"
) -> None:
    await publish(
        js, "mentorship.participant.registered", registration(program, mentor, role="mentor")
    )
    await publish(js, "mentorship.participant.registered", registration(program, mentee))
    body = envelope(
        program, pair_id=pair, round_id="r", mentor_id=mentor, mentee_id=mentee, language="en"
    )
    await publish(js, "mentorship.pair.formed", body)


def settings(tmp_path: Any, nats_server: Any, database_url: str | None, **extra: Any) -> Any:
    return settings_for(
        tmp_path, nats_server.url, database_url, session_cadence_days=7,
        link_secret="s" * 40, **extra,
    )  # fmt: skip


async def test_a_timezone_change_and_an_absence_reach_the_stream_as_updates_and_cancels(
    tmp_path, nats_server, js, database_url
):
    async with scheduling(settings(tmp_path, nats_server, database_url), FixedClock(NOW)):
        await formed_pair(js, "prog")
        await eventually(lambda: at_least(js, SCHEDULED, 2), what="kickoff and series")
        change = envelope(
            "prog", participant_id="e", old_timezone="Europe/Berlin",
            new_timezone="America/New_York", effective_date="2027-03-20",
        )  # fmt: skip
        await publish(js, "mentorship.participant.timezone_changed", change)
        await eventually(lambda: at_least(js, "mentorship.session.rescheduled", 20), what="moves")
        absent = envelope(
            "prog", participant_id="m", start_date="2027-05-03", end_date="2027-05-14"
        )
        await publish(js, "mentorship.participant.unavailable", absent)
        await eventually(lambda: at_least(js, "mentorship.session.cancelled", 1), what="cancel")
        [series] = [b for b in await bodies_on(js, SCHEDULED) if b["kind"] == "regular"]
        moved = await bodies_on(js, "mentorship.session.rescheduled")
        [cancelled] = await bodies_on(js, "mentorship.session.cancelled")
    sequences = [m["sequence"] for m in moved] + [cancelled["sequence"]]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    assert {m["uid"] for m in moved} == {series["uid"]} == {cancelled["uid"]}
    assert [d[:10] for d in cancelled["recurrence_ids"]] == ["2027-05-04", "2027-05-11"]
    calendar = Calendar.from_ical(cancelled["ical"])
    assert str(calendar["METHOD"]) == "CANCEL"
    assert len(calendar.walk("VEVENT")) == 2


async def test_the_we_met_link_shows_a_form_and_its_post_publishes_session_held(
    tmp_path, nats_server, js, database_url
):
    conf = settings(tmp_path, nats_server, database_url)
    clock = FixedClock(NOW)
    async with scheduling(conf, clock) as (_, http):
        await formed_pair(js, "prog")
        await eventually(lambda: at_least(js, SCHEDULED, 2), what="kickoff and series")
        [kickoff] = [b for b in await bodies_on(js, SCHEDULED) if b["kind"] == "kickoff"]
        data = {"program_id": "prog", "session_id": kickoff["session_id"], "participant_id": "e"}
        token = link_signer(conf).sign(SESSION_HELD.purpose, data, NOW + dt.timedelta(days=30))
        page = await http.get(SESSION_HELD.path, params={"t": token})
        assert page.status_code == 200 and 'method="post"' in page.text
        assert await count(js, "mentorship.session.held") == 0  # a GET changes nothing
        forged = await http.get(SESSION_HELD.path, params={"t": token[:-2] + "xx"})
        assert forged.status_code == 400 and "not valid" in forged.text
        form = f"t={token}&present=m&present=e&minutes=50&takeaways=listen%0Aask"
        done = await http.post(
            SESSION_HELD.path, content=form,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        assert done.status_code == 200 and "held" in done.text
        await eventually(lambda: at_least(js, "mentorship.session.held", 1), what="session.held")
        [held] = await bodies_on(js, "mentorship.session.held")
    assert (held["present_ids"], held["duration_minutes"]) == (["m", "e"], 50)
    assert held["takeaways"] == ["listen", "ask"] and held["reported_by"] == "e"


async def test_a_we_met_link_for_one_occurrence_of_a_series_records_that_occurrence(
    tmp_path, nats_server, js, database_url
):
    conf = settings(tmp_path, nats_server, database_url)
    async with scheduling(conf, FixedClock(NOW)) as (_, http):
        await formed_pair(js, "prog")
        await eventually(lambda: at_least(js, SCHEDULED, 2), what="kickoff and series")
        [series] = [b for b in await bodies_on(js, SCHEDULED) if b["kind"] == "regular"]
        expanded = recurring_ical_events.of(Calendar.from_ical(series["ical"]))
        second = expanded.between(NOW, NOW + dt.timedelta(days=90))[1]  # as a calendar app sees it
        rule_time = (second.get("RECURRENCE-ID") or second["DTSTART"]).dt
        data = {
            "program_id": "prog", "session_id": series["session_id"], "participant_id": "m",
            "recurrence_id": rule_time.astimezone(dt.UTC).isoformat(),
        }  # fmt: skip
        token = link_signer(conf).sign(SESSION_HELD.purpose, data, NOW + dt.timedelta(days=60))
        assert (await http.get(SESSION_HELD.path, params={"t": token})).status_code == 200
        done = await http.post(
            SESSION_HELD.path, content=f"t={token}&present=m&present=e&minutes=45",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        assert done.status_code == 200 and "held" in done.text
        await eventually(lambda: at_least(js, "mentorship.session.held", 1), what="session.held")
        [held] = await bodies_on(js, "mentorship.session.held")
    # the occurrence's own id (named by its rule time), not the series'
    assert held["session_id"] == plans.occurrence_id(series["session_id"], rule_time)
    assert held["session_id"] != series["session_id"]


async def test_check_ins_escalate_on_the_clock_and_the_form_stops_them(
    tmp_path, nats_server, js, database_url
):
    conf = settings(tmp_path, nats_server, database_url)
    clock = FixedClock(NOW)
    async with scheduling(conf, clock) as (_, http):
        await formed_pair(js, "prog", pair="p1", mentor="m1", mentee="e1")
        await formed_pair(js, "prog", pair="p2", mentor="m2", mentee="e2")
        await eventually(lambda: at_least(js, SCHEDULED, 4), what="both pairs planned")
        clock.advance(dt.timedelta(days=14, minutes=1))
        await eventually(lambda: at_least(js, "mentorship.checkin.due", 2), what="check-ins due")
        due = {b["pair_id"]: b for b in await bodies_on(js, "mentorship.checkin.due")}
        data = {"program_id": "prog", "checkin_id": due["p1"]["checkin_id"], "participant_id": "e1"}
        token = link_signer(conf).sign(CHECKIN_REPORT.purpose, data, NOW + dt.timedelta(days=60))
        form = (
            f"t={token}&progress=4&accomplishments=shipped&roadblocks=flaky+tests%0Aslow+CI"
            "&solutions=quarantine+them&next_steps=fix&mentor_commitments=review"
        )
        sent = await http.post(
            CHECKIN_REPORT.path, content=form,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        assert sent.status_code == 200
        for hours in (49, 97, 169):
            clock.advance(dt.timedelta(days=14, hours=hours) - (clock.now() - NOW))
            await eventually(
                lambda h=hours: at_least(
                    js, "mentorship.checkin.overdue", {49: 1, 97: 2, 169: 3}[h]
                ),
                what=f"level after {hours} h",
            )
        await asyncio.sleep(1.2)  # two more polls of the timer loop: nothing else is due
        overdue = await bodies_on(js, "mentorship.checkin.overdue")
        [submitted] = await bodies_on(js, "mentorship.checkin.submitted")
    assert [(o["pair_id"], o["escalation_level"]) for o in overdue] == [
        ("p2", 1),
        ("p2", 2),
        ("p2", 3),
    ]
    assert submitted["roadblocks"] == [
        {"roadblock": "flaky tests", "proposed_solution": "quarantine them"},
        {"roadblock": "slow CI", "proposed_solution": ""},
    ]
    assert submitted["mentor_commitments"] == ["review"]


# two replicas share a database on PostgreSQL (on SQLite, one service writes one file)
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_replicas_send_each_escalation_level_once(
    tmp_path, nats_server, js, database_url
):
    conf = settings(tmp_path, nats_server, database_url)
    clock = FixedClock(NOW)
    pairs = 12
    async with scheduling(conf, clock), scheduling(conf, clock):
        for i in range(pairs):
            await formed_pair(js, "prog", pair=f"p{i}", mentor=f"m{i}", mentee=f"e{i}")
        await eventually(lambda: at_least(js, SCHEDULED, 2 * pairs), what="every pair planned")
        clock.advance(dt.timedelta(days=14, minutes=1))
        await eventually(lambda: at_least(js, "mentorship.checkin.due", pairs), what="due")
        for hours, level in ((49, 1), (97, 2), (169, 3)):
            clock.advance(dt.timedelta(days=14, hours=hours) - (clock.now() - NOW))
            await eventually(
                lambda n=level: at_least(js, "mentorship.checkin.overdue", n * pairs),
                what=f"level {level} for every pair",
            )
        await asyncio.sleep(1.2)
        overdue = await bodies_on(js, "mentorship.checkin.overdue")
    keys = [(o["checkin_id"], o["escalation_level"]) for o in overdue]
    assert len(keys) == len(set(keys)) == 3 * pairs


async def test_a_personal_ics_feed_shows_moves_and_cancels_until_it_is_revoked(
    tmp_path, nats_server, js, database_url
):
    conf = settings(tmp_path, nats_server, database_url)
    clock = FixedClock(NOW)
    async with scheduling(conf, clock) as (service, http):
        await formed_pair(js, "prog")
        await eventually(lambda: at_least(js, SCHEDULED, 2), what="kickoff and series")
        absent = envelope(
            "prog", participant_id="e", start_date="2027-03-15", end_date="2027-03-21"
        )
        await publish(js, "mentorship.participant.unavailable", absent)
        await eventually(lambda: at_least(js, "mentorship.session.cancelled", 1), what="cancel")
        running = service.running
        assert running is not None
        async with running.sessions() as session, session.begin():
            token = await feeds.create(session, program_id="prog", participant_id="e", now=NOW)
        assert (await http.get("/feeds/not-a-token.ics")).status_code == 404
        response = await http.get(feeds.PATH.format(token=token))
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/calendar")
        calendar = Calendar.from_ical(response.text)
        assert "METHOD" not in calendar
        starts = recurring_ical_events.of(calendar).between(NOW, NOW + dt.timedelta(days=200))
        days = sorted(e["DTSTART"].dt.astimezone(dt.UTC).date() for e in starts)
        assert len(days) == 1 + 26 - 1  # the kickoff, the series without the absent week
        assert dt.date(2027, 3, 16) not in days
        async with running.sessions() as session, session.begin():
            assert await feeds.revoke(session, program_id="prog", participant_id="e", now=NOW) == 1
        gone = await http.get(feeds.PATH.format(token=token))
    assert gone.status_code == 404 and "revoked" in gone.text
