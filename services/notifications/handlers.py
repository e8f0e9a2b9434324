"""notifications' event handlers: when X happens, queue who hears about it."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from email.headerregistry import Address
from typing import Any

from services.notifications import store
from services.notifications.messages import InvitationMail, Recipient, compose_invitation
from shared.consumer import Subscription, UnknownReference
from shared.events import ParticipantRegistered, ParticipantTimezoneChanged, SessionScheduled
from shared.outbox import UnitOfWork
from shared.settings import Settings
from shared.telemetry import current_traceparent


async def on_participant_registered(event: ParticipantRegistered, uow: UnitOfWork) -> None:
    """Keeps how to reach the person (a re-registration replaces it)."""
    contact = await store.get_contact(
        uow.session, program_id=event.program_id, participant_id=event.participant_id
    )
    if contact is None:
        contact = store.Contact(program_id=event.program_id, participant_id=event.participant_id)
        uow.session.add(contact)
    contact.email = str(event.email)
    contact.display_name = event.display_name
    contact.timezone = event.timezone


async def on_timezone_changed(event: ParticipantTimezoneChanged, uow: UnitOfWork) -> None:
    """Times in mail are shown in the person's new zone."""
    contact = await _contact(uow, event.program_id, event.participant_id)
    contact.timezone = event.new_timezone


async def _contact(uow: UnitOfWork, program_id: str, participant_id: str) -> store.Contact:
    contact = await store.get_contact(
        uow.session, program_id=program_id, participant_id=participant_id
    )
    if contact is None:
        raise UnknownReference(
            f"participant {participant_id!r} of program {program_id!r} has no contact data; "
            "publish participant.registered first"
        )
    return contact


def sender_address(settings: Settings) -> Address:
    """The From address of every email."""
    local, _, domain = settings.mail_from.partition("@")
    return Address(display_name=settings.mail_from_name, username=local, domain=domain)


def make_on_session_scheduled(
    settings: Settings,
) -> Callable[[SessionScheduled, UnitOfWork], Awaitable[None]]:
    """The session.scheduled handler, with the sender's settings."""
    sender = sender_address(settings)

    async def on_session_scheduled(event: SessionScheduled, uow: UnitOfWork) -> None:
        """Queues one iMIP invitation per attendee, each in the attendee's own time zone."""
        contacts = [await _contact(uow, event.program_id, pid) for pid in event.attendee_ids]
        for contact in contacts:
            key = f"{event.event_id}:{contact.participant_id}"
            if await store.delivery_exists(uow.session, idempotency_key=key):
                continue
            delivery_id = str(uuid.uuid5(uuid.NAMESPACE_URL, key))
            message_id = f"<{delivery_id}@{sender.domain or 'localhost'}>"
            mail = compose_invitation(
                InvitationMail(
                    sender=sender,
                    recipient=Recipient(contact.display_name, contact.email, contact.timezone),
                    other_names=[c.display_name for c in contacts if c is not contact],
                    kind=event.kind.value,
                    start=event.start,
                    end=event.end,
                    ical=event.ical,
                    method="REQUEST",
                    message_id=message_id,
                    sent_at=uow.clock.now(),
                    program_name=settings.mail_from_name,
                )
            )
            uow.session.add(
                store.Delivery(
                    delivery_id=delivery_id,
                    idempotency_key=key,
                    program_id=event.program_id,
                    recipient_id=contact.participant_id,
                    recipient_email=contact.email,
                    kind=f"session.{event.kind.value}",
                    source_event_id=str(event.event_id),
                    message_id=message_id,
                    message=mail.as_bytes(),
                    status="pending",
                    attempts=0,
                    next_attempt_at=uow.clock.now(),
                    traceparent=current_traceparent(),
                )
            )

    return on_session_scheduled


def subscriptions(settings: Settings) -> list[Subscription[Any]]:
    """What notifications reacts to."""
    return [
        Subscription(ParticipantRegistered, on_participant_registered),
        Subscription(
            ParticipantTimezoneChanged, on_timezone_changed, after=(ParticipantRegistered,)
        ),
        Subscription(
            SessionScheduled,
            make_on_session_scheduled(settings),
            after=(ParticipantRegistered, ParticipantTimezoneChanged),
        ),
    ]
