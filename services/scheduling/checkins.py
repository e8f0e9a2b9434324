"""Check-ins and what follows a session: ids, cadence, the escalation ladder, attendance.

Pure decisions; `followups` runs them from durable timers and stores the outcome.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

CHECKINS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:mentorship:scheduling:checkins")
LEVELS = (1, 2, 3)  # 1 nudge the mentee, 2 include the mentor, 3 tell the coordinator


def checkin_id(program_id: str, pair_id: str, number: int) -> str:
    """The id of a pair's n-th check-in, the same on every replica."""
    return str(uuid.uuid5(CHECKINS, json.dumps([program_id, pair_id, number])))


def cadence_days(charter_cadence_days: int | None) -> int:
    """Check-ins are weekly for pairs meeting weekly or more often, else every two weeks."""
    return 7 if charter_cadence_days is not None and charter_cadence_days <= 7 else 14


def escalation_hours(
    program_id: str, default: str, by_program: Mapping[str, str]
) -> tuple[float, float, float]:
    """Hours after the due time at which levels 1, 2 and 3 are reached, for one program."""
    raw = by_program.get(program_id, default)
    try:
        hours = tuple(float(h) for h in raw.split(","))
    except ValueError as exc:
        raise ValueError(
            f"check-in escalation {raw!r} for {program_id!r} is not three numbers of hours "
            "like '48,96,168': fix MENTORSHIP_CHECKIN_ESCALATION_HOURS or _BY_PROGRAM"
        ) from exc
    if len(hours) != 3 or list(hours) != sorted(hours) or hours[0] <= 0:
        raise ValueError(
            f"check-in escalation {raw!r} for {program_id!r} needs three increasing positive "
            "hours like '48,96,168'"
        )
    return hours[0], hours[1], hours[2]


def escalation_at(due_at: dt.datetime, level: int, hours: Sequence[float]) -> dt.datetime:
    """When a check-in due at `due_at` reaches `level` if no report came."""
    return due_at + dt.timedelta(hours=hours[level - 1])


@dataclass(frozen=True)
class Attendance:
    """Who was there, as far as anyone confirmed."""

    present: tuple[str, ...]
    absent: tuple[str, ...]

    @property
    def held(self) -> bool:
        """A session is held when at least two people were there (never by default)."""
        return len(self.present) >= 2


def attendance(invited: Sequence[str], reported_present: Sequence[str]) -> Attendance:
    """The attendance a confirmation reports (people not invited are ignored)."""
    present = tuple(p for p in invited if p in set(reported_present))
    return Attendance(present, tuple(p for p in invited if p not in present))
