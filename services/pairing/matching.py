"""Who mentors whom: a simple, correct capacity-aware rule (the optimiser comes later).

Hard constraints: the mentor has capacity left, both share a language, neither is the other's
manager, and in the week matching runs they share working time that includes at least one
unbroken hour (what a kickoff needs).
Among feasible mentors the mentee gets the one with most sought skills offered, then the most
shared working time, then the most free capacity. Most-constrained mentees choose first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from shared.worktime import Availability, shared_working_time

MIN_WEEKLY_OVERLAP_MINUTES = 60
MIN_SHARED_STRETCH_MINUTES = 60  # a kickoff needs one unbroken hour both people work


@dataclass(frozen=True)
class Profile:
    """What matching needs to know about one participant."""

    participant_id: str
    availability: Availability
    languages: tuple[str, ...]
    skills_offered: frozenset[str] = frozenset()
    skills_sought: frozenset[str] = frozenset()
    manager_id: str | None = None
    capacity: int = 0


@dataclass(frozen=True)
class Proposal:
    mentor_id: str
    mentee_id: str
    language: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class MatchResult:
    pairs: list[Proposal] = field(default_factory=list)
    unmatched_mentee_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Fit:
    mentor: Profile
    language: str
    skills: frozenset[str]
    overlap_minutes: int


def _fit(mentor: Profile, mentee: Profile, week_of: dt.date) -> _Fit | None:
    language = next((lang for lang in mentee.languages if lang in mentor.languages), None)
    if language is None:
        return None
    if mentee.manager_id == mentor.participant_id or mentor.manager_id == mentee.participant_id:
        return None
    shared = shared_working_time(mentor.availability, mentee.availability, from_day=week_of, days=7)
    overlap = sum(stretch.minutes for stretch in shared)
    longest = max((stretch.minutes for stretch in shared), default=0)
    if overlap < MIN_WEEKLY_OVERLAP_MINUTES or longest < MIN_SHARED_STRETCH_MINUTES:
        return None
    return _Fit(mentor, language, mentee.skills_sought & mentor.skills_offered, overlap)


def propose_pairs(
    mentors: Sequence[Profile],
    mentees: Sequence[Profile],
    *,
    current_load: Mapping[str, int],
    week_of: dt.date,
) -> MatchResult:
    """Pairs mentees with mentors under the hard constraints; deterministic for the same input."""
    free = {m.participant_id: m.capacity - current_load.get(m.participant_id, 0) for m in mentors}
    fits = {
        mentee.participant_id: [f for m in mentors if (f := _fit(m, mentee, week_of)) is not None]
        for mentee in mentees
    }
    order = sorted(mentees, key=lambda p: (len(fits[p.participant_id]), p.participant_id))
    result = MatchResult()
    for mentee in order:
        open_fits = [f for f in fits[mentee.participant_id] if free[f.mentor.participant_id] > 0]
        if not open_fits:
            result.unmatched_mentee_ids.append(mentee.participant_id)
            continue
        best = min(
            open_fits,
            key=lambda f: (
                -len(f.skills),
                -f.overlap_minutes,
                -free[f.mentor.participant_id],
                f.mentor.participant_id,
            ),
        )
        free[best.mentor.participant_id] -= 1
        reasons = [f"shared language: {best.language}"]
        if best.skills:
            reasons.append("skills: " + ", ".join(sorted(best.skills)))
        reasons.append(f"weekly shared working time: {best.overlap_minutes / 60:.1f} h")
        result.pairs.append(
            Proposal(
                best.mentor.participant_id, mentee.participant_id, best.language, tuple(reasons)
            )
        )
    result.unmatched_mentee_ids.sort()
    return result
