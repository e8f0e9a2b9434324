"""When a pair meets: a free slot inside both people's working hours, for the actual dates.

Pure decisions. A slot starts on a quarter hour of the organizer's local clock, leaves the
minimum notice, keeps a buffer around each person's other sessions (with anyone), and, when the
only shared time is at the edge of someone's day, burdens whoever was burdened least so far.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from shared.worktime import (
    Availability,
    Hours,
    Interval,
    covers,
    intersect,
    subtract,
    working_intervals,
)

QUARTER = 15
EDGE = dt.timedelta(minutes=60)  # a slot this close to the start or end of a working day


@dataclass(frozen=True)
class Rules:
    """How far ahead and how far apart sessions are planned."""

    notice: dt.timedelta = dt.timedelta(hours=24)
    buffer: dt.timedelta = dt.timedelta(minutes=15)
    horizon: dt.timedelta = dt.timedelta(days=28)


@dataclass(frozen=True)
class Planner:
    """One person as planning sees them: when they work, when they are busy, their burden."""

    participant_id: str
    availability: Availability
    busy: Sequence[Interval] = ()
    edge_burden: int = 0  # how often a session was put at the edge of their day


@dataclass(frozen=True)
class Slot:
    """A planned time, and whose day's edge it uses (nobody's, ideally)."""

    interval: Interval
    edge_of: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class NoSlot:
    """Why no time was found, in words a coordinator can act on."""

    reason: str


def organizer_quarter(at: dt.datetime, timezone: str) -> dt.datetime:
    """The first instant at or after `at` on a quarter hour of the zone's local clock."""
    local = at.astimezone(ZoneInfo(timezone))
    base = local.replace(second=0, microsecond=0)
    if base < local:
        base += dt.timedelta(minutes=1)
    remainder = base.minute % QUARTER
    if remainder:
        base += dt.timedelta(minutes=QUARTER - remainder)
    return base.astimezone(dt.UTC)


def _window_days(start: dt.datetime, end: dt.datetime) -> tuple[dt.date, int]:
    first = start.date() - dt.timedelta(days=2)
    return first, (end.date() - first).days + 3


def _work(person: Planner, start: dt.datetime, end: dt.datetime) -> Sequence[Interval]:
    first, days = _window_days(start, end)
    who = person.availability
    hours = tuple((h.weekday, h.start, h.end) for h in who.hours)
    return _working(who.timezone, hours, first, days)


@functools.lru_cache(maxsize=4096)
def _working(
    timezone: str, hours: tuple[tuple[int, dt.time, dt.time], ...], first: dt.date, days: int
) -> tuple[Interval, ...]:
    # re-planning a series asks for the same people's same days again and again (each
    # occurrence is checked at its rule time, then searched around): computed once each
    availability = Availability(timezone, [Hours(*h) for h in hours])
    return tuple(working_intervals(availability, first, days))


def _blocked(people: Sequence[Planner], buffer: dt.timedelta, within: Interval) -> list[Interval]:
    # only what reaches into the window: a person's whole schedule (half a year of sessions)
    # sorted and merged for each slot searched cost more than the search itself
    low, high = within.start - buffer, within.end + buffer
    return [
        Interval(b.start - buffer, b.end + buffer)
        for p in people
        for b in p.busy
        if b.start < high and low < b.end
    ]


def _edges(
    slot: Interval, people: Sequence[Planner], work: Sequence[Sequence[Interval]]
) -> list[str]:
    edged = []
    for person, intervals in zip(people, work, strict=True):
        for block in intervals:
            if block.start <= slot.start and slot.end <= block.end:
                if slot.start - block.start < EDGE or block.end - slot.end < EDGE:
                    edged.append(person.participant_id)
                break
    return edged


