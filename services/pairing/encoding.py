"""Profiles as arrays for the compiled search and solver (pricing.py, flow.py).

Skills, languages, channels and departments become small integers or bit masks; mentors are
grouped into chunks of alike mentors (same zone-and-hours class and languages, then by skills),
and each chunk keeps the best level it offers in every skill, so a chunk's bound is cheap.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.pairing import classes
from services.pairing.model import Profile, Rules

CHUNK = 24  # mentors per chunk: smaller is a tighter bound, larger fewer bounds to compute
DEFAULT_OFFERED_LEVEL = 3
MAX_LANGUAGES = 64


class TooManyLanguages(ValueError):
    """The round names more distinct languages than the matcher's bit masks hold."""


def parse_skill(raw: str, default: int) -> tuple[str, int]:
    """'python:4' -> ('python', 4); 'python' -> ('python', default); levels clamp to 1-5."""
    name, _, level = raw.partition(":")
    name = name.strip().lower()
    if level.strip().isdigit():
        return name, min(5, max(1, int(level)))
    return name, default


@dataclass(frozen=True)
class Encoded:
    """The arrays the compiled code reads (tuples in the order pricing.py indexes them)."""

    mentees: tuple[Any, ...]
    mentors: tuple[Any, ...]
    tables: tuple[Any, ...]
    weights: NDArray[np.int64]
    chunks: tuple[Any, ...]
    mentee_classes: classes.Classes
    mentor_classes: classes.Classes
    overlap: classes.Overlap
    languages: tuple[str, ...]
    mentor_index: NDArray[np.int64]  # encoded mentor -> position in the mentors given
    free: NDArray[np.int64]
    load: NDArray[np.int64]


def _mask(values: Collection[str], index: dict[str, int]) -> int:
    bits = 0
    for value in values:
        bits |= 1 << index[value]
    return bits


def _seniority(p: Profile) -> int:
    # 0-63: the chunks keep which levels they hold as bits of one integer
    return -1 if p.seniority is None else min(63, max(0, p.seniority))


def _padded(rows: list[list[int]], fill: int = -1) -> NDArray[np.int64]:
    width = max((len(r) for r in rows), default=0) or 1
    out = np.full((len(rows), width), fill, dtype=np.int64)
    for n, row in enumerate(rows):
        out[n, : len(row)] = row
    return out


