"""A solved round as people read it: each pair's score and components, runner-ups, shared
windows, and for each unmatched mentee the reason."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import gc
from collections.abc import Iterator, Sequence

import numba
import numpy as np
from numpy.typing import NDArray

from services.pairing import flow, pricing
from services.pairing.encoding import Encoded, parse_skill
from services.pairing.model import (
    Alternative,
    Certificate,
    MatchResult,
    Profile,
    Proposal,
    Rules,
    Unmatched,
)
from shared.worktime import Interval

RUNNER_UPS = 2
LOAD = "mentor load"


@contextlib.contextmanager
def _no_collection() -> Iterator[None]:
    """The cyclic garbage collector paused: a round builds hundreds of thousands of small
    objects, none of them cyclic, and its full passes over them were ~40% of the time at 50k."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@_no_collection()
def result(
    enc: Encoded,
    solved: flow.Flow,
    certificate: Certificate,
    arcs: tuple[NDArray[np.int64], ...],
    mentors: Sequence[Profile],
    mentees: Sequence[Profile],
    *,
    rules: Rules,
    week_of: dt.date,
) -> MatchResult:
    """The proposals (in mentee order), the unmatched with reasons, and the certificate."""
    matched = np.flatnonzero(solved.assigned >= 0)
    chosen = solved.assigned[matched]
    parts = pricing.pair_components(
        matched.astype(np.int64),
        chosen.astype(np.int64),
        enc.mentees,
        enc.mentors,
        enc.tables,
        enc.weights,
    )
    slot = _load_slots(matched, chosen, solved.assigned_score[matched], enc)
    start, heads, scores = arcs
    alt_mentor, alt_score = _runner_ups(start, heads, scores, solved.assigned, RUNNER_UPS)
    windows: dict[tuple[int, int], tuple[tuple[Interval, ...], str]] = {}
    texts: dict[tuple[frozenset[str], frozenset[str], frozenset[str]], list[str]] = {}
    pairs = []
    load_weight = rules.weights.load
    parts_l = parts.tolist()
    slot_l = slot.tolist()
    alt_mentor_l = alt_mentor.tolist()
    alt_score_l = alt_score.tolist()
    mentee_class = enc.mentee_classes.index.tolist()
    mentor_class = enc.mentor_classes.index.tolist()
    mentor_at = enc.mentor_index.tolist()
    mentor_ids = [p.participant_id for p in mentors]
    minutes_of = enc.overlap.minutes
    longest_of = enc.overlap.longest
    for x, (i, j) in enumerate(zip(matched.tolist(), chosen.tolist(), strict=True)):
        mentee, mentor = mentees[i], mentors[mentor_at[j]]
        named = list(zip(pricing.COMPONENTS, parts_l[x], strict=True))
        named.append((LOAD, -load_weight * slot_l[x]))
        key = (mentee_class[i], mentor_class[j])
        known = windows.get(key)
        if known is None:
            known = windows[key] = (
                enc.overlap.windows(*key),
                f"weekly shared working time: {int(minutes_of[key]) / 60:.1f} h "
                f"(longest stretch {int(longest_of[key]) / 60:.1f} h)",
            )
        shared, time_text = known
        language = next(lang for lang in mentee.languages if lang in mentor.languages)
        what = (mentee.skills_sought, mentee.goals, mentor.skills_offered)
        topics = texts.get(what)
        if topics is None:
            topics = texts[what] = _topics(*what)
        pairs.append(
            Proposal(
                mentor_id=mentor.participant_id,
                mentee_id=mentee.participant_id,
                language=language,
                reasons=(
                    f"shared language: {language}",
                    *topics,
                    time_text,
                    "score: " + ", ".join(f"{name} {v:+d}" for name, v in named if v),
                ),
                score=sum(v for _, v in named),
                components=tuple(named),
                alternatives=tuple(
                    Alternative(mentor_ids[mentor_at[h]], sc)
                    for h, sc in zip(alt_mentor_l[i], alt_score_l[i], strict=True)
                    if h >= 0
                ),
                shared=shared,
            )
        )
    spoken = {lang for p in mentors for lang in p.languages}
    unmatched = [
        Unmatched(
            mentees[int(i)].participant_id,
            _why_unmatched(int(i), enc, spoken, mentees, rules),
        )
        for i in np.flatnonzero(solved.assigned < 0)
    ]
    return MatchResult(
        pairs=pairs,
        unmatched_mentee_ids=sorted(u.mentee_id for u in unmatched),
        unmatched=unmatched,
        certificate=certificate,
        week_of=week_of,
    )


