"""scheduling's wiring: what it consumes, what it emits."""

from __future__ import annotations

from services.scheduling import api, followups, pauses, store
from services.scheduling.handlers import SUBSCRIPTIONS
from shared.events import (
    CheckinDue,
    CheckinOverdue,
    CheckinSubmitted,
    SessionCancelled,
    SessionHeld,
    SessionMissed,
    SessionRescheduled,
    SessionScheduled,
    SessionUnschedulable,
)
from shared.service import ServiceDefinition
from shared.timers import timer_loop


def definition() -> ServiceDefinition:
    """scheduling as the service runner sees it."""
    return ServiceDefinition(
        name="scheduling",
        description=(
            "Plans kickoffs and recurring series inside both people's working hours, re-plans "
            "them when zones, absences or answers change, and issues iTIP invitations."
        ),
        metadata=store.Base.metadata,
        tables=store.delivery,
        subscriptions=SUBSCRIPTIONS,
        emits=[
            SessionScheduled,
            SessionRescheduled,
            SessionCancelled,
            SessionUnschedulable,
            SessionHeld,
            SessionMissed,
            CheckinDue,
            CheckinSubmitted,
            CheckinOverdue,
        ],
        routers=[api.router],
        loops=[timer_loop(store.timers, followups.HANDLERS | pauses.HANDLERS)],
    )
