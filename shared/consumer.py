"""Idempotent event consumers: durable pull subscribers, inbox, bounded retries, dead letters.

Every subscription runs the same way: decode and validate (faststream + pydantic), skip if the
inbox has seen the event, run the handler in one transaction with the inbox row and the outbox
rows, commit, then ack. Failures are decided in one place, DeadLetterPolicy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

import nats.errors
from faststream import BaseMiddleware
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
from nats.js import JetStreamContext
from opentelemetry import metrics, trace
from pydantic import ValidationError
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bus import STREAM, DeadLetter, consumer_config, durable_name, publish_dead_letter
from shared.clock import Clock
from shared.cpu import CpuPool
from shared.db import Sessions
from shared.errors import EventRejected, ProgramMismatch, UnknownReference
from shared.events import Event
from shared.outbox import DeliveryTables, UnitOfWork, write_outbox
from shared.settings import Settings
from shared.telemetry import context_from, tracer

log = logging.getLogger("mentorship.consumer")

Handler = Callable[[Any, UnitOfWork], Awaitable[None]]

__all__ = ["EventRejected", "ProgramMismatch", "Subscription", "UnknownReference"]


class MissingEnvelope(Exception):
    """The event lacks event_id or occurred_at, without which redeliveries cannot be told apart."""


ENVELOPE_REQUIRED = ("event_id", "occurred_at")


def _check_envelope(event: Event) -> None:
    # fields the model defaulted are not in model_fields_set: no second parse of the body
    if not set(ENVELOPE_REQUIRED) <= event.model_fields_set:
        raise MissingEnvelope("event_id and occurred_at are required")


E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class Subscription(Generic[E]):
    """'When this event happens, run this handler': `handler(event, uow)`.

    `after` names events whose consumers (in this service) must first have processed everything
    published before this event: a barrier across subjects, which JetStream orders only within
    one consumer. matching.requested waits for the registrations sent before it, for instance.
    `key` picks the ordering key (events of one key apply in stream order); by default the
    event's own key, see `ordering_key`.
    """

    event: type[E]
    handler: Callable[[E, UnitOfWork], Awaitable[None]]
    after: tuple[type[Event], ...] = ()
    key: Callable[[E], str] | None = None


@dataclass
class ConsumerRuntime:
    """What consumers need once the service is started (filled in by the service runner)."""

    service: str
    sessions: Sessions
    tables: DeliveryTables
    clock: Clock
    settings: Settings
    cpu: CpuPool
    js: JetStreamContext
    on_commit: Callable[[], None]
    max_deliver: int
    retry_base_seconds: float
    retry_max_seconds: float
    dead_letters: dict[str, int] = field(default_factory=dict)
    # per durable consumer: every message up to this stream sequence is known to be acked
    acked_through: dict[str, int] = field(default_factory=dict)
    processed: int = 0
    duplicates: int = 0


_meter = metrics.get_meter("mentorship")
_dead_letter_counter = _meter.create_counter(
    "mentorship.dead_letters", description="messages parked on mentorship.dlq.<service>"
)


def describe_invalid(error: Exception, payload: bytes) -> str:
    """A human-readable reason for an event that failed to decode or validate."""
    try:
        body = json.loads(payload)
    except ValueError as exc:
        return f"unparseable JSON ({exc}); publish a UTF-8 JSON object matching the catalogue"
    if isinstance(error, MissingEnvelope):
        missing = [name for name in ENVELOPE_REQUIRED if name not in body]
        return (
            f"schema violation: missing envelope field(s) {', '.join(missing)}; "
            "every event carries a unique event_id and its occurred_at"
        )
    if not isinstance(error, ValidationError):
        return f"undecodable event: {error}"
    problems = []
    for item in error.errors()[:5]:
        loc = [str(part) for part in item["loc"] if part != "event"]
        problems.append(f"{'.'.join(loc) or 'body'}: {item['msg']}")
    more = f" (+{error.error_count() - 5} more)" if error.error_count() > 5 else ""
    return "schema violation: " + "; ".join(problems) + more


# NATS itself away (e.g. the barrier's consumer_info during a restart) says nothing about the
# event: such failures get a few more deliveries (JetStream allows max_deliver + 5) before parking
OUTAGE_EXTRA_DELIVERIES = 4


def _nats_outage(exc: Exception) -> bool:
    return isinstance(
        exc,
        nats.errors.ConnectionClosedError
        | nats.errors.ConnectionReconnectingError
        | nats.errors.NoRespondersError
        | nats.errors.TimeoutError
        | nats.errors.StaleConnectionError,
    )


class DeadLetterPolicy:
    """Decides what happens to a message whose processing raised."""

    def __init__(self, runtime: ConsumerRuntime) -> None:
        self.runtime = runtime

    def retry_delay(self, deliveries: int) -> float:
        """Exponential backoff for the next delivery."""
        rt = self.runtime
        return float(min(rt.retry_base_seconds * 2 ** (deliveries - 1), rt.retry_max_seconds))

    async def handle_failure(self, msg: NatsMessage, exc: Exception) -> None:
        """Dead-letters permanent failures and exhausted retries; naks the rest with a delay."""
        deliveries = msg.raw_message.metadata.num_delivered or 1
        if isinstance(
            exc, ValidationError | json.JSONDecodeError | UnicodeDecodeError | MissingEnvelope
        ):
            # JSONDecodeError: faststream decodes itself when content-type is application/json
            await self.dead_letter(msg, describe_invalid(exc, msg.body), deliveries)
        elif isinstance(exc, EventRejected):
            await self.dead_letter(msg, f"rejected: {exc}", deliveries)
        elif deliveries >= self.runtime.max_deliver and not (
            _nats_outage(exc) and deliveries < self.runtime.max_deliver + OUTAGE_EXTRA_DELIVERIES
        ):
            kind = "unknown reference" if isinstance(exc, UnknownReference) else "error"
            reason = f"{kind} after {deliveries} deliveries: {exc}"
            await self.dead_letter(msg, reason, deliveries)
        else:
            delay = self.retry_delay(deliveries)
            log.warning(
                "%s: delivery %d of %s failed (%s); retrying in %.1fs",
                self.runtime.service,
                deliveries,
                msg.raw_message.subject,
                exc,
                delay,
            )
            await msg.nack(delay=delay)

    async def dead_letter(self, msg: NatsMessage, reason: str, deliveries: int) -> None:
        """Parks the message with its reason, then acks it on the original stream."""
        rt = self.runtime
        raw = msg.raw_message
        letter = DeadLetter(
            service=rt.service,
            original_subject=raw.subject,
            payload=raw.data,
            headers=dict(raw.headers or {}),
            reason=reason,
            stream_sequence=raw.metadata.sequence.stream,
            deliveries=deliveries,
        )
        try:
            await publish_dead_letter(rt.js, letter)
        except Exception as exc:  # NATS away: keep the original, it comes back later
            log.warning("%s: could not dead-letter (%s); will retry", rt.service, exc)
            await msg.nack(delay=self.retry_delay(deliveries))
            return
        await msg.ack()
        rt.dead_letters[raw.subject] = rt.dead_letters.get(raw.subject, 0) + 1
        _dead_letter_counter.add(1, {"service": rt.service, "subject": raw.subject})
        log.error("%s: dead-lettered %s: %s", rt.service, raw.subject, reason)


def dead_letter_middleware(policy_of: Callable[[], DeadLetterPolicy]) -> type[BaseMiddleware]:
    """A faststream middleware that routes every consume failure through the policy."""

    class DeadLetterMiddleware(BaseMiddleware):
        async def consume_scope(
            self, call_next: Callable[[Any], Awaitable[Any]], msg: StreamMessage[Any]
        ) -> Any:
            try:
                return await call_next(msg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await policy_of().handle_failure(cast(NatsMessage, msg), exc)
                return None

    return DeadLetterMiddleware


async def _keep_alive(msg: NatsMessage, every: float) -> None:
    """Tells JetStream the handler is still working, so the message is not redelivered."""
    while True:
        await asyncio.sleep(every)
        await msg.in_progress()


def register(
    broker: NatsBroker,
    subscription: Subscription[Any],
    runtime_of: Callable[[], ConsumerRuntime],
    *,
    service: str,
    max_deliver: int,
) -> None:
    """Adds one durable pull subscriber for the subscription to the broker."""
    model = subscription.event
    subject = model.subject
    consumer = durable_name(service, subject)
    handler = subscription.handler

    async def consume(event: Event, msg: NatsMessage) -> None:
        rt = runtime_of()
        _check_envelope(event)  # the model fills them in for emitters, never for consumers
        parent = context_from(msg.headers)
        with tracer().start_as_current_span(
            f"{subject} process", context=parent, kind=trace.SpanKind.CONSUMER
        ) as span:
            span.set_attribute("messaging.consumer.group.name", consumer)
            span.set_attribute("mentorship.event_id", str(event.event_id))
            keep_alive = asyncio.create_task(_keep_alive(msg, every=10))
            try:
                sequence = msg.raw_message.metadata.sequence.stream
                await _wait_for_earlier(rt, service, subscription.after, sequence)
                applied = await _apply_once(rt, consumer, event, handler)
            finally:
                keep_alive.cancel()
            span.set_attribute("mentorship.duplicate", not applied)
        if applied:
            rt.processed += 1
            rt.on_commit()
        else:
            rt.duplicates += 1
        await msg.ack()

    consume.__annotations__["event"] = model  # the payload schema faststream validates & documents
    broker.subscriber(
        subject,
        stream=JStream(STREAM, declare=False),
        durable=consumer,
        config=consumer_config(durable=consumer, subject=subject, max_deliver=max_deliver),
        pull_sub=PullSub(batch_size=32, timeout=1.0),
        ack_policy=AckPolicy.MANUAL,
        title=f"{subject}:{service}",
        description=(model.__doc__ or "").strip() or None,
    )(consume)


BARRIER_TIMEOUT_SECONDS = 60.0


async def _wait_for_earlier(
    rt: ConsumerRuntime, service: str, after: tuple[type[Event], ...], sequence: int
) -> None:
    """Waits until this service's consumers of `after` acked every message before `sequence`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BARRIER_TIMEOUT_SECONDS
    for event in after:
        durable = durable_name(service, event.subject)
        while rt.acked_through.get(durable, 0) < sequence:  # known from an earlier look: no I/O
            info = await rt.js.consumer_info(STREAM, durable)
            floor = (info.ack_floor.stream_seq or 0) if info.ack_floor else 0
            idle = not info.num_pending and not info.num_ack_pending
            # idle: everything stored so far, so everything before `sequence`, is acked
            known = max(rt.acked_through.get(durable, 0), floor, sequence if idle else 0)
            rt.acked_through[durable] = known
            if known >= sequence:
                break
            if loop.time() > deadline:
                raise UnknownReference(
                    f"{event.subject} published before this event is not processed yet "
                    f"({info.num_pending} pending); `mentorship dlq replay` once it is"
                )
            await asyncio.sleep(0.2)