def find_slot(
    organizer: Planner,
    attendee: Planner,
    *,
    minutes: int,
    not_before: dt.datetime,
    until: dt.datetime,
    rules: Rules,
    near: dt.datetime | None = None,
    avoid: Sequence[Interval] = (),
) -> Slot | NoSlot:
    """A slot of `minutes` for both, starting in [not_before, until - minutes].

    Without `near`, the earliest organizer-local day with a slot, and on it the fairest slot
    (inside both days before at anyone's edge, then at the edge of the less burdened person).
    With `near`, the slot closest to that instant (moving one occurrence of a series).
    """
    people = (organizer, attendee)
    zone = organizer.availability.timezone
    length = dt.timedelta(minutes=minutes)
    work = [_work(p, not_before, until) for p in people]
    shared = intersect(intersect(work[0], work[1]), [Interval(not_before, until)])
    window = Interval(not_before, until)
    free = subtract(shared, [*_blocked(people, rules.buffer, window), *avoid])
    if near is not None:
        at = _nearest(free, length, zone, near)
        if at is None:
            return NoSlot(_why_none(people, shared, free, minutes, not_before, until))
        best = Interval(at, at + length)
        return Slot(best, tuple(_edges(best, people, work)))
    # the first organizer-local day's starts only, and Intervals only for them: a search over
    # weeks has thousands of quarter hours, and only the first day's are compared
    starts = (start for interval in free for start in _starts(interval, length, zone))
    first = next(starts, None)
    if first is None:
        return NoSlot(_why_none(people, shared, free, minutes, not_before, until))
    local = ZoneInfo(zone)
    first_day = first.astimezone(local).date()
    same_day = [Interval(first, first + length)]
    for start in starts:  # in order: the first day's starts come first
        if start.astimezone(local).date() != first_day:
            break
        same_day.append(Interval(start, start + length))
    burden = {p.participant_id: p.edge_burden for p in people}

    def unfairness(slot: Interval) -> tuple[int, int, dt.datetime]:
        edged = _edges(slot, people, work)
        return (len(edged), sum(burden[e] for e in edged), slot.start)

    best = min(same_day, key=unfairness)
    return Slot(best, tuple(_edges(best, people, work)))


STEP = dt.timedelta(minutes=QUARTER)


def _starts(interval: Interval, length: dt.timedelta, zone: str) -> Iterator[dt.datetime]:
    # a quarter hour of the organizer's clock, then steps of 15 minutes of UTC: every zone's
    # offset (and its daylight-saving shift) is a whole number of quarter hours, so the steps
    # stay on the local quarters
    start = organizer_quarter(interval.start, zone)
    while start + length <= interval.end:
        yield start
        start += STEP


def _nearest(
    free: Sequence[Interval], length: dt.timedelta, zone: str, near: dt.datetime
) -> dt.datetime | None:
    """The start `_starts` would give closest to `near` (the earlier of two as close), or None.

    Computed per interval from its first quarter, not by listing every quarter of the window.
    """
    best: tuple[dt.timedelta, dt.datetime] | None = None
    for interval in free:
        first = organizer_quarter(interval.start, zone)
        if first + length > interval.end:
            continue
        last = (interval.end - length - first) // STEP  # the number of steps that still fit
        steps = (near - first) // STEP  # the step at or before `near`
        for k in (steps, steps + 1):
            at = first + min(max(k, 0), last) * STEP
            key = (abs(at - near), at)
            if best is None or key < best:
                best = key
    return None if best is None else best[1]


def _why_none(
    people: Sequence[Planner],
    shared: Sequence[Interval],
    free: Sequence[Interval],
    minutes: int,
    not_before: dt.datetime,
    until: dt.datetime,
) -> str:
    who = " and ".join(f"{p.participant_id} ({p.availability.timezone})" for p in people)
    span = f"between {not_before:%Y-%m-%d %H:%M} and {until:%Y-%m-%d %H:%M} UTC"
    if not shared:
        return (
            f"{who} share no working hour {span}; widen someone's working hours or pair them "
            "with someone closer in time"
        )
    longest = max(i.minutes for i in shared)
    if longest < minutes:
        return (
            f"{who} share at most {longest} minutes in a row {span}, and the session needs "
            f"{minutes}; widen someone's working hours or shorten the session"
        )
    return (
        f"every shared working hour of {who} {span} is taken by their other sessions or an "
        "absence; move one of those, or wait until the absence ends"
    )


def fits(
    organizer: Planner,
    attendee: Planner,
    slot: Interval,
    *,
    rules: Rules,
    not_before: dt.datetime,
) -> str | None:
    """None when both can make the slot; else why not."""
    if slot.start < not_before:
        return "less than the minimum notice ahead"
    for person in (organizer, attendee):
        if not covers(_work(person, slot.start, slot.end), slot):
            return f"outside the working hours of {person.participant_id}"
        buffered = Interval(slot.start - rules.buffer, slot.end + rules.buffer)
        if any(b.start < buffered.end and buffered.start < b.end for b in person.busy):
            return f"{person.participant_id} has another session then"
    return None
