"""scheduling on a real nats-server and database: a charter re-plans the series; shadowing."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from typing import Any

import recurring_ical_events
from icalendar import Calendar

from shared.bus import STREAM, durable_name
from shared.clock import FixedClock
from tests.integration.test_scheduling_contingencies import (
    NOW,
    SCHEDULED,
    at_least,
    count,
    formed_pair,
    scheduling,
)
from tests.support.factories import envelope, publish
from tests.support.waiting import bodies_on, eventually, settings_for

CANCELLED = "mentorship.session.cancelled"


async def test_a_charter_re_plans_the_series_once_and_both_people_are_told(
    tmp_path, nats_server, js, database_url
):
    conf = settings_for(tmp_path, nats_server.url, database_url, session_cadence_days=14)
    async with scheduling(conf, FixedClock(NOW)):
        await formed_pair(js, "prog")
        await eventually(lambda: at_least(js, SCHEDULED, 2), what="kickoff and series")
        charter = envelope("prog", pair_id="p", cadence_days=7, session_minutes=60)
        await publish(js, "mentorship.charter.agreed", charter)
        await eventually(lambda: at_least(js, SCHEDULED, 3), what="the charter's series")
        await eventually(lambda: at_least(js, CANCELLED, 1), what="the old series cancelled")
        again = envelope("prog", pair_id="p", cadence_days=7, session_minutes=60, version=2)
        await publish(js, "mentorship.charter.agreed", again)
        marker = envelope(
            "prog", opportunity_id="op-1", participant_id="e", kind="shadowing", title="Shadow"
        )
        await publish(js, "mentorship.opportunity.offered", marker)  # handled after the charter
        await eventually(lambda: at_least(js, SCHEDULED, 4), what="the shadow session")
        await asyncio.sleep(0.5)
        assert await count(js, SCHEDULED) == 4 and await count(js, CANCELLED) == 1
        scheduled = await bodies_on(js, SCHEDULED)
        [cancelled] = await bodies_on(js, CANCELLED)
    kickoff, old, new, shadow = scheduled
    assert (kickoff["kind"], old["kind"], new["kind"], shadow["kind"]) == (
        "kickoff", "regular", "regular", "shadowing",
    )  # fmt: skip
    assert cancelled["uid"] == old["uid"] and cancelled["sequence"] == 1
    assert str(Calendar.from_ical(cancelled["ical"])["METHOD"]) == "CANCEL"
    assert len(cancelled["recurrence_ids"]) == len(
        Calendar.from_ical(cancelled["ical"]).walk("VEVENT")
    )
    assert new["uid"] != old["uid"] and new["rrule"].startswith("FREQ=WEEKLY;INTERVAL=1;")
    start = dt.datetime.fromisoformat(new["start"])
    assert dt.datetime.fromisoformat(new["end"]) - start == dt.timedelta(minutes=60)
    events = recurring_ical_events.of(Calendar.from_ical(new["ical"])).between(
        start, start + dt.timedelta(days=27)
    )
    local = [e["DTSTART"].dt for e in events]  # weekly on the mentor's wall clock, across DST
    assert len(local) == 4 and len({t.time() for t in local}) == 1
    assert [(b.date() - a.date()).days for a, b in itertools.pairwise(local)] == [7] * 3
    assert {a["participant_id"] for a in new["attendees"]} == {"m", "e"}
    shadow_start = dt.datetime.fromisoformat(shadow["start"])
    assert dt.datetime.fromisoformat(shadow["end"]) - shadow_start == dt.timedelta(minutes=90)


async def charter_handled(js: Any) -> bool:
    """scheduling acked the charter.agreed it got (a resume published at once may overtake
    it: the two wait for nothing of each other)."""
    info = await js.consumer_info(STREAM, durable_name("scheduling", "mentorship.charter.agreed"))
    return info.delivered.consumer_seq >= 1 and info.num_ack_pending == 0 and not info.num_pending


async def test_a_charter_agreed_during_a_pause_applies_on_resume_with_its_rhythms(
    tmp_path, nats_server, js, database_url
):
    conf = settings_for(tmp_path, nats_server.url, database_url, session_cadence_days=14)
    rescheduled = "mentorship.session.rescheduled"
    async with scheduling(conf, FixedClock(NOW)):
        await formed_pair(js, "prog")
        await eventually(lambda: at_least(js, SCHEDULED, 2), what="kickoff and series")
        await publish(js, "mentorship.pair.paused", envelope("prog", pair_id="p"))
        await eventually(lambda: at_least(js, CANCELLED, 2), what="the pause's cancels")
        charter = envelope(
            "prog", pair_id="p", cadence_days=7, session_minutes=60,
            rhythms={"coffee_chat": "monthly"},
        )  # fmt: skip
        await publish(js, "mentorship.charter.agreed", charter)
        await eventually(lambda: charter_handled(js), what="the charter kept")
        await publish(js, "mentorship.pair.resumed", envelope("prog", pair_id="p"))
        await eventually(lambda: at_least(js, SCHEDULED, 4), what="the charter's series")
        await eventually(lambda: at_least(js, rescheduled, 1), what="the kickoff back")
        await asyncio.sleep(0.5)
        assert await count(js, SCHEDULED) == 4 and await count(js, CANCELLED) == 2
        kickoff, old, *new = await bodies_on(js, SCHEDULED)
        back = await bodies_on(js, rescheduled)
    assert {s["kind"] for s in new} == {"regular", "coffee_chat"}
    [regular] = [s for s in new if s["kind"] == "regular"]
    assert regular["uid"] != old["uid"] and regular["rrule"].startswith("FREQ=WEEKLY;INTERVAL=1;")
    assert min(dt.datetime.fromisoformat(s["start"]) for s in new) > NOW
    assert [b["uid"] for b in back] == [kickoff["uid"]]  # the replaced series stays cancelled
