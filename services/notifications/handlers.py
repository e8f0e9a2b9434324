"""notifications' event handlers: when X happens, queue who hears about it."""

from __future__ import annotations

from typing import Any

from services.notifications import deliveries, store
from services.notifications.messages import compose_invitations
from shared.consumer import Subscription
from shared.events import ParticipantRegistered, ParticipantTimezoneChanged, SessionScheduled
from shared.telemetry import current_traceparent
from shared.timers import schedule
from shared.unit_of_work import UnitOfWork


async def on_participant_registered(event: ParticipantRegistered, uow: UnitOfWork) -> None:
    """Keeps how to reach the person (a re-registration replaces it)."""
    # on the hot path of a cohort import: one insert-or-update for the whole batch
    uow.upsert(
        store.Contact,
        {
            "program_id": event.program_id,
            "participant_id": event.participant_id,
            "email": str(event.email),
            "display_name": event.display_name,
            "timezone": event.timezone,
        },
    )


async def on_timezone_changed(event: ParticipantTimezoneChanged, uow: UnitOfWork) -> None:
    """Times in mail are shown in the person's new zone."""
    contact = await store.contact_or_raise(
        uow.session, program_id=event.program_id, participant_id=event.participant_id
    )
    contact.timezone = event.new_timezone


async def on_session_scheduled(event: SessionScheduled, uow: UnitOfWork) -> None:
    """Queues one iMIP invitation per attendee, each in the attendee's own time zone."""
    contacts = await store.contacts_or_raise(
        uow.session, program_id=event.program_id, participant_ids=event.attendee_ids
    )
    settings, now = uow.settings, uow.clock.now()
    planned = deliveries.invitations(
        event,
        [contact.attendee() for contact in contacts],
        sender=deliveries.sender_address(settings.mail_from, settings.mail_from_name),
        program_name=settings.mail_from_name,
        now=now,
    )
    queued = await store.queued_keys(uow.session, keys=[p.idempotency_key for p in planned])
    planned = [p for p in planned if p.idempotency_key not in queued]
    if not planned:
        return  # every attendee has this invitation already
    messages = await uow.cpu.run(compose_invitations, [p.mail for p in planned])
    for plan, message in zip(planned, messages, strict=True):
        store.add_delivery(
            uow.session,
            program_id=event.program_id,
            planned=plan,
            message=message,
            traceparent=current_traceparent(),
        )
        await schedule(
            uow.session,
            store.timers,
            program_id=event.program_id,
            kind=deliveries.SEND,
            key=plan.delivery_id,
            due_at=now,
        )


SUBSCRIPTIONS: list[Subscription[Any]] = [
    Subscription(ParticipantRegistered, on_participant_registered),
    Subscription(ParticipantTimezoneChanged, on_timezone_changed, after=(ParticipantRegistered,)),
    Subscription(
        SessionScheduled,
        on_session_scheduled,
        after=(ParticipantRegistered, ParticipantTimezoneChanged),
    ),
]
