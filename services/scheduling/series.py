"""A pair's recurring sessions: an RRULE anchored in the organizer's zone, and its occurrences.

The rule keeps the organizer's wall-clock time across daylight-saving switches, as calendar apps
expand it. In weeks where the other person's region switches on another date, the rule's time
may fall outside their working hours: that occurrence is moved within its week (a RECURRENCE-ID
override), or reported impossible with the reason.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

from services.scheduling.planning import NoSlot, Planner, Rules, Slot, find_slot, fits
from shared.worktime import Interval

SERIES_WEEKS = 26  # how far ahead a series is planned
DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
MOVE_WINDOW = dt.timedelta(days=3)  # an occurrence moves at most this far from its rule time


class Cadence(StrEnum):
    WEEKLY = "weekly"
    BIWEEKLY = "biweekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"  # every three months, on the same weekday of the month


def cadence_for(days: int) -> Cadence:
    """The cadence closest to a charter's `cadence_days`."""
    if days <= 10:
        return Cadence.WEEKLY
    if days <= 21:
        return Cadence.BIWEEKLY
    return Cadence.MONTHLY


def cadence_of(rrule: str) -> Cadence:
    """The cadence a series' RRULE (as `rrule_for` writes it) stands for."""
    parts = dict(p.split("=", 1) for p in rrule.split(";") if "=" in p)
    interval = int(parts.get("INTERVAL", "1"))
    if parts.get("FREQ") == "MONTHLY":
        return Cadence.QUARTERLY if interval == 3 else Cadence.MONTHLY
    return Cadence.WEEKLY if interval == 1 else Cadence.BIWEEKLY


def cadence_days(cadence: Cadence) -> int:
    """Roughly how many days apart sessions of the cadence are."""
    return {Cadence.WEEKLY: 7, Cadence.BIWEEKLY: 14, Cadence.MONTHLY: 28, Cadence.QUARTERLY: 91}[
        cadence
    ]


def rrule_for(cadence: Cadence, first: dt.datetime, *, weeks: int = SERIES_WEEKS) -> str:
    """The RRULE (without DTSTART) of a series whose first session is the local `first`."""
    day = DAYS[first.weekday()]
    if cadence in (Cadence.MONTHLY, Cadence.QUARTERLY):
        nth = (first.day - 1) // 7 + 1
        position = -1 if nth == 5 else nth  # the fifth is always the last
        if cadence is Cadence.QUARTERLY:
            count = max(1, weeks * 7 // 91)
            return f"FREQ=MONTHLY;INTERVAL=3;BYDAY={position}{day};COUNT={count}"
        return f"FREQ=MONTHLY;BYDAY={position}{day};COUNT={max(1, weeks * 7 // 30)}"
    interval = 1 if cadence is Cadence.WEEKLY else 2
    return f"FREQ=WEEKLY;INTERVAL={interval};BYDAY={day};COUNT={max(1, weeks // interval)}"


def rule_starts(rrule: str, first_local: dt.datetime, timezone: str) -> list[dt.datetime]:
    """The UTC starts of the rule's occurrences: the same wall-clock time in the zone."""
    zone = ZoneInfo(timezone)
    naive = first_local.replace(tzinfo=None)
    return [
        start.replace(tzinfo=zone).astimezone(dt.UTC)
        for start in rrulestr(rrule, dtstart=naive)  # COUNT bounds it
    ]


@dataclass(frozen=True)
class Occurrence:
    """One occurrence: its rule time (the RECURRENCE-ID) and when it happens, or why it cannot."""

    recurrence_id: dt.datetime
    slot: Slot | None
    reason: str | None = None  # why it moved, or why it cannot happen

    @property
    def moved(self) -> bool:
        return self.slot is not None and self.slot.interval.start != self.recurrence_id


def place(
    organizer: Planner,
    attendee: Planner,
    recurrence_id: dt.datetime,
    *,
    minutes: int,
    rules: Rules,
    not_before: dt.datetime,
    avoid: Sequence[Interval] = (),
) -> Occurrence:
    """The occurrence at its rule time if both can make it, else the nearest slot that week."""
    at_rule = Interval(recurrence_id, recurrence_id + dt.timedelta(minutes=minutes))
    problem = fits(organizer, attendee, at_rule, rules=rules, not_before=not_before)
    if problem is None and not any(a.start < at_rule.end and at_rule.start < a.end for a in avoid):
        return Occurrence(recurrence_id, Slot(at_rule))
    problem = problem or "declined"
    moved = find_slot(
        organizer,
        attendee,
        minutes=minutes,
        not_before=max(not_before, recurrence_id - MOVE_WINDOW),
        until=recurrence_id + MOVE_WINDOW + (at_rule.end - at_rule.start),
        rules=rules,
        near=recurrence_id,
        avoid=avoid,
    )
    if isinstance(moved, NoSlot):
        return Occurrence(recurrence_id, None, f"{problem}, and {moved.reason}")
    return Occurrence(recurrence_id, moved, f"moved: the usual time is {problem}")


def plan_occurrences(
    organizer: Planner,
    attendee: Planner,
    starts: Sequence[dt.datetime],
    *,
    minutes: int,
    rules: Rules,
    not_before: dt.datetime,
) -> list[Occurrence]:
    """Every occurrence of the rule placed, moved within its week, or reported impossible."""
    placed: list[Occurrence] = []
    for start in starts:
        occurrence = place(
            organizer, attendee, start, minutes=minutes, rules=rules, not_before=not_before
        )
        placed.append(occurrence)
        if occurrence.slot is not None:  # a moved occurrence must not meet the next one
            taken = occurrence.slot.interval
            organizer = _with_busy(organizer, taken)
            attendee = _with_busy(attendee, taken)
    return placed


def _with_busy(person: Planner, taken: Interval) -> Planner:
    return Planner(
        person.participant_id, person.availability, [*person.busy, taken], person.edge_burden
    )
