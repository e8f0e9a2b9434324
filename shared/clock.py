"""One injectable clock, so that time-based behaviour is testable."""

from __future__ import annotations

import datetime as dt
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current instant, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        """The current instant from the operating system."""
        return dt.datetime.now(dt.UTC)


class FixedClock:
    """A clock that only moves when told to (tests, simulations)."""

    def __init__(self, at: dt.datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self._at = at.astimezone(dt.UTC)

    def now(self) -> dt.datetime:
        """The instant the clock was set to."""
        return self._at

    def advance(self, delta: dt.timedelta) -> None:
        """Moves the clock forward."""
        self._at += delta
