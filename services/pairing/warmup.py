"""Compiles the matcher ahead of the first real round.

The solver's hot loops are numba functions, compiled on first use and cached under
`__pycache__`: on a fresh install (or after the solver's code changed) the first round pays
about 40 s of compilation, later processes only load the cache (well under a second).
`python -m services.pairing.warmup` does it ahead of time (test.sh, demo.sh and the image build
call it), so nobody's first round waits for a compiler. The service also runs `warm_up` in its CPU
pool when it starts (`ServiceDefinition.cpu_warm_up`), so its first round does not wait for the
worker to start and load the cache either; a service stopped meanwhile terminates its worker
(`CpuPool.close`).
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time

from services.pairing.matching import MatchResult, propose_pairs
from services.pairing.model import Profile
from shared.worktime import Availability, Hours

log = logging.getLogger(__name__)

_ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo", "Asia/Kolkata")
_SKILLS = ("python", "go", "leadership", "design", "sql")


def _person(i: int, *, mentor: bool) -> Profile:
    zone = _ZONES[i % len(_ZONES)]
    start = 7 + i % 4
    hours = [Hours(day, dt.time(start), dt.time(start + 8)) for day in range(5)]
    skills = frozenset(f"{_SKILLS[(i + k) % len(_SKILLS)]}:{2 + k}" for k in range(2))
    return Profile(
        participant_id=f"{'mentor' if mentor else 'mentee'}-{i}",
        availability=Availability(zone, hours),
        languages=("en",),
        skills_offered=skills if mentor else frozenset(),
        skills_sought=frozenset() if mentor else skills,
        capacity=1 + i % 3 if mentor else 0,
        seniority=8 + i % 5 if mentor else i % 4,
    )


def warm_up_round() -> MatchResult:
    """A small round that reaches every compiled function.

    More mentees than places, in several zones: column generation re-prices, re-routes and
    leaves some mentees out, so every compiled path runs once.
    """
    mentors = [_person(i, mentor=True) for i in range(12)]
    mentees = [_person(i, mentor=False) for i in range(40)]
    return propose_pairs(mentors, mentees, current_load={}, week_of=dt.date(2026, 1, 5))


def warm_up() -> float:
    """Runs the warm-up round; returns the seconds it took."""
    started = time.perf_counter()
    warm_up_round()
    return time.perf_counter() - started


if __name__ == "__main__":
    sys.stdout.write("[setup] compiling the matcher (about 40 s the first time, then cached) ...\n")
    sys.stdout.flush()
    sys.stdout.write(f"[setup] matcher ready in {warm_up():.1f}s\n")
