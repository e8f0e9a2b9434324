"""scheduling's wiring: what it consumes, what it emits."""

from __future__ import annotations

from services.scheduling import store
from services.scheduling.handlers import SUBSCRIPTIONS
from shared.events import SessionScheduled
from shared.service import ServiceDefinition


def definition() -> ServiceDefinition:
    """scheduling as the service runner sees it."""
    return ServiceDefinition(
        name="scheduling",
        description="Plans sessions inside both people's working hours and issues invitations.",
        metadata=store.Base.metadata,
        tables=store.delivery,
        subscriptions=SUBSCRIPTIONS,
        emits=[SessionScheduled],
    )
