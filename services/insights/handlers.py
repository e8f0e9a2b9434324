"""insights' event handlers: every event is counted; some also update a read model."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from services.insights import store
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
from shared.outbox import UnitOfWork


async def on_participant_registered(event: ParticipantRegistered, uow: UnitOfWork) -> None:
    """Counts the participant under its role and zone."""
    row = await uow.session.get(store.ParticipantView, (event.program_id, event.participant_id))
    if row is None:
        row = store.ParticipantView(
            program_id=event.program_id, participant_id=event.participant_id
        )
        uow.session.add(row)
    row.role, row.timezone = event.role.value, event.timezone


async def on_timezone_changed(event: ParticipantTimezoneChanged, uow: UnitOfWork) -> None:
    """Keeps the zone spread current."""
    row = await uow.session.get(store.ParticipantView, (event.program_id, event.participant_id))
    if row is not None:
        row.timezone = event.new_timezone


async def on_pair_formed(event: PairFormed, uow: UnitOfWork) -> None:
    """Records the pair."""
    if await uow.session.get(store.PairView, event.pair_id) is None:
        uow.session.add(
            store.PairView(
                pair_id=event.pair_id,
                program_id=event.program_id,
                mentor_id=event.mentor_id,
                mentee_id=event.mentee_id,
                formed_at=event.occurred_at,
            )
        )


async def on_matching_completed(event: MatchingCompleted, uow: UnitOfWork) -> None:
    """Records the round's outcome."""
    if await uow.session.get(store.RoundView, (event.program_id, event.round_id)) is None:
        uow.session.add(
            store.RoundView(
                program_id=event.program_id,
                round_id=event.round_id,
                pairs_formed=event.pairs_formed,
                unmatched_mentees=event.unmatched_mentees,
                completed_at=event.occurred_at,
            )
        )


async def on_session_scheduled(event: SessionScheduled, uow: UnitOfWork) -> None:
    """Records the planned session."""
    row = await uow.session.get(store.SessionView, event.session_id)
    if row is None:
        row = store.SessionView(
            session_id=event.session_id,
            program_id=event.program_id,
            pair_id=event.pair_id,
            kind=event.kind.value,
            start=event.start,
        )
        uow.session.add(row)
    row.start = event.start


async def _delivery(
    uow: UnitOfWork, event: NotificationSent | NotificationFailed, status: str
) -> None:
    row = await uow.session.get(store.DeliveryView, event.delivery_id)
    if row is None:
        uow.session.add(
            store.DeliveryView(
                delivery_id=event.delivery_id, program_id=event.program_id, status=status
            )
        )
    else:
        row.status = status


async def on_notification_sent(event: NotificationSent, uow: UnitOfWork) -> None:
    """Counts the email as sent."""
    await _delivery(uow, event, "sent")


async def on_notification_failed(event: NotificationFailed, uow: UnitOfWork) -> None:
    """Counts the email as failed."""
    await _delivery(uow, event, "failed")


PROJECTIONS: dict[type[Event], Callable[[Any, UnitOfWork], Awaitable[None]]] = {
    ParticipantRegistered: on_participant_registered,
    ParticipantTimezoneChanged: on_timezone_changed,
    PairFormed: on_pair_formed,
    MatchingCompleted: on_matching_completed,
    SessionScheduled: on_session_scheduled,
    NotificationSent: on_notification_sent,
    NotificationFailed: on_notification_failed,
}


Project = Callable[[Any, UnitOfWork], Awaitable[None]]


def _counting(project: Project | None) -> Project:
    """Every event is counted; those with a projection also update their read model."""

    async def handle(event: Event, uow: UnitOfWork) -> None:
        await store.count_event(uow.session, program_id=event.program_id, subject=event.subject)
        if project is not None:
            await project(event, uow)

    return handle


SUBSCRIPTIONS = [Subscription(event, _counting(PROJECTIONS.get(event))) for event in CATALOGUE]
