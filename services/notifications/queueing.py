"""Storing deliveries: compose the mails not queued yet, store each with its send due now (or
failed with the reason when its address cannot be written); the link signer."""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path

from services.notifications import quiet, store
from services.notifications.deliveries import PlannedDelivery
from services.notifications.messages import compose_invitations
from shared.events import NotificationFailed
from shared.events.envelope import Channel
from shared.links import LinkSigner, link_signer
from shared.settings import Settings
from shared.telemetry import current_traceparent
from shared.unit_of_work import UnitOfWork

INLINE_MAILS = 4  # up to this many mails per event are composed without the CPU pool


@functools.lru_cache(maxsize=4)
def _cached_signer(data_dir: str, secret: str | None) -> LinkSigner:
    return link_signer(Settings(data_dir=Path(data_dir), link_secret=secret))


def signer_for(settings: Settings) -> LinkSigner:
    """The link signer, read once per secret (not per event)."""
    secret = settings.link_secret.get_secret_value() if settings.link_secret else None
    return _cached_signer(str(settings.data_dir), secret)


async def queue_all(program_id: str, planned: list[PlannedDelivery], uow: UnitOfWork) -> None:
    """Composes and stores the deliveries not queued already (a redelivery queues nothing)."""
    queued = await store.queued_keys(uow.session, keys=[p.idempotency_key for p in planned])
    planned = [p for p in planned if p.idempotency_key not in queued]
    if not planned:
        return  # every attendee has this email already
    mails = [p.mail for p in planned]
    # ~0.5 ms a mail: a session's few are cheaper composed here than sent to the CPU pool and
    # back (a round trip costs more on a busy machine); larger sets go to the pool
    if len(mails) <= INLINE_MAILS:
        composed = compose_invitations(mails)
    else:
        composed = await uow.cpu.run(compose_invitations, mails)
    for plan, message in zip(planned, composed, strict=True):
        await _queue(program_id, plan, message, uow)


async def _queue(
    program_id: str, plan: PlannedDelivery, message: bytes | str, uow: UnitOfWork
) -> None:
    """Stores the delivery with its send due now, or, when it cannot be built, fails it."""
    now = uow.clock.now()
    if isinstance(message, str):  # the address cannot be written: the others still go
        row = store.add_delivery(
            uow.session,
            program_id=program_id,
            planned=plan,
            message=b"",
            traceparent=current_traceparent(),
            status="failed",
            error=message,
        )
        uow.emit(
            NotificationFailed(
                program_id=program_id,
                delivery_id=row.delivery_id,
                recipient_id=row.recipient_id,
                kind=row.kind,
                channel=Channel.EMAIL,
                source_event_id=row.source_event_id,
                occurred_at=now,
                attempts=1,
                reason=message,
            )
        )
        return
    # a batch of events writes its deliveries and timers in one statement per table
    uow.upsert(
        store.Delivery,
        store.delivery_row(
            program_id=program_id,
            planned=plan,
            message=message,
            traceparent=current_traceparent(),
        ),
    )
    uow.upsert(
        store.timers,
        store.send_timer_row(
            program_id=program_id, delivery_id=plan.delivery_id, due_at=send_at(plan, uow)
        ),
    )


@functools.lru_cache(maxsize=8)
def _quiet(window: str, weekends: bool) -> quiet.QuietHours:
    return quiet.QuietHours.parse(window, weekends=weekends)


def send_at(plan: PlannedDelivery, uow: UnitOfWork) -> dt.datetime:
    """Now for urgent kinds; otherwise the next time outside the recipient's quiet hours."""
    now = uow.clock.now()
    if quiet.is_urgent(plan.kind):
        return now
    hours = _quiet(uow.settings.quiet_hours, uow.settings.quiet_weekends)
    return hours.next_allowed(now, plan.mail.recipient.timezone)
