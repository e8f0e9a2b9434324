"""What insights' read models make of events, decided so that arrival order does not matter.

notification.sent and notification.failed travel on two subjects, each consumed on its own, so
insights may learn of a delivery's outcomes in any order; the decisions here give the same view
whatever that order is.
"""

from __future__ import annotations

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
