"""Whether a planned occurrence still works after something changed, and where it goes if not.

Pure decisions for contingencies (a zone change, a decline, an absence that ended): keep the
occurrence, move it (a series occurrence within its week, as a RECURRENCE-ID override; a single
session to the next slot both can make), or report it impossible with the reason.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from services.scheduling import series
from services.scheduling.planning import NoSlot, Planner, Rules, Slot, find_slot, fits
from shared.worktime import Interval


@dataclass(frozen=True)
class Keep:
    """Both can still make it."""


@dataclass(frozen=True)
class Move:
    """It moves to `slot`; `reason` says why, for the update both people get."""

    slot: Slot
    reason: str


@dataclass(frozen=True)
class Impossible:
    """No time both can make: it is cancelled, and the reason reported."""

    reason: str


Decision = Keep | Move | Impossible


def recheck(
    mentor: Planner,
    mentee: Planner,
    *,
    start: dt.datetime,
    minutes: int,
    recurrence_id: dt.datetime | None,
    rules: Rules,
    not_before: dt.datetime,
    avoid: Sequence[Interval] = (),
    force: bool = False,
) -> Decision:
    """Keep, move or give up one occurrence (`force`: it must move, e.g. it was declined).

    Busy time must not include the occurrence itself.
    """
    at = Interval(start, start + dt.timedelta(minutes=minutes))
    if not force and fits(mentor, mentee, at, rules=rules, not_before=not_before) is None:
        return Keep()
    if recurrence_id is not None:
        placed = series.place(
            mentor,
            mentee,
            recurrence_id,
            minutes=minutes,
            rules=rules,
            not_before=not_before,
            avoid=[*avoid, at] if force else avoid,
        )
        if placed.slot is None:
            return Impossible(placed.reason or "no slot that week")
        if placed.slot.interval == at:
            return Keep()
        return Move(placed.slot, placed.reason or "moved")
    problem = "declined" if force else fits(mentor, mentee, at, rules=rules, not_before=not_before)
    found = find_slot(
        mentor,
        mentee,
        minutes=minutes,
        not_before=not_before,
        until=not_before + rules.horizon,
        rules=rules,
        avoid=[*avoid, at] if force else avoid,
    )
    if isinstance(found, NoSlot):
        return Impossible(f"{problem}, and {found.reason}")
    return Move(found, f"moved: the planned time is {problem}")
