"""insights' event handlers: every event is counted; some also update a read model."""

from __future__ import annotations

from typing import Any

from services.insights import store
from services.insights.projections import DeliveryStatus, delivery_status
from shared.consumer import Subscription
from shared.events import (
    CATALOGUE,
    Event,
    MatchingCompleted,
    NotificationFailed,
    NotificationSent,
    PairFormed,
    ParticipantRegistered,
    ParticipantTimezoneChanged,
    SessionScheduled,
)
from shared.unit_of_work import UnitOfWork


async def on_any_event(event: Event, uow: UnitOfWork) -> None:
    """Counts the event under its program and subject."""
    store.count_event(uow, program_id=event.program_id, subject=event.subject)


async def on_participant_registered(event: ParticipantRegistered, uow: UnitOfWork) -> None:
    """Counts the participant under its role and zone."""
    store.register_participant(
        uow,
        program_id=event.program_id,
        participant_id=event.participant_id,
        role=event.role.value,
        timezone=event.timezone,
    )
    await on_any_event(event, uow)


async def on_timezone_changed(event: ParticipantTimezoneChanged, uow: UnitOfWork) -> None:
    """Keeps the zone spread current."""
    row = await store.participant_or_raise(
        uow.session, program_id=event.program_id, participant_id=event.participant_id
    )
    row.timezone = event.new_timezone
    await on_any_event(event, uow)


async def on_pair_formed(event: PairFormed, uow: UnitOfWork) -> None:
    """Records the pair once: a repeated pair.formed names the same pair."""
    known = await store.find_pair(uow.session, program_id=event.program_id, pair_id=event.pair_id)
    if known is None:
        store.add_pair(
            uow.session,
            program_id=event.program_id,
            pair_id=event.pair_id,
            mentor_id=event.mentor_id,
            mentee_id=event.mentee_id,
            formed_at=event.occurred_at,
        )
    await on_any_event(event, uow)


async def on_matching_completed(event: MatchingCompleted, uow: UnitOfWork) -> None:
    """Records the round's outcome."""
    await store.record_round(
        uow.session,
        program_id=event.program_id,
        round_id=event.round_id,
        pairs_formed=event.pairs_formed,
        unmatched_mentees=event.unmatched_mentees,
        completed_at=event.occurred_at,
    )
    await on_any_event(event, uow)


async def on_session_scheduled(event: SessionScheduled, uow: UnitOfWork) -> None:
    """Records the planned session; scheduling it again moves its start."""
    # a pair not seen yet may be on its way on pair.formed; one of another program is refused
    await store.find_pair(uow.session, program_id=event.program_id, pair_id=event.pair_id)
    row = await store.find_session(
        uow.session, program_id=event.program_id, session_id=event.session_id
    )
    if row is None:
        store.add_session(
            uow.session,
            program_id=event.program_id,
            session_id=event.session_id,
            pair_id=event.pair_id,
            kind=event.kind.value,
            start=event.start,
        )
    else:
        row.start = event.start
    await on_any_event(event, uow)


async def _on_delivery_reported(
    event: NotificationSent | NotificationFailed, uow: UnitOfWork, reported: DeliveryStatus
) -> None:
    """Applies one report of a delivery's outcome."""
    row = await store.find_delivery(
        uow.session, program_id=event.program_id, delivery_id=event.delivery_id
    )
    status = delivery_status(DeliveryStatus(row.status) if row else None, reported)
    if row is None:
        store.add_delivery(
            uow.session, program_id=event.program_id, delivery_id=event.delivery_id, status=status
        )
    else:
        row.status = status
    await on_any_event(event, uow)


async def on_notification_sent(event: NotificationSent, uow: UnitOfWork) -> None:
    """Counts the email as sent."""
    await _on_delivery_reported(event, uow, DeliveryStatus.SENT)


async def on_notification_failed(event: NotificationFailed, uow: UnitOfWork) -> None:
    """Counts the email as failed, unless it was sent."""
    await _on_delivery_reported(event, uow, DeliveryStatus.FAILED)


_PROJECTED: list[Subscription[Any]] = [
    Subscription(ParticipantRegistered, on_participant_registered),
    # the registration published before a zone change is applied first (another subject)
    Subscription(ParticipantTimezoneChanged, on_timezone_changed, after=(ParticipantRegistered,)),
    Subscription(PairFormed, on_pair_formed),
    Subscription(MatchingCompleted, on_matching_completed),
    Subscription(SessionScheduled, on_session_scheduled),
    Subscription(NotificationSent, on_notification_sent),
    Subscription(NotificationFailed, on_notification_failed),
]

_BY_EVENT = {subscription.event: subscription for subscription in _PROJECTED}

# one subscription per catalogue event, in catalogue order (the AsyncAPI document follows it)
SUBSCRIPTIONS: list[Subscription[Any]] = [
    _BY_EVENT.get(event) or Subscription(event, on_any_event) for event in CATALOGUE
]
