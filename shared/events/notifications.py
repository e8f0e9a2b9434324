"""What notifications reports about the mail it sent."""

from __future__ import annotations

import uuid

from pydantic import Field

from shared.events.envelope import (
    Channel,
    Event,
    Id,
)


class NotificationSent(Event):
    subject = "mentorship.notification.sent"

    delivery_id: Id
    recipient_id: Id
    kind: str
    channel: Channel
    source_event_id: uuid.UUID
    message_id: str


class NotificationFailed(Event):
    subject = "mentorship.notification.failed"

    delivery_id: Id
    recipient_id: Id
    kind: str
    channel: Channel
    source_event_id: uuid.UUID
    attempts: int = Field(ge=1)
    reason: str


EVENTS: tuple[type[Event], ...] = (NotificationSent, NotificationFailed)
