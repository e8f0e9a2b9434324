"""What insights concludes about a program and tells the others."""

from __future__ import annotations

from pydantic import Field

from shared.events.envelope import Event, Id


class PairAtRisk(Event):
    subject = "mentorship.pair.at_risk"

    pair_id: Id
    reasons: list[str] = Field(min_length=1)
    score: float


EVENTS: tuple[type[Event], ...] = (PairAtRisk,)
