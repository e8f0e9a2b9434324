"""notifications' wiring: what it consumes, what it emits, its sender loop."""

from __future__ import annotations

from services.notifications import store
from services.notifications.handlers import subscriptions
from services.notifications.sender import run_sender
from shared.events import NotificationFailed, NotificationSent
from shared.service import ServiceDefinition
from shared.settings import Settings


def definition(settings: Settings | None = None) -> ServiceDefinition:
    """notifications as the service runner sees it."""
    return ServiceDefinition(
        name="notifications",
        description="Keeps contact data, queues deliveries and sends email over SMTP.",
        metadata=store.Base.metadata,
        tables=store.delivery_tables,
        subscriptions=subscriptions(settings or Settings()),
        emits=[NotificationSent, NotificationFailed],
        loops=[run_sender],
    )