def _load_slots(
    matched: NDArray[np.int64], chosen: NDArray[np.int64], scores: NDArray[np.int64], enc: Encoded
) -> NDArray[np.int64]:
    """Which place of its mentor each pair takes: the best-scoring mentee the cheapest."""
    order = np.lexsort((matched, -scores, chosen))
    slot = np.empty(len(matched), dtype=np.int64)
    rank = np.zeros(len(enc.free), dtype=np.int64)
    for x in order:
        j = chosen[x]
        slot[x] = enc.load[j] + rank[j]
        rank[j] += 1
    return slot


@numba.njit(cache=True)
def _runner_ups(start, heads, scores, assigned, k):  # type: ignore[no-untyped-def]
    """Per mentee, the k best other mentors of its candidate arcs (score desc, then index)."""
    n = len(start) - 1
    out_h = np.full((n, k), -1, dtype=np.int64)
    out_s = np.zeros((n, k), dtype=np.int64)
    for i in range(n):
        count = 0
        for a in range(start[i], start[i + 1]):
            h, sc = heads[a], scores[a]
            if h == assigned[i]:
                continue
            pos = count if count < k else k
            while pos > 0 and (
                out_s[i, pos - 1] < sc or (out_s[i, pos - 1] == sc and out_h[i, pos - 1] > h)
            ):
                if pos < k:
                    out_h[i, pos] = out_h[i, pos - 1]
                    out_s[i, pos] = out_s[i, pos - 1]
                pos -= 1
            if pos < k:
                out_h[i, pos] = h
                out_s[i, pos] = sc
                if count < k:
                    count += 1
    return out_h, out_s


@functools.lru_cache(maxsize=65536)
def _offered_names(skills: frozenset[str]) -> frozenset[str]:
    return frozenset(parse_skill(s, 3)[0] for s in skills)


@functools.lru_cache(maxsize=65536)
def _sought_names(skills: frozenset[str]) -> tuple[str, ...]:
    return tuple(parse_skill(s, 0)[0] for s in skills)


def _topics(sought: frozenset[str], goals: frozenset[str], offered: frozenset[str]) -> list[str]:
    """The reasons about skills and goals (the sought ones the mentor offers)."""
    names = _offered_names(offered)
    skills = sorted(n for n in _sought_names(sought) if n in names)
    met = sorted(g for g in goals if g.lower() in names)
    out = []
    if skills:
        out.append("skills: " + ", ".join(skills))
    if met:
        out.append("goals: " + ", ".join(met))
    return out


def _why_unmatched(
    i: int, enc: Encoded, spoken: set[str], mentees: Sequence[Profile], rules: Rules
) -> str:
    mentee = mentees[i]
    speaks = set(mentee.languages)
    if not speaks & spoken:
        return f"no mentor shares a language ({', '.join(mentee.languages)})"
    e, m, t = enc.mentees, enc.mentors, enc.tables
    shares = (m[1] & e[1][i]) != 0
    if not shares.any():
        return "capacity: every mentor who shares a language is full"
    fits = shares & t[0][e[0][i], m[0]]
    if not fits.any():
        return (
            f"no shared time: no mentor who shares a language works {rules.min_weekly_minutes} "
            f"min a week at the same time, with one unbroken {rules.min_stretch_minutes}-min "
            "stretch"
        )
    allowed = int(_count_allowed(i, np.flatnonzero(fits).astype(np.int64), e, m, t, enc.weights))
    if not allowed:
        return (
            "every mentor who fits is ruled out (reporting line, same department, an avoid list "
            "or a pair that ended)"
        )
    return f"capacity: the {allowed} mentor(s) who fit are full with mentees they fit better"


@numba.njit(cache=True)
def _count_allowed(i, candidates, e, m, t, w):  # type: ignore[no-untyped-def]
    """How many of the candidate mentors no hard constraint rules out for mentee i."""
    scratch = np.zeros(6, dtype=np.int64)
    count = 0
    for j in candidates:
        if pricing.components(i, j, e, m, t, w, scratch):
            count += 1
    return count
