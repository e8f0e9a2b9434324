"""Which deliveries a notification makes: ids, idempotency keys, Message-IDs and kinds (pure)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.headerregistry import Address

from services.notifications.messages import InvitationMail, Recipient
from shared.events import SessionScheduled

SEND = "notifications.send"  # the timer kind of a delivery's send, keyed by delivery id


@dataclass(frozen=True)
class Attendee:
    """Someone who hears about a session, as notifications knows them."""

    participant_id: str
    name: str
    email: str
    timezone: str


@dataclass(frozen=True)
class PlannedDelivery:
    """One email to one recipient, before its MIME is built."""

    delivery_id: str
    idempotency_key: str
    recipient_id: str
    recipient_email: str
    kind: str
    source_event_id: str
    message_id: str
    mail: InvitationMail


def idempotency_key(*, program_id: str, source_event_id: str, recipient_id: str) -> str:
    """One logical notification for one recipient, within one program."""
    return f"{program_id}/{source_event_id}/{recipient_id}"


def delivery_id(key: str) -> str:
    """The delivery's id, derived from its idempotency key (so from the program too)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, key))


def message_id(delivery: str, sender: Address) -> str:
    """The Message-ID of a delivery: the same on every resend."""
    return f"<{delivery}@{sender.domain or 'localhost'}>"


def sender_address(mail_from: str, display_name: str) -> Address:
    """The From address of every email."""
    local, _, domain = mail_from.partition("@")
    return Address(display_name=display_name, username=local, domain=domain)


def invitations(
    event: SessionScheduled,
    attendees: Sequence[Attendee],
    *,
    sender: Address,
    program_name: str,
    now: dt.datetime,
) -> list[PlannedDelivery]:
    """One iMIP invitation per attendee, in the attendee's own zone, naming the others."""
    planned = []
    for attendee in attendees:
        key = idempotency_key(
            program_id=event.program_id,
            source_event_id=str(event.event_id),
            recipient_id=attendee.participant_id,
        )
        delivery = delivery_id(key)
        mail_id = message_id(delivery, sender)
        mail = InvitationMail(
            sender=sender,
            recipient=Recipient(attendee.name, attendee.email, attendee.timezone),
            other_names=[a.name for a in attendees if a is not attendee],
            kind=event.kind.value,
            start=event.start,
            end=event.end,
            ical=event.ical,
            method="REQUEST",
            message_id=mail_id,
            sent_at=now,
            program_name=program_name,
        )
        planned.append(
            PlannedDelivery(
                delivery_id=delivery,
                idempotency_key=key,
                recipient_id=attendee.participant_id,
                recipient_email=attendee.email,
                kind=f"session.{event.kind.value}",
                source_event_id=str(event.event_id),
                message_id=mail_id,
                mail=mail,
            )
        )
    return planned
