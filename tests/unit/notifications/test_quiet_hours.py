"""Quiet hours in the recipient's zone (20:00-08:00 and weekends by default), across DST, and
what waits: non-urgent notices wait, invitations and session changes go at once."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from services.notifications import store
from services.notifications.quiet import QuietHours, is_urgent
from tests.unit.notifications.test_notices import db, pair  # noqa: F401 (fixture)

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
DEFAULT = QuietHours()


def at(zone: ZoneInfo, *args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=zone).astimezone(dt.UTC)


@pytest.mark.parametrize(
    ("now", "zone", "expected"),
    [
        # a weekday afternoon: at once
        (at(BERLIN, 2027, 3, 3, 15, 0), "Europe/Berlin", at(BERLIN, 2027, 3, 3, 15, 0)),
        # 07:59 waits a minute; 20:00 waits for the next morning
        (at(BERLIN, 2027, 3, 3, 7, 59), "Europe/Berlin", at(BERLIN, 2027, 3, 3, 8, 0)),
        (at(BERLIN, 2027, 3, 3, 20, 0), "Europe/Berlin", at(BERLIN, 2027, 3, 4, 8, 0)),
        # Friday evening waits for Monday 08:00 ...
        (at(BERLIN, 2027, 3, 19, 21, 0), "Europe/Berlin", at(BERLIN, 2027, 3, 22, 8, 0)),
        # ... which, over the spring change (28 March), is 06:00 UTC, not 07:00
        (
            at(BERLIN, 2027, 3, 26, 21, 0),
            "Europe/Berlin",
            dt.datetime(2027, 3, 29, 6, tzinfo=dt.UTC),
        ),
        # New York falls back on Sunday 7 November 2027: Monday 08:00 EST is 13:00 UTC
        (
            at(NEW_YORK, 2027, 11, 5, 22, 30),
            "America/New_York",
            dt.datetime(2027, 11, 8, 13, tzinfo=dt.UTC),
        ),
        # the same UTC instant is allowed in one zone and quiet in another
        (
            dt.datetime(2027, 3, 3, 20, tzinfo=dt.UTC),
            "America/New_York",
            dt.datetime(2027, 3, 3, 20, tzinfo=dt.UTC),
        ),
        (
            dt.datetime(2027, 3, 3, 20, tzinfo=dt.UTC),
            "Asia/Tokyo",
            dt.datetime(2027, 3, 3, 23, tzinfo=dt.UTC),
        ),
    ],
)
def test_next_allowed_time_in_the_recipients_zone(now, zone, expected):
    assert DEFAULT.next_allowed(now, zone) == expected


def test_quiet_hours_come_from_the_settings_format():
    hours = QuietHours.parse("22:00-07:30", weekends=False)
    saturday_night = at(BERLIN, 2027, 3, 6, 23, 0)
    assert hours.next_allowed(saturday_night, "Europe/Berlin") == at(BERLIN, 2027, 3, 7, 7, 30)
    none = QuietHours.parse("", weekends=False)
    assert none.next_allowed(saturday_night, "Europe/Berlin") == saturday_night


def test_invitations_changes_and_reminders_are_urgent_the_rest_waits():
    for kind in ("session.kickoff", "session.rescheduled", "session.cancelled", "session.reminder"):
        assert is_urgent(kind)
    for kind in ("pair.formed", "checkin.due", "session.missed", "milestone.reached"):
        assert not is_urgent(kind)


async def test_a_notice_made_in_the_recipients_night_waits_for_their_morning(db):  # noqa: F811
    # Friday 5 March 2027, 12:00 UTC: 21:00 in Tokyo (quiet), 13:00 in Berlin (allowed)
    db.clock.advance(dt.datetime(2027, 3, 5, 12, tzinfo=dt.UTC) - db.clock.now())
    await pair(db)
    async with db.sessions() as session:
        rows = await session.execute(
            select(store.Delivery.recipient_id, store.timers.c.due_at)
            .join(store.timers, store.timers.c.key == store.Delivery.delivery_id)
            .where(store.Delivery.kind == "pair.formed")
        )
        due = {r.recipient_id: r.due_at.replace(tzinfo=dt.UTC) for r in rows}
    assert due == {
        "m": db.clock.now(),  # Berlin afternoon: at once
        "e": dt.datetime(2027, 3, 7, 23, tzinfo=dt.UTC),  # Monday 08:00 JST
    }
