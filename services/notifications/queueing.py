"""Storing deliveries: compose the mails not queued yet, store each with its send due now (or
failed with the reason when its address cannot be written); the link signer."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import weakref
from pathlib import Path

from services.notifications import preferences, quiet, store
from services.notifications.deliveries import SEND, PlannedDelivery
from services.notifications.messages import NoticeMail, compose_invitations
from shared.cpu import CpuPool
from shared.events import NotificationFailed
from shared.events.envelope import Channel
from shared.links import LinkSigner, link_signer
from shared.settings import Settings
from shared.telemetry import current_traceparent
from shared.unit_of_work import UnitOfWork

INLINE_MAILS = 4  # up to this many mails a unit of work composes without the CPU pool


@functools.lru_cache(maxsize=4)
def _cached_signer(data_dir: str, secret: str | None) -> LinkSigner:
    return link_signer(Settings(data_dir=Path(data_dir), link_secret=secret))


def signer_for(settings: Settings) -> LinkSigner:
    """The link signer, read once per secret (not per event)."""
    secret = settings.link_secret.get_secret_value() if settings.link_secret else None
    return _cached_signer(str(settings.data_dir), secret)


async def queue_all(program_id: str, planned: list[PlannedDelivery], uow: UnitOfWork) -> None:
    """Composes and stores the deliveries not queued already (a redelivery queues nothing).

    The mails are composed in the CPU pool in chunks while the batch's other events are
    handled (`Composer`), and stored at the end of the unit of work (`compose_queued`): a batch
    of session.scheduled does not wait for its mails one call at a time, nor for all at once.
    """
    queued = await _queued(program_id, planned, uow)
    planned = [p for p in planned if p.idempotency_key not in queued]
    if any(not preferences.is_essential(p.kind) for p in planned):
        planned = await _respect(program_id, planned, uow)
    if not planned:
        return  # every attendee has this email already (or it waits, or was refused)
    composer = _COMPOSERS.get(uow)
    if composer is None:
        composer = _COMPOSERS[uow] = Composer(uow.cpu)
    traceparent = current_traceparent()  # the trace of the event that asked for these mails
    composer.add([(program_id, plan, traceparent) for plan in planned])
    uow.at_end(COMPOSE, lambda: compose_queued(uow))


_Waiting = tuple[str, PlannedDelivery, str | None]


class Composer:
    """A unit of work's mails: every CHUNK of them goes to the CPU pool at once, composed there
    while the loop handles the batch's next events; `results` waits for them all, in order."""

    def __init__(self, cpu: CpuPool) -> None:
        self._cpu = cpu
        self._waiting: list[_Waiting] = []
        self._started: list[tuple[list[_Waiting], asyncio.Future[list[bytes | str]]]] = []

    def add(self, entries: list[_Waiting]) -> None:
        self._waiting += entries
        if len(self._waiting) >= CHUNK:
            self._start()

    def _start(self) -> None:
        entries, self._waiting = self._waiting, []
        future = self._cpu.start(compose_invitations, [plan.mail for _, plan, _ in entries])
        # a batch that fails before its end leaves the result unread: not an error to log
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._started.append((entries, future))

    async def results(self) -> list[tuple[_Waiting, bytes | str]]:
        """Each queued mail with its bytes, or why it cannot be built."""
        out: list[tuple[_Waiting, bytes | str]] = []
        # ~0.3 ms a mail: a lone session's few are cheaper composed here than sent to the CPU
        # pool and back (the round trip costs more on a busy machine)
        if not self._started and len(self._waiting) <= INLINE_MAILS:
            entries, self._waiting = self._waiting, []
            return list(
                zip(entries, compose_invitations([p.mail for _, p, _ in entries]), strict=True)
            )
        if self._waiting:
            self._start()
        for entries, future in self._started:
            out += zip(entries, await future, strict=True)
        self._started = []
        return out


