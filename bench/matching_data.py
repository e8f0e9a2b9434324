"""Synthetic programs for the matching benchmark: realistic structure, reproducible from a seed.

Zones are clustered by region (the Americas, EMEA, APAC) with the regions' own languages next to
English; skills follow a Zipf popularity; mentors offer several skills at levels 3-5 and take 1-5
mentees; departments and reporting lines rule some pairs out. Two shapes:
- diverse: mentees seek a spread of skills, so best options differ;
- popular: nearly everyone seeks the few most popular skills at a high level, which only a few
  star mentors teach: everyone's best options are the same few mentors.
"""

from __future__ import annotations

import datetime as dt
import random

from services.pairing.model import Profile
from shared.worktime import Availability, Hours

REGIONS = {
    "americas": (
        [
            "America/New_York",
            "America/Chicago",
            "America/Denver",
            "America/Los_Angeles",
            "America/Sao_Paulo",
            "America/Toronto",
            "America/Mexico_City",
            "America/Bogota",
        ],
        ["es", "pt"],
        0.35,
    ),
    "emea": (
        [
            "Europe/London",
            "Europe/Berlin",
            "Europe/Paris",
            "Europe/Madrid",
            "Europe/Warsaw",
            "Africa/Lagos",
            "Africa/Johannesburg",
            "Asia/Dubai",
            "Europe/Istanbul",
        ],
        ["de", "fr", "es"],
        0.4,
    ),
    "apac": (
        [
            "Asia/Kolkata",
            "Asia/Singapore",
            "Asia/Tokyo",
            "Asia/Shanghai",
            "Australia/Sydney",
            "Asia/Manila",
            "Asia/Kathmandu",
        ],
        ["ja", "zh", "hi"],
        0.25,
    ),
}
HOURS = [(9, 17), (8, 16), (10, 18), (7, 15), (11, 19)]
SKILLS = [f"skill-{n:03}" for n in range(120)]
CHANNELS = ["email", "chat", "sms"]
DEPARTMENTS = [f"dept-{n:02}" for n in range(30)]
WEEK_OF = dt.date(2027, 3, 29)  # the week after the US and before... EU moves its clocks


def _zipf(rng: random.Random, n: int, s: float = 1.1) -> int:
    weights = _ZIPF.setdefault((n, s), [1 / (k + 1) ** s for k in range(n)])
    return rng.choices(range(n), weights=weights)[0]


_ZIPF: dict[tuple[int, float], list[float]] = {}


def _person(rng: random.Random) -> tuple[Availability, tuple[str, ...]]:
    region = rng.choices(list(REGIONS), weights=[r[2] for r in REGIONS.values()])[0]
    zones, languages, _ = REGIONS[region]
    start, end = rng.choice(HOURS)
    availability = Availability(
        rng.choice(zones), [Hours(d, dt.time(start), dt.time(end)) for d in range(5)]
    )
    local = rng.choice(languages)
    roll = rng.random()
    spoken = ("en",) if roll < 0.55 else ("en", local) if roll < 0.95 else (local,)
    return availability, spoken


def program(
    mentees: int, *, shape: str = "diverse", seed: int = 7
) -> tuple[list[Profile], list[Profile]]:
    """(mentors, mentees): a third as many mentors as mentees."""
    rng = random.Random(f"{seed}/{shape}/{mentees}")
    n_mentors = max(1, mentees // 3)
    stars = max(1, n_mentors // 50)
    mentor_list = []
    for j in range(n_mentors):
        availability, spoken = _person(rng)
        star = shape == "popular" and j < stars
        offered: set[tuple[int, int]] = set()
        while len(offered) < rng.randint(3, 6):
            skill = _zipf(rng, len(SKILLS))
            level = 5 if star else rng.randint(3, 5 if shape == "diverse" else 4)
            offered.add((skill, level))
        if star:
            offered |= {(k, 5) for k in range(4)}
        levels: dict[int, int] = {}
        for skill, level in offered:
            levels[skill] = max(level, levels.get(skill, 0))
        mentor_list.append(
            Profile(
                participant_id=f"mentor-{j}",
                availability=availability,
                languages=spoken,
                skills_offered=frozenset(f"{SKILLS[k]}:{lv}" for k, lv in levels.items()),
                capacity=rng.randint(1, 5),
                channels=frozenset(rng.sample(CHANNELS, rng.randint(1, 3))),
                seniority=rng.randint(4, 14),
                department=rng.choice(DEPARTMENTS),
            )
        )
    mentee_list = []
    for i in range(mentees):
        availability, spoken = _person(rng)
        if shape == "popular":
            sought = {rng.randrange(4) for _ in range(rng.randint(1, 3))}
            level = rng.randint(3, 4)
        else:
            sought = {_zipf(rng, len(SKILLS)) for _ in range(rng.randint(1, 3))}
            level = rng.randint(0, 3)
        goals = {SKILLS[_zipf(rng, len(SKILLS))] for _ in range(rng.randint(0, 2))}
        manager = f"mentor-{rng.randrange(n_mentors)}" if rng.random() < 0.1 else None
        mentee_list.append(
            Profile(
                participant_id=f"mentee-{i}",
                availability=availability,
                languages=spoken,
                skills_sought=frozenset(f"{SKILLS[k]}:{level}" for k in sought),
                goals=frozenset(goals),
                manager_id=manager,
                channels=frozenset(rng.sample(CHANNELS, rng.randint(1, 2))),
                seniority=rng.randint(0, 6),
                department=rng.choice(DEPARTMENTS),
            )
        )
    return mentor_list, mentee_list
