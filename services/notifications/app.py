"""notifications' wiring: what it consumes, what it emits, its sender loop."""

from __future__ import annotations

from services.notifications import store
from services.notifications.handlers import SUBSCRIPTIONS
from services.notifications.sender import run_sender
from shared.events import NotificationFailed, NotificationSent
from shared.service import ServiceDefinition


def definition() -> ServiceDefinition:
    """notifications as the service runner sees it."""
    return ServiceDefinition(
        name="notifications",
        description="Keeps contact data, queues deliveries and sends email over SMTP.",
        metadata=store.Base.metadata,
        tables=store.delivery_tables,
        subscriptions=SUBSCRIPTIONS,
        emits=[NotificationSent, NotificationFailed],
        loops=[run_sender],
    )
