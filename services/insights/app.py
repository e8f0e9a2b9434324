"""insights' wiring: it consumes every event and serves the coordinators' API."""

from __future__ import annotations

from services.insights import api, store
from services.insights.handlers import SUBSCRIPTIONS
from shared.service import ServiceDefinition
from shared.settings import Settings


def definition(settings: Settings | None = None) -> ServiceDefinition:
    """insights as the service runner sees it."""
    return ServiceDefinition(
        name="insights",
        description="Projects every event into read models and serves the coordinators' API.",
        metadata=store.Base.metadata,
        tables=store.delivery,
        subscriptions=SUBSCRIPTIONS,
        emits=[],
        routers=[api.router],
    )
