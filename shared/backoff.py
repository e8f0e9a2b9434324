"""The one backoff rule: exponential from a base, capped."""

from __future__ import annotations


def backoff(attempt: int, *, base: float, cap: float) -> float:
    """Seconds to wait after the `attempt`-th failure (1-based): base, 2 x base, ... at most cap."""
    return float(min(base * 2 ** (max(attempt, 1) - 1), cap))