# per unit of work: the deliveries queued so far, composed while it runs, stored at its end
_COMPOSERS: weakref.WeakKeyDictionary[UnitOfWork, Composer] = weakref.WeakKeyDictionary()
COMPOSE = "notifications.compose"
CHUNK = 96  # mails per call to the CPU pool: each call wakes the pool's threads, which take the GIL


async def compose_queued(uow: UnitOfWork) -> None:
    """Stores every delivery the unit of work queued with its composed bytes (or fails it)."""
    composer = _COMPOSERS.pop(uow, None)
    if composer is None:
        return
    for (program_id, plan, traceparent), message in await composer.results():
        await _queue(program_id, plan, message, uow, traceparent)


async def _queued(program_id: str, planned: list[PlannedDelivery], uow: UnitOfWork) -> set[str]:
    """The idempotency keys already queued: from the batch's preload when the subscription
    loaded these deliveries (session mails), else one query."""
    seen = [uow.peek(store.Delivery, (program_id, p.delivery_id)) for p in planned]
    if all(known for known, _ in seen):
        return {p.idempotency_key for p, (_, row) in zip(planned, seen, strict=True) if row}
    return await store.queued_keys(uow.session, keys=[p.idempotency_key for p in planned])


async def _queue(
    program_id: str,
    plan: PlannedDelivery,
    message: bytes | str,
    uow: UnitOfWork,
    traceparent: str | None,
) -> None:
    """Stores the delivery with its send due now, or, when it cannot be built, fails it."""
    now = uow.clock.now()
    if isinstance(message, str):  # the address cannot be written: the others still go
        row = store.add_delivery(
            uow.session,
            program_id=program_id,
            planned=plan,
            message=b"",
            traceparent=traceparent,
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
            traceparent=traceparent,
        ),
    )
    due = send_at(plan, uow)
    uow.upsert(
        store.timers,
        store.send_timer_row(program_id=program_id, delivery_id=plan.delivery_id, due_at=due),
    )
    if due <= uow.clock.now():  # the sender takes it once this commits, not at its next poll
        uow.wake(SEND)


# per unit of work (a batch of events): cap counts it queued, not yet written
_BATCH_COUNTS: weakref.WeakKeyDictionary[UnitOfWork, dict[tuple[str, str, str], int]] = (
    weakref.WeakKeyDictionary()
)


async def _respect(
    program_id: str, planned: list[PlannedDelivery], uow: UnitOfWork
) -> list[PlannedDelivery]:
    """What goes now of these: non-essential mail a recipient unsubscribed from is recorded as
    not sent (status unsubscribed, with the reason); low-urgency mail waits for the recipient's
    digest when they chose one or their daily cap is reached; the rest goes (and counts)."""
    session, settings = uow.session, uow.settings
    optional = [p for p in planned if not preferences.is_essential(p.kind)]
    held = await store.held_keys(session, keys=[p.idempotency_key for p in optional])
    people = {p.recipient_id for p in optional}
    refused = await store.refused_kinds(session, program_id=program_id, participant_ids=people)
    chosen = await store.choices(session, program_id=program_id, participant_ids=people)
    now = uow.clock.now()
    days = {
        p.delivery_id: preferences.local_day(send_at(p, uow), p.mail.recipient.timezone)
        for p in optional
        if preferences.may_hold(p.kind)
    }
    # queued in this batch (its writes are deferred) on top of what the database counted
    batch = _BATCH_COUNTS.setdefault(uow, {})
    stored = await store.daily_counts(
        session, program_id=program_id, participant_ids=people, days=set(days.values())
    )
    going = []
    for plan in planned:
        choice = chosen.get(plan.recipient_id)
        hour = choice.digest_hour if choice and choice.digest_hour is not None else None
        hour = settings.digest_hour if hour is None else hour  # their own hour, else the default
        if preferences.is_essential(plan.kind):
            going.append(plan)
        elif plan.idempotency_key in held:
            continue  # waits in (or went out with) a digest already
        elif preferences.unsubscribed_from(plan.kind, refused.get(plan.recipient_id, set())):
            _refused(program_id, plan, now, uow)
        elif not preferences.may_hold(plan.kind):
            going.append(plan)  # a digest itself: never held, never counted
        elif choice is not None and choice.frequency == preferences.DAILY:
            _hold(program_id, plan, uow, hour)
        else:
            key = (program_id, plan.recipient_id, days[plan.delivery_id])
            row = stored.get(key[1:])
            sent = (row.sent if row is not None else 0) + batch.get(key, 0)
            if preferences.over_cap(sent, settings.daily_mail_cap):
                _hold(program_id, plan, uow, hour)
            else:
                batch[key] = batch.get(key, 0) + 1
                uow.upsert(  # one statement per batch, adding to the stored count
                    store.DailyCount,
                    {"program_id": key[0], "participant_id": key[1], "day": key[2], "sent": 1},
                    add=("sent",),
                )
                going.append(plan)
    return going


