"""Quiet hours in the recipient's zone: when non-urgent mail may go (pure)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

# urgent: about a calendar entry (invitations, same-day changes, cancellations, reminders)
URGENT_PREFIX = "session."
NOT_URGENT = frozenset({"session.missed"})


def is_urgent(kind: str) -> bool:
    """Whether a kind of mail goes at once, whatever the recipient's local time."""
    return kind.startswith(URGENT_PREFIX) and kind not in NOT_URGENT


@dataclass(frozen=True)
class QuietHours:
    """Local times mail waits through: from `start` to `end` (over midnight), and weekends."""

    start: dt.time = dt.time(20, 0)
    end: dt.time = dt.time(8, 0)
    weekends: bool = True

    @classmethod
    def parse(cls, window: str, *, weekends: bool = True) -> QuietHours:
        """'20:00-08:00' (empty: no quiet hours but the weekends, if those are on)."""
        if not window.strip():
            return cls(dt.time(0, 0), dt.time(0, 0), weekends)
        start, _, end = window.partition("-")
        return cls(
            dt.time.fromisoformat(start.strip()), dt.time.fromisoformat(end.strip()), weekends
        )

    def _quiet_time(self, t: dt.time) -> bool:
        if self.start == self.end:
            return False
        if self.start > self.end:  # over midnight
            return t >= self.start or t < self.end
        return self.start <= t < self.end

    def allowed(self, local: dt.datetime) -> bool:
        """Whether mail may go at this local time."""
        if self.weekends and local.weekday() >= 5:
            return False
        return not self._quiet_time(local.time())

    def next_allowed(self, now: dt.datetime, timezone: str) -> dt.datetime:
        """`now` when mail may go now, else the next local `end` on an allowed day (UTC)."""
        zone = ZoneInfo(timezone)
        local = now.astimezone(zone)
        if self.allowed(local):
            return now
        day = local.date()
        if self._quiet_time(local.time()) and self.start > self.end and local.time() >= self.start:
            day += dt.timedelta(days=1)  # the evening: tomorrow morning
        for _ in range(8):
            candidate = dt.datetime.combine(day, self.end, tzinfo=zone)
            # a wall time inside a DST gap does not exist: the zone moves it past the gap
            candidate = candidate.astimezone(dt.UTC).astimezone(zone)
            if candidate > local and self.allowed(candidate):
                return candidate.astimezone(dt.UTC)
            day += dt.timedelta(days=1)
        return now  # no allowed time in a week (a misconfiguration): do not hold mail forever
