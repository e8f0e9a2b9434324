"""When a pair meets: slots inside both people's working hours, for the actual dates."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from shared.worktime import Availability, Interval, first_slot, shared_working_time

KICKOFF_MINUTES = 60
HORIZON_DAYS = 28
SLOT_STEP_MINUTES = 30


def plan_kickoff(
    organizer: Availability,
    attendee: Availability,
    *,
    now: dt.datetime,
    lead_days: int,
    minutes: int = KICKOFF_MINUTES,
    horizon_days: int = HORIZON_DAYS,
) -> Interval | None:
    """The first slot inside both people's working hours, `lead_days` local days from today.

    The lead time counts whole days in the organizer's zone (lead_days=1: tomorrow or later,
    whatever the hour now), so that people get the invitation ahead of time; never in the past.
    """
    zone = ZoneInfo(organizer.timezone)
    local_today = now.astimezone(zone).date()
    earliest_day = local_today + dt.timedelta(days=lead_days)
    not_before = dt.datetime.combine(earliest_day, dt.time(), tzinfo=zone).astimezone(dt.UTC)
    not_before = max(not_before, now)  # with no lead time, never earlier today
    shared = shared_working_time(
        organizer, attendee, from_day=not_before.date(), days=horizon_days + 1
    )
    return first_slot(
        shared, not_before=not_before, minutes=minutes, step_minutes=SLOT_STEP_MINUTES
    )


def local_wall_time(at: dt.datetime, timezone: str) -> dt.datetime:
    """The instant as a wall-clock time in the given zone."""
    return at.astimezone(ZoneInfo(timezone))
