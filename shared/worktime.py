"""Working time across time zones, computed for actual dates (daylight saving included).

People keep their working hours in local time; an instant in UTC is only known for a given date
in a given zone, so every computation here walks real calendar dates through zoneinfo.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from zoneinfo import ZoneInfo


class LocalHours(Protocol):
    """A stretch of working time starting on a weekday, in local time (0 = Monday).

    An end at or before the start is on the next day: 22:00-06:00 on Monday runs into Tuesday.
    """

    @property
    def weekday(self) -> int: ...
    @property
    def start(self) -> dt.time: ...
    @property
    def end(self) -> dt.time: ...


@dataclass(frozen=True)
class Hours:
    """LocalHours as plain data, e.g. read back from a JSON column."""

    weekday: int
    start: dt.time
    end: dt.time

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> Hours:
        """From {'weekday': 0, 'start': '09:00', 'end': '17:00'}."""
        return cls(
            weekday=int(str(raw["weekday"])),
            start=dt.time.fromisoformat(str(raw["start"])),
            end=dt.time.fromisoformat(str(raw["end"])),
        )


@dataclass(frozen=True)
class Availability:
    """Where a person works from and when, in their own local time."""

    timezone: str
    hours: Sequence[LocalHours]

    @classmethod
    def from_json(cls, timezone: str, hours: Iterable[Mapping[str, object]]) -> Availability:
        """From a zone name and working hours as stored in JSON."""
        return cls(timezone, [Hours.from_json(h) for h in hours])


@dataclass(frozen=True, order=True)
class Interval:
    """A half-open span [start, end) of UTC instants."""

    start: dt.datetime
    end: dt.datetime

    @property
    def minutes(self) -> int:
        return int((self.end - self.start).total_seconds() // 60)


def _local_instant(day: dt.date, at: dt.time, zone: ZoneInfo) -> dt.datetime:
    """The UTC instant of a local wall-clock time on a date.

    zoneinfo's fold=0 takes the first of an ambiguous time (autumn) and moves a time skipped by
    the spring-forward gap later by the gap, which is what a person means by "9:00".
    """
    return dt.datetime.combine(day, at, tzinfo=zone).astimezone(dt.UTC)


def working_intervals(who: Availability, first_day: dt.date, days: int) -> list[Interval]:
    """The person's working time as UTC intervals, for local dates first_day .. first_day+days-1."""
    zone = ZoneInfo(who.timezone)
    found: list[Interval] = []
    for offset in range(days):
        day = first_day + dt.timedelta(days=offset)
        for block in who.hours:
            if block.weekday == day.weekday():
                start = _local_instant(day, block.start, zone)
                end_day = day + dt.timedelta(days=1) if overnight(block) else day
                end = _local_instant(end_day, block.end, zone)
                if end > start:
                    found.append(Interval(start, end))
    return merge(found)


def overnight(block: LocalHours) -> bool:
    """Whether the block ends on the next local day (its end is at or before its start)."""
    return block.end <= block.start


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, with overlapping or touching intervals joined."""
    merged: list[Interval] = []
    for item in sorted(intervals):
        if merged and item.start <= merged[-1].end:
            last = merged[-1]
            merged[-1] = Interval(last.start, max(last.end, item.end))
        else:
            merged.append(item)
    return merged


def intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    """The instants inside both lists of intervals (each sorted and merged)."""
    result: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start = max(a[i].start, b[j].start)
        end = min(a[i].end, b[j].end)
        if start < end:
            result.append(Interval(start, end))
        if a[i].end < b[j].end:
            i += 1
        else:
            j += 1
    return result


def shared_working_time(
    first: Availability, second: Availability, *, from_day: dt.date, days: int
) -> list[Interval]:
    """When both people work, over the UTC days from_day .. from_day+days-1.

    Local dates two days before and one after are included, so that a local day that starts on
    the previous UTC date (or ends on the next), or a night shift that began the local day
    before, is not missed; the result is clipped to the range.
    """
    window = Interval(
        dt.datetime.combine(from_day, dt.time(), tzinfo=dt.UTC),
        dt.datetime.combine(from_day + dt.timedelta(days=days), dt.time(), tzinfo=dt.UTC),
    )
    before = from_day - dt.timedelta(days=2)
    a = working_intervals(first, before, days + 3)
    b = working_intervals(second, before, days + 3)
    return intersect(intersect(a, b), [window])


def weekly_overlap_minutes(first: Availability, second: Availability, *, week_of: dt.date) -> int:
    """Minutes per week both people work, for the 7 days starting at week_of."""
    return sum(i.minutes for i in shared_working_time(first, second, from_day=week_of, days=7))


def first_slot(
    shared: Sequence[Interval], *, not_before: dt.datetime, minutes: int, step_minutes: int = 15
) -> Interval | None:
    """The earliest slot of the given length inside the shared time, starting on a step boundary."""
    length = dt.timedelta(minutes=minutes)
    for interval in shared:
        start = max(interval.start, not_before)
        start = _round_up(start, step_minutes)
        if start + length <= interval.end:
            return Interval(start, start + length)
    return None


def _round_up(at: dt.datetime, step_minutes: int) -> dt.datetime:
    base = at.replace(second=0, microsecond=0)
    if base < at:
        base += dt.timedelta(minutes=1)
    remainder = base.minute % step_minutes
    if remainder:
        base += dt.timedelta(minutes=step_minutes - remainder)
    return base


def subtract(free: Sequence[Interval], taken: Iterable[Interval]) -> list[Interval]:
    """The parts of `free` (sorted, merged) that no interval of `taken` covers."""
    blocks = merge(taken)
    result: list[Interval] = []
    for interval in free:
        start = interval.start
        for block in blocks:
            if block.end <= start or block.start >= interval.end:
                continue
            if block.start > start:
                result.append(Interval(start, block.start))
            start = max(start, block.end)
            if start >= interval.end:
                break
        if start < interval.end:
            result.append(Interval(start, interval.end))
    return result


def covers(intervals: Sequence[Interval], span: Interval) -> bool:
    """Whether one interval of the (merged) list holds the whole span."""
    return any(i.start <= span.start and span.end <= i.end for i in intervals)
