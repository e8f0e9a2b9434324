"""scheduling's wiring: what it consumes, what it emits."""

from __future__ import annotations

from services.scheduling import store
from services.scheduling.handlers import subscriptions
from shared.events import SessionScheduled
from shared.service import ServiceDefinition
from shared.settings import Settings


def definition(settings: Settings | None = None) -> ServiceDefinition:
    """scheduling as the service runner sees it."""
    return ServiceDefinition(
        name="scheduling",
        description="Plans sessions inside both people's working hours and issues invitations.",
        metadata=store.Base.metadata,
        tables=store.delivery,
        subscriptions=subscriptions(settings or Settings()),
        emits=[SessionScheduled],
    )