def _refused(program_id: str, plan: PlannedDelivery, now: dt.datetime, uow: UnitOfWork) -> None:
    """Records a mail its recipient unsubscribed from: a delivery never sent, saying why."""
    what = preferences.KIND_NAMES.get(plan.kind, plan.kind)
    uow.upsert(
        store.Delivery,
        store.delivery_row(
            program_id=program_id,
            planned=plan,
            message=b"",
            traceparent=current_traceparent(),
            status="unsubscribed",
            error=f"not sent: the recipient unsubscribed from {what} "
            f"(seen {now.isoformat(timespec='seconds')})",
        ),
    )


def _hold(program_id: str, plan: PlannedDelivery, uow: UnitOfWork, hour: int) -> None:
    """Keeps a low-urgency notification for its recipient's next digest at their local `hour`,
    and arms that digest (a durable timer per person and local day and hour; arming it again
    changes nothing)."""
    mail = plan.mail
    timezone = mail.recipient.timezone
    settings, now = uow.settings, uow.clock.now()
    hours = _quiet(settings.quiet_hours, settings.quiet_weekends)
    due = preferences.next_digest(now, timezone, hour, hours)
    window = preferences.digest_window(due, timezone)
    fields = mail.fields if isinstance(mail, NoticeMail) else {}
    link = next((str(v) for k, v in fields.items() if k.endswith("_link") and v), "")
    uow.upsert(
        store.HeldItem,
        {
            "idempotency_key": plan.idempotency_key,
            "program_id": program_id,
            "participant_id": plan.recipient_id,
            "kind": plan.kind,
            "subject": mail.subject if isinstance(mail, NoticeMail) else plan.kind,
            "headline": str(fields.get("headline", "")),
            "link": link,
            "held_at": now,
            "digest_window": window,
            "status": "held",
        },
    )
    uow.upsert(
        store.timers,
        store.send_timer_row(program_id=program_id, delivery_id="", due_at=due)
        | {
            "kind": preferences.DIGEST,
            "key": f"{plan.recipient_id}/{window}",
            "payload": {"participant_id": plan.recipient_id, "window": window},
        },
    )


@functools.lru_cache(maxsize=8)
def _quiet(window: str, weekends: bool) -> quiet.QuietHours:
    return quiet.QuietHours.parse(window, weekends=weekends)


# The sender takes the oldest due mail first: urgent mail is due this much before now, so an
# invitation or a session change goes ahead of a backlog of notices queued a moment earlier (a
# round's pair-formed mails), not behind it
URGENT_LEAD = dt.timedelta(minutes=10)


def send_at(plan: PlannedDelivery, uow: UnitOfWork) -> dt.datetime:
    """Now (less URGENT_LEAD) for urgent kinds; otherwise the next time outside the recipient's
    quiet hours, not before the plan's own local hour (program-wide mail goes at 09:00 in each
    zone)."""
    now = uow.clock.now()
    if quiet.is_urgent(plan.kind):
        return now - URGENT_LEAD
    if plan.not_before is not None:
        now = max(now, plan.not_before)
    hours = _quiet(uow.settings.quiet_hours, uow.settings.quiet_weekends)
    return hours.next_allowed(now, plan.mail.recipient.timezone)
