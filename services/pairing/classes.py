"""Zone-and-hours classes: people who work the same local hours in the same zone share their week.

Shared working time depends only on the two people's zones and local hours, so it is computed
once per pair of classes (a few thousand pairs for a program of any size), never once per pair
of people. Weeks are real dates through zoneinfo (shared.worktime), so daylight-saving weeks
that differ between regions come out as they are.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import NDArray

from shared.worktime import Availability, Interval, working_intervals

WEEK_MINUTES = 7 * 24 * 60


def class_key(who: Availability) -> tuple[str, tuple[tuple[int, dt.time, dt.time], ...]]:
    """What makes two people's weeks the same: the zone and the set of local hours."""
    hours = sorted({(h.weekday, h.start, h.end) for h in who.hours})
    return who.timezone, tuple(hours)


@dataclass(frozen=True)
class Classes:
    """Each person's class index, and one availability standing for each class."""

    index: NDArray[np.int64]
    members: tuple[Availability, ...]


def classify(people: Sequence[Availability]) -> Classes:
    """Groups people by zone and hours, in order of first appearance."""
    seen: dict[object, int] = {}
    index = np.empty(len(people), dtype=np.int64)
    members: list[Availability] = []
    for n, who in enumerate(people):
        key = class_key(who)
        found = seen.get(key)
        if found is None:
            found = seen[key] = len(members)
            members.append(who)
        index[n] = found
    return Classes(index, tuple(members))


def _week_minutes(who: Availability, week_of: dt.date) -> NDArray[np.int64]:
    """The class's working time as [start, end) minute offsets into the UTC week from week_of."""
    origin = dt.datetime.combine(week_of, dt.time(), tzinfo=dt.UTC)
    spans = working_intervals(who, week_of - dt.timedelta(days=1), 9)
    out = []
    for span in spans:
        start = int((span.start - origin).total_seconds() // 60)
        end = int((span.end - origin).total_seconds() // 60)
        start, end = max(start, 0), min(end, WEEK_MINUTES)
        if start < end:
            out.append((start, end))
    return np.array(out, dtype=np.int64).reshape(-1, 2)


@dataclass(frozen=True)
class Overlap:
    """Weekly shared minutes and the longest unbroken stretch, per (mentee class, mentor class)."""

    minutes: NDArray[np.int64]
    longest: NDArray[np.int64]
    mentee_weeks: tuple[NDArray[np.int64], ...] = ()
    mentor_weeks: tuple[NDArray[np.int64], ...] = ()
    week_of: dt.date | None = None

    def windows(self, mentee_class: int, mentor_class: int) -> tuple[Interval, ...]:
        """The two classes' shared working time in the week, as UTC intervals."""
        assert self.week_of is not None
        a, b = self.mentee_weeks[mentee_class].tolist(), self.mentor_weeks[mentor_class].tolist()
        out = []
        i = j = 0
        while i < len(a) and j < len(b):
            lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
            if lo < hi:
                out.append(Interval(_at(self.week_of, lo), _at(self.week_of, hi)))
            if a[i][1] < b[j][1]:
                i += 1
            else:
                j += 1
        return tuple(out)


@functools.lru_cache(maxsize=65536)
def _at(week_of: dt.date, minute: int) -> dt.datetime:
    """The instant `minute` minutes into the UTC week from week_of (shared: they repeat)."""
    return dt.datetime.combine(week_of, dt.time(), tzinfo=dt.UTC) + dt.timedelta(minutes=minute)


def overlap(mentees: Classes, mentors: Classes, week_of: dt.date) -> Overlap:
    """Shared time for every pair of classes (each class's week is computed once)."""
    a = [_week_minutes(who, week_of) for who in mentees.members]
    b = [_week_minutes(who, week_of) for who in mentors.members]
    a_start, a_flat = _flatten(a)
    b_start, b_flat = _flatten(b)
    minutes, longest = _pairwise(a_start, a_flat, b_start, b_flat)
    return Overlap(minutes, longest, tuple(a), tuple(b), week_of)


def _flatten(weeks: list[NDArray[np.int64]]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    start = np.zeros(len(weeks) + 1, dtype=np.int64)
    start[1:] = np.cumsum([len(w) for w in weeks])
    flat = np.concatenate(weeks) if weeks else np.zeros((0, 2), dtype=np.int64)
    return start, flat.reshape(-1, 2)


@numba.njit(cache=True)
def _pairwise(a_start, a_flat, b_start, b_flat):  # type: ignore[no-untyped-def]
    na, nb = len(a_start) - 1, len(b_start) - 1
    minutes = np.zeros((na, nb), dtype=np.int64)
    longest = np.zeros((na, nb), dtype=np.int64)
    for x in range(na):
        for y in range(nb):
            i, j = a_start[x], b_start[y]
            total = 0
            best = 0
            while i < a_start[x + 1] and j < b_start[y + 1]:
                lo = max(a_flat[i, 0], b_flat[j, 0])
                hi = min(a_flat[i, 1], b_flat[j, 1])
                if lo < hi:
                    total += hi - lo
                    best = max(best, hi - lo)
                if a_flat[i, 1] < b_flat[j, 1]:
                    i += 1
                else:
                    j += 1
            minutes[x, y] = total
            longest[x, y] = best
    return minutes, longest