def encode(
    mentors: Sequence[Profile],
    mentees: Sequence[Profile],
    *,
    current_load: Mapping[str, int],
    forbidden: Collection[tuple[int, int]],
    bonus: Sequence[int],
    rules: Rules,
    week_of: dt.date,
) -> Encoded:
    """Encodes the round: only mentors with a place left take part.

    forbidden: (mentee position, mentor position) pairs ruled out (reporting lines, avoid
    lists, ended pairs); bonus: extra points per mentee (the waitlist).
    """
    load_all = np.array([current_load.get(p.participant_id, 0) for p in mentors], dtype=np.int64)
    capacity = np.array([p.capacity for p in mentors], dtype=np.int64)
    keep = np.flatnonzero(capacity - load_all > 0)
    open_mentors = [mentors[int(j)] for j in keep]
    languages = sorted({lang for p in (*open_mentors, *mentees) for lang in p.languages})
    if len(languages) > MAX_LANGUAGES:
        raise TooManyLanguages(
            f"the round names {len(languages)} languages; at most {MAX_LANGUAGES} are supported, "
            "so map rare languages to a common one in the profiles"
        )
    lang_index = {lang: n for n, lang in enumerate(languages)}
    levels_of: dict[frozenset[str], dict[str, int]] = {}
    offered_levels = []
    for p in open_mentors:
        levels = levels_of.get(p.skills_offered)
        if levels is None:
            levels = levels_of[p.skills_offered] = dict(
                parse_skill(s, DEFAULT_OFFERED_LEVEL) for s in p.skills_offered
            )
        offered_levels.append(levels)
    skill_index: dict[str, int] = {}
    for levels in offered_levels:
        # sorted: a frozenset's order changes with each process's string hashing, and with it
        # the chunks and which of several equal optima is found (replicas must agree)
        for name in sorted(levels):
            skill_index.setdefault(name, len(skill_index) + 1)  # 0: nobody offers it
    channels = sorted({c for p in (*open_mentors, *mentees) for c in p.channels})
    channel_index = {c: n for n, c in enumerate(channels[:63])}
    departments: dict[str, int] = {}

    def department(p: Profile) -> int:
        return (
            -1 if p.department is None else departments.setdefault(p.department, len(departments))
        )

    offered = np.zeros((len(open_mentors), len(skill_index) + 1), dtype=np.uint8)
    for j, levels in enumerate(offered_levels):
        for name, level in levels.items():
            offered[j, skill_index[name]] = level
    mentor_cls = classes.classify([p.availability for p in open_mentors])
    mentee_cls = classes.classify([p.availability for p in mentees])
    m: tuple[Any, ...] = (
        mentor_cls.index,
        np.array([_mask(p.languages, lang_index) for p in open_mentors], dtype=np.uint64),
        offered,
        np.array([_mask(p.channels & channel_index.keys(), channel_index) for p in open_mentors]),
        np.array([_seniority(p) for p in open_mentors]),
        np.array([department(p) for p in open_mentors]),
    )
    # many mentees seek the same skills and goals: each distinct set is parsed once
    parsed: dict[frozenset[str], list[tuple[str, int]]] = {}
    known_of: dict[frozenset[str], list[tuple[int, int]]] = {}
    goals_of: dict[frozenset[str], list[int]] = {}
    sought, known, goals = [], [], []
    for p in mentees:
        row = parsed.get(p.skills_sought)
        if row is None:
            # sorted: the same profile always encodes the same way
            row = parsed[p.skills_sought] = [parse_skill(s, 0) for s in sorted(p.skills_sought)]
            known_of[p.skills_sought] = [(skill_index[n], lv) for n, lv in row if n in skill_index]
        sought.append(row)
        known.append(known_of[p.skills_sought])
        g = goals_of.get(p.goals)
        if g is None:
            g = goals_of[p.goals] = [
                skill_index[x.lower()] for x in sorted(p.goals) if x.lower() in skill_index
            ]
        goals.append(g)
    e: tuple[Any, ...] = (
        mentee_cls.index,
        np.array([_mask(p.languages, lang_index) for p in mentees], dtype=np.uint64),
        _padded([[s for s, _ in row] for row in known]),
        _padded([[lv for _, lv in row] for row in known], fill=0),
        np.array([len(row) for row in sought], dtype=np.int64),
        _padded(goals),
        np.array([len(p.goals) for p in mentees], dtype=np.int64),
        np.array([_mask(p.channels & channel_index.keys(), channel_index) for p in mentees]),
        np.array([_seniority(p) for p in mentees]),
        np.array([department(p) for p in mentees]),
        np.asarray(bonus, dtype=np.int64),
    )
    e = tuple(
        np.ascontiguousarray(a, dtype=a.dtype if a.dtype == np.uint64 else np.int64) for a in e
    )
    m = (m[0], m[1], m[2], *(np.asarray(a, dtype=np.int64) for a in m[3:]), _skill_bits(offered))
    e = (*e, *_sought_and_goal_bits(e[2], e[5]))
    shared = classes.overlap(mentee_cls, mentor_cls, week_of)
    feasible = (shared.minutes >= rules.min_weekly_minutes) & (
        shared.longest >= rules.min_stretch_minutes
    )
    w = rules.weights
    target = max(1, rules.hours_target_minutes)
    hours = (w.hours * np.minimum(shared.minutes, target)) // target
    position = np.full(len(mentors), -1, dtype=np.int64)
    position[keep] = np.arange(len(keep))
    pairs = [(i, position[j]) for i, j in forbidden if position[j] >= 0]
    keys = np.unique(np.array([i * len(keep) + j for i, j in pairs], dtype=np.int64))
    weights = np.array(
        [
            w.skills,
            w.goals,
            w.channel,
            w.seniority,
            rules.seniority_gap[0],
            rules.seniority_gap[1],
            w.hours,
            int(rules.separate_departments),
        ],
        dtype=np.int64,
    )
    return Encoded(
        mentees=e,
        mentors=m,
        tables=(feasible, hours.astype(np.int64), keys, np.int64(len(keep))),
        weights=weights,
        chunks=_by_class(_chunks(m), feasible),
        mentee_classes=mentee_cls,
        mentor_classes=mentor_cls,
        overlap=shared,
        languages=tuple(languages),
        mentor_index=keep.astype(np.int64),
        free=(capacity - load_all)[keep],
        load=load_all[keep],
    )


