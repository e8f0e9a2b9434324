"""The SMTP circuit breaker: after repeated failures of the server itself, stop trying for a
while, then let one probe through (pure: the time comes in as numbers)."""

from __future__ import annotations

from dataclasses import dataclass

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


@dataclass
class Breaker:
    """closed -> (threshold failures in a row) -> open -> (cooldown) -> half-open -> one probe.

    A probe that succeeds closes it; one that fails opens it again for twice as long (at most
    max_cooldown). Each method returns a line to log when the state changed, else None.
    """

    threshold: int = 5
    cooldown: float = 2.0
    max_cooldown: float = 60.0
    state: str = CLOSED
    failures: int = 0
    opened_at: float = 0.0
    current_cooldown: float = 0.0
    last_error: str = ""

    def allows(self, now: float) -> bool:
        """Whether sending may go on (an open breaker turns half-open once its time is up)."""
        if self.state == OPEN and now >= self.opened_at + self.current_cooldown:
            self.state = HALF_OPEN
        return self.state != OPEN

    def wait(self, now: float) -> float:
        """Seconds until an open breaker lets a probe through (0 when not open)."""
        if self.state != OPEN:
            return 0.0
        return max(0.0, self.opened_at + self.current_cooldown - now)

    def succeeded(self) -> str | None:
        """The server took a message (or refused one for reasons of its own: it answers)."""
        self.failures = 0
        if self.state == CLOSED:
            return None
        self.state, self.current_cooldown = CLOSED, 0.0
        return "SMTP circuit closed: the server accepts mail again; the backlog drains"

    def failed(self, now: float, error: str) -> str | None:
        """The server did not answer, refused the connection or said 421 / 4xx about itself."""
        self.failures += 1
        self.last_error = error
        if self.state == HALF_OPEN:
            self.current_cooldown = min(self.current_cooldown * 2, self.max_cooldown)
        elif self.state == CLOSED and self.failures >= self.threshold:
            self.current_cooldown = self.cooldown
        else:
            return None
        self.state, self.opened_at = OPEN, now
        return (
            f"SMTP circuit open after {self.failures} failures in a row ({error}); sending "
            f"pauses {self.current_cooldown:.0f}s, then one probe: check the SMTP server and "
            "MENTORSHIP_SMTP_* settings"
        )

    def problem(self) -> str | None:
        """What /readyz says while the breaker is not closed."""
        if self.state == CLOSED:
            return None
        return (
            f"SMTP circuit {self.state} ({self.last_error}): mail waits and is sent when the "
            "server answers; check the SMTP server and MENTORSHIP_SMTP_* settings"
        )