async def _apply_once(rt: ConsumerRuntime, consumer: str, event: Event, handler: Handler) -> bool:
    """Runs the handler unless the inbox has seen the event; False for a duplicate."""
    event_id = str(event.event_id)
    try:
        async with rt.sessions() as session, session.begin():
            uow = UnitOfWork(
                session=session,
                tables=rt.tables,
                clock=rt.clock,
                settings=rt.settings,
                source=rt.service,
                cpu=rt.cpu,
            )
            if await _already_processed(session, rt.tables, consumer, event_id):
                return False
            await _mark_processed(session, rt.tables, consumer, event_id, rt.clock.now())
            await handler(event, uow)
            await write_outbox(session, rt.tables, uow.outbox_rows())
    except IntegrityError:
        # another replica committed the same inbox row first
        async with rt.sessions() as session:
            if await _already_processed(session, rt.tables, consumer, event_id):
                return False
        raise
    return True


async def _already_processed(
    session: AsyncSession, tables: DeliveryTables, consumer: str, event_id: str
) -> bool:
    inbox = tables.inbox
    row = await session.execute(
        select(inbox.c.event_id).where(inbox.c.consumer == consumer, inbox.c.event_id == event_id)
    )
    return row.first() is not None


async def _mark_processed(
    session: AsyncSession, tables: DeliveryTables, consumer: str, event_id: str, now: dt.datetime
) -> None:
    await session.execute(
        insert(tables.inbox).values(consumer=consumer, event_id=event_id, processed_at=now)
    )
