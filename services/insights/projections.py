"""What insights' read models make of events, decided so that arrival order does not matter.

Events of one pair travel on several subjects, each consumed on its own, so insights may learn
of them in any order; the decisions here give the same view whatever that order is, which is
what lets projections rebuilt from the stream equal the live ones.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum


class DeliveryStatus(StrEnum):
    """A delivery's outcome as the overview counts it."""

    SENT = "sent"
    FAILED = "failed"


def delivery_status(current: DeliveryStatus | None, reported: DeliveryStatus) -> DeliveryStatus:
    """The status a delivery shows once `reported` arrives: sent is final, failed until then.

    An email that went out stays sent when a failure report of the same delivery arrives
    later (a replayed dead letter, a report delayed on the other subject).
    """
    if current is DeliveryStatus.SENT:
        return DeliveryStatus.SENT
    return reported


class PairState(StrEnum):
    PROPOSED = "proposed"
    FORMED = "formed"
    PAUSED = "paused"
    DECLINED = "declined"
    EXPIRED = "expired"  # a proposal not accepted in time
    ENDED = "ended"


def pair_state(
    current: PairState, current_at: dt.datetime | None, reported: PairState, at: dt.datetime
) -> PairState:
    """The state after a report: ended, declined and expired are final, otherwise the latest
    wins."""
    if current in _FINAL:
        return current
    if reported in _FINAL or current_at is None or at >= current_at:
        return reported
    return current


_FINAL = (PairState.ENDED, PairState.DECLINED, PairState.EXPIRED)


class SessionStatus(StrEnum):
    PLANNED = "planned"
    HELD = "held"
    MISSED = "missed"
    CANCELLED = "cancelled"


_OUTCOME_RANK = {
    SessionStatus.PLANNED: 0,
    SessionStatus.CANCELLED: 1,
    SessionStatus.MISSED: 2,
    SessionStatus.HELD: 3,
}


def session_status(current: SessionStatus, reported: SessionStatus) -> SessionStatus:
    """A session's outcome: held beats missed beats cancelled beats planned, in any order."""
    return reported if _OUTCOME_RANK[reported] > _OUTCOME_RANK[current] else current


class CheckinStatus(StrEnum):
    DUE = "due"
    OVERDUE = "overdue"
    SUBMITTED = "submitted"


def checkin_status(current: CheckinStatus, reported: CheckinStatus) -> CheckinStatus:
    """submitted is final; overdue replaces due."""
    if current is CheckinStatus.SUBMITTED:
        return current
    if reported is CheckinStatus.DUE:
        return current
    return reported


# a pair's overdue streak: [due instant (ISO, UTC), check-in id] of each check-in overdue and
# unanswered that is due after the pair's last answered one (`reported_due_at`)
Streak = list[list[str]]


def streak_missed(
    streak: Streak, reported_due_at: dt.datetime | None, checkin_id: str, due: dt.datetime
) -> Streak:
    """The streak once the check-in due at `due` is reported overdue (and is unanswered)."""
    if (reported_due_at is not None and due <= reported_due_at) or any(
        cid == checkin_id for _, cid in streak
    ):
        return streak
    return sorted([*streak, [due.astimezone(dt.UTC).isoformat(), checkin_id]])


def streak_answered(
    streak: Streak, reported_due_at: dt.datetime | None, checkin_id: str, due: dt.datetime
) -> tuple[Streak, dt.datetime | None]:
    """The streak and the last answered due instant once the check-in due at `due` is answered:
    the check-ins missed before it no longer count (the streak restarts after it).

    Whatever order a pair's check-in events arrive in, the streak ends as the overdue,
    unanswered check-ins due after the latest answered one.
    """
    if reported_due_at is None or due > reported_due_at:
        reported_due_at = due
    kept = [
        [at, cid]
        for at, cid in streak
        if cid != checkin_id and dt.datetime.fromisoformat(at) > reported_due_at
    ]
    return kept, reported_due_at


def later(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    """The later of two instants (None is earlier than any)."""
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def event_label(subject: str) -> str:
    """'mentorship.checkin.overdue' -> 'check-ins overdue', for people."""
    entity, _, verb = subject.removeprefix("mentorship.").partition(".")
    nouns = {"checkin": "check-ins", "matching": "matching rounds", "feedback": "feedback"}
    noun = nouns.get(entity, f"{entity}s")
    return f"{noun} {re.sub('_', ' ', verb)}"