SKILL_BITS = 128  # two words; every skill index from 127 on shares the last bit


def _skill_bits(offered: NDArray[np.uint8]) -> NDArray[np.int64]:
    """Per mentor, the skills it offers as two 64-bit words (pricing skips, without scoring,
    a mentor who offers none of what a mentee seeks or aims at)."""
    out = np.zeros((offered.shape[0], 2), dtype=np.uint64)
    for k in range(1, offered.shape[1]):
        bit = min(k, SKILL_BITS - 1)
        has = offered[:, k] > 0
        out[has, bit // 64] |= np.uint64(1) << np.uint64(bit % 64)
    return out.view(np.int64)


def _wanted_bits(sought: NDArray[np.int64], goals: NDArray[np.int64]) -> NDArray[np.int64]:
    """Per mentee, the skills it seeks or aims at (known to some mentor), as _skill_bits."""
    out = np.zeros((sought.shape[0], 2), dtype=np.uint64)
    for rows in (sought, goals):
        for col in range(rows.shape[1]):
            k = rows[:, col]
            has = k > 0
            bit = np.minimum(k[has], SKILL_BITS - 1).astype(np.uint64)
            np.bitwise_or.at(
                out, (np.flatnonzero(has), (bit // 64).astype(np.int64)), np.uint64(1) << (bit % 64)
            )
    return out.view(np.int64)


def _sought_and_goal_bits(
    sought: NDArray[np.int64], goals: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Per mentee, the skills it seeks and (apart) those it aims at, as _skill_bits, and how
    many more of each than one share the last bit (for pricing's per-mentor bound: the sought
    skills a mentor offers are at most popcount(sought & offers), plus those extra ones)."""
    extra = np.zeros((sought.shape[0], 2), dtype=np.int64)
    for col, rows in enumerate((sought, goals)):
        extra[:, col] = np.maximum(0, (rows >= SKILL_BITS - 1).sum(axis=1) - 1)
    return _wanted_bits(sought, goals[:, :0]), _wanted_bits(sought[:, :0], goals), extra


def _by_class(chunks: tuple[Any, ...], feasible: NDArray[np.bool_]) -> tuple[Any, ...]:
    """Appends, per mentee class, the chunks whose class shares enough time with it (CSR)."""
    zone = chunks[1]
    lists = [np.flatnonzero(feasible[x, zone]) for x in range(feasible.shape[0])]
    start = np.zeros(len(lists) + 1, dtype=np.int64)
    start[1:] = np.cumsum([len(c) for c in lists])
    flat = np.concatenate(lists).astype(np.int64) if lists else np.zeros(0, dtype=np.int64)
    return (*chunks, start, flat)


def _chunks(m: tuple[Any, ...]) -> tuple[Any, ...]:
    """Alike mentors together: by class and languages, then by the skills they offer best."""
    zone, lang, offered, chan, sen = m[0], m[1], m[2], m[3], m[4]
    n = len(zone)
    top = offered.argmax(axis=1) if offered.shape[1] else np.zeros(n, dtype=np.int64)
    order = np.lexsort((top, lang, zone)) if n else np.zeros(0, dtype=np.int64)
    starts = [0]
    for x in range(1, n + 1):
        if (
            x == n
            or zone[order[x]] != zone[order[x - 1]]
            or lang[order[x]] != lang[order[x - 1]]
            or x - starts[-1] >= CHUNK
        ):
            starts.append(x)
    if n == 0:
        starts = [0]
    starts_a = np.array(starts, dtype=np.int64)
    c = len(starts) - 1
    best = np.zeros((c, offered.shape[1]), dtype=np.uint8)
    chan_or = np.zeros(c, dtype=np.int64)
    sen_mask = np.zeros(c, dtype=np.uint64)
    for k in range(c):
        members = order[starts_a[k] : starts_a[k + 1]]
        best[k] = offered[members].max(axis=0)
        chan_or[k] = np.bitwise_or.reduce(chan[members])
        for level in sen[members]:
            if level >= 0:
                sen_mask[k] |= np.uint64(1) << np.uint64(level)
    first = order[starts_a[:-1]] if c else np.zeros(0, dtype=np.int64)
    return (
        order.astype(np.int64),
        zone[first].astype(np.int64),
        lang[first].astype(np.uint64),
        best,
        chan_or,
        sen_mask,
        starts_a,
    )
