"""Batched, idempotent consumers: one durable pull consumer per subscription, a batch at a time.

A fetched batch is decoded (a message that is not a valid event is parked at once), checked
against the inbox in one query, and applied in one transaction; each event's handler runs in
the unit of work `(event, uow)`. The batch is first applied as a whole; if any handler fails it
is applied again with a savepoint per event, so the failing event alone is retried or parked and
the rest commit. Messages are acked after the commit. Events of one key (participant, pair) apply
in stream order: a key whose event waits for a retry holds back its later events. See
docs/adr/0007-batched-consumption-and-ordering.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar, cast

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry import metrics
from sqlalchemy import ARRAY, String, func, insert, literal, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.backoff import backoff
from shared.barrier import Barrier
from shared.bus import STREAM, durable_name
from shared.clock import Clock
from shared.cpu import CpuPool
from shared.db import Sessions, upsert_insert
from shared.deadletters import (
    DeadLetter,
    MissingEnvelope,
    describe_invalid,
    is_nats_outage,
    judge,
    publish_dead_letter,
)
from shared.events import Event
from shared.outbox import DeliveryTables
from shared.pull import Puller
from shared.settings import Settings
from shared.tasks import stop
from shared.telemetry import consumer_span
from shared.unit_of_work import Preload, UnitOfWork, write_outbox, write_upserts

log = logging.getLogger("mentorship.consumer")

__all__ = ["ConsumerRuntime", "Subscription", "SubscriptionConsumer", "ordering_key"]

E = TypeVar("E", bound=Event)

_meter = metrics.get_meter("mentorship")
_dead_letter_counter = _meter.create_counter(
    "mentorship.dead_letters", description="messages parked on mentorship.dlq.<service>"
)

KEY_FIELDS = ("pair_id", "participant_id", "session_id", "round_id", "delivery_id", "checkin_id")


def ordering_key(event: Event) -> str:
    """The key whose events apply in stream order: the pair, else the participant, and so on."""
    return _key_of(type(event))(event)


@functools.cache
def _key_of(model: type[Event]) -> Callable[[Event], str]:
    # decided once per event type: a getattr of a field the model lacks costs an exception
    for name in KEY_FIELDS:
        if name in model.model_fields:
            return lambda event, name=name: (  # type: ignore[misc]
                f"{event.program_id}/{name}={getattr(event, name)}"
            )
    return lambda event: f"{event.program_id}/event={event.event_id}"


@dataclass(frozen=True)
class Subscription(Generic[E]):
    """'When this event happens, run this handler': `handler(event, uow)`.

    `after` names events whose consumers (in this service) must first have processed everything
    published before this event: a barrier across subjects, which JetStream orders only within
    one consumer. matching.requested waits for the registrations sent before it, for instance.
    `key` picks the ordering key (events of one key apply in stream order); by default
    `ordering_key`. `preload` names rows the handler reads with `uow.get`, loaded for the whole
    batch in one query each. `batch` caps this subscription's batches below the service's
    `batch_size`: for an event whose handling is heavy (a formed pair's whole plan, a session's
    mails), smaller batches commit sooner, so the next service starts on the first ones while
    this one works on the rest.
    """

    event: type[E]
    handler: Callable[[E, UnitOfWork], Awaitable[None]]
    after: tuple[type[Event], ...] = ()
    key: Callable[[E], str] | None = None
    preload: tuple[Preload[E], ...] = ()
    batch: int | None = None


@dataclass
class ConsumerRuntime:
    """What every consumer of a started service shares (filled in by the service runner)."""

    service: str
    sessions: Sessions
    tables: DeliveryTables
    clock: Clock
    settings: Settings
    cpu: CpuPool
    nats: NATS
    js: JetStreamContext
    barrier: Barrier
    on_commit: Callable[[], None]
    # loops a committed batch may wake (UnitOfWork.wake): name -> its wake-up, set by the loop
    wakers: dict[str, Callable[[], None]] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)
    processed: int = 0
    duplicates: int = 0
    retried: int = 0


@dataclass(slots=True)
class _Item:
    msg: Msg
    event: Event
    event_id: str  # str(event.event_id), once: the inbox, duplicates and spans use it
    key: str
    sequence: int
    deliveries: int


@dataclass
class _Outcome:
    applied: list[_Item] = field(default_factory=list)
    duplicates: list[_Item] = field(default_factory=list)
    held: list[_Item] = field(default_factory=list)  # a key's earlier event failed in the batch
    failed: list[tuple[_Item, BaseException]] = field(default_factory=list)
    emitted: int = 0  # outbox rows committed with the batch
    wakes: set[str] = field(default_factory=set)  # loops the batch's handlers asked to wake


class _FastPathFailed(Exception):
    """A handler failed while the batch was applied as a whole: apply it event by event."""


ENVELOPE = frozenset(("event_id", "occurred_at"))  # required on the wire (ADR 0005)

# deliveries without any outcome (the process died on the message each time) before parking
CRASH_DELIVERIES = 3


class SubscriptionConsumer(Generic[E]):
    """Runs one subscription's durable consumer until cancelled."""

    def __init__(self, subscription: Subscription[E], runtime: ConsumerRuntime) -> None:
        self.subscription = subscription
        self.rt = runtime
        self.subject = subscription.event.subject
        self.durable = durable_name(runtime.service, self.subject)
        self._key = subscription.key or ordering_key
        self._after = [durable_name(runtime.service, e.subject) for e in subscription.after]
        self._after_subjects = [e.subject for e in subscription.after]
        # key -> (stream sequence of its event awaiting a retry, monotonic time the hold ends):
        # the hold ends on its own should the retry be delivered to another replica
        self._held: dict[str, tuple[int, float]] = {}
        self._deferrals: dict[int, int] = {}  # stream sequence -> deliveries spent waiting
        self._fetch_failures = 0
        self._span_name = f"{self.subject} process"
        self._batch = min(
            runtime.settings.batch_size, subscription.batch or runtime.settings.batch_size
        )

    async def run(self) -> None:
        """Fetches and applies batches until cancelled."""
        puller = Puller(self.rt.nats, stream=STREAM, durable=self.durable)
        await puller.start()
        try:
            await self._consume(puller)
        finally:
            with contextlib.suppress(Exception):
                await puller.stop()

    async def _consume(self, puller: Puller) -> None:
        batch = self._batch
        while True:
            msgs = await self._fetch(puller)
            if not msgs:
                continue
            # the next batch is asked for while this one is applied: batches still apply one
            # after another, in stream order, but the network round trip overlaps the work
            puller.prefetch(batch)
            try:
                await self.process(msgs)
            except asyncio.CancelledError:
                raise
            except Exception:  # unacked messages come back after ack_wait
                log.exception(
                    "%s: a batch failed outside any handler; it will be redelivered",
                    self.durable,
                )
                await asyncio.sleep(1.0)

    async def _fetch(self, puller: Puller) -> list[Msg]:
        """One batch; empty when there is nothing to do or NATS is away (after a pause)."""
        s = self.rt.settings
        try:
            msgs = await puller.fetch(self._batch, s.fetch_timeout_seconds)
        except Exception as exc:  # NATS away or reconnecting: the messages stay on the server
            self._fetch_failures += 1
            delay = backoff(self._fetch_failures, base=0.2, cap=5.0)
            log.warning("%s: fetch failed (%s); retrying in %.1fs", self.durable, exc, delay)
            await asyncio.sleep(delay)
            return []
        self._fetch_failures = 0
        return msgs

    async def process(self, msgs: Sequence[Msg]) -> None:
        """Applies one fetched batch and settles each message: ack, retry later, or park."""
        ready: list[_Item] = []
        for msg in msgs:
            decoded = self._decode(msg)
            if isinstance(decoded, _Item):
                if self._held_back(decoded):
                    await self._defer(decoded)
                else:
                    ready.append(decoded)
            else:
                await self._park(msg, *decoded)
        if not ready:
            return
        async with self._keep_alive(ready):
            try:
                if self._after:
                    last = max(item.sequence for item in ready)
                    await self.rt.barrier.wait(self._after, last, subjects=self._after_subjects)
                outcome = await self._apply(ready)
            except Exception as exc:  # barrier stalled, database away: every event retries
                outcome = _Outcome(failed=[(item, exc) for item in ready])
        await self._settle(outcome)

    # --- decoding and order ------------------------------------------------------------

    def _decode(self, msg: Msg) -> _Item | tuple[str, int]:
        """The message as an item to apply, or why it must be parked (and its deliveries)."""
        sequence, delivered = delivery_of(msg)
        deliveries = max(1, delivered - self._deferrals.get(sequence, 0))
        try:
            event = self.subscription.event.model_validate_json(msg.data)
            if not event.model_fields_set >= ENVELOPE:
                raise MissingEnvelope("event_id and occurred_at are required")
        except Exception as exc:
            return describe_invalid(exc, msg.data), deliveries
        item = _Item(msg, event, str(event.event_id), self._key(event), sequence, deliveries)
        limit = self.rt.settings.max_deliver + CRASH_DELIVERIES
        if deliveries > limit and not self._holds(item):
            reason = (
                f"delivered {deliveries} times without an outcome (did the service crash "
                "on it?); see the service's log"
            )
            return reason, deliveries
        return item

    def _holds(self, item: _Item) -> bool:
        held = self._held.get(item.key)
        return held is not None and held[0] == item.sequence

    def _held_back(self, item: _Item) -> bool:
        """Whether the event waits: its key has an earlier event waiting for its retry."""
        held = self._held.get(item.key)
        if held is None or held[0] >= item.sequence:
            return False
        if held[1] < time.monotonic():
            del self._held[item.key]
            return False
        return True

    async def _defer(self, item: _Item) -> None:
        # waiting for an earlier event of its key does not use up this event's budget
        self._deferrals[item.sequence] = self._deferrals.get(item.sequence, 0) + 1
        await item.msg.nak(delay=self.rt.settings.retry_base_seconds)

    # --- applying ----------------------------------------------------------------------

    async def _apply(self, items: list[_Item]) -> _Outcome:
        if len(items) > 1:
            with contextlib.suppress(_FastPathFailed):
                return await self._apply_whole(items)
        return await self._apply_each(items)

    async def _apply_whole(self, items: list[_Item]) -> _Outcome:
        """The batch in one transaction; any failure rolls it all back (_FastPathFailed).

        The inbox rows go in first, in one statement: those it did not insert are duplicates.
        """
        rt, outcome = self.rt, _Outcome()
        try:
            async with rt.sessions() as session, session.begin():
                new = await _claim_inbox(
                    session,
                    rt.tables,
                    self.durable,
                    [item.event_id for item in items],
                    rt.clock.now(),
                )
                # one unit of work for the batch: it commits or rolls back as a whole
                uow = self._unit_of_work(session)
                fresh = [cast(E, item.event) for item in items if item.event_id in new]
                uow.batch = fresh
                for preload in self.subscription.preload:
                    uow.preloaded(preload.model, await preload.load(session, fresh))
                for item in items:
                    if item.event_id not in new:
                        outcome.duplicates.append(item)
                        continue
                    new.discard(item.event_id)  # a second copy in this batch is a duplicate
                    await self._run_handler(uow, item)
                    outcome.applied.append(item)
                await uow.finish()
                outbox_rows = uow.outbox_rows()
                await write_upserts(session, uow.writes)
                await write_outbox(session, rt.tables, outbox_rows)
                outcome.emitted = len(outbox_rows)
                outcome.wakes = uow.wakes
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a handler, a constraint, the commit: event by event
            log.info(
                "%s: a batch of %d is applied again event by event (%s: %s)",
                self.durable,
                len(items),
                type(exc).__name__,
                str(exc)[:300],
            )
            raise _FastPathFailed from exc
        return outcome

    async def _apply_each(self, items: list[_Item]) -> _Outcome:
        """The batch in one transaction, each event in a savepoint: a failure stays its own."""
        rt, outcome = self.rt, _Outcome()
        async with rt.sessions() as session, session.begin():
            seen = await _seen(session, rt.tables, self.durable, items)
            failed_keys: set[str] = set()
            outbox_rows: list[dict[str, object]] = []
            for item, row in zip(items, self._inbox_rows(items), strict=True):
                if row["event_id"] in seen:
                    outcome.duplicates.append(item)
                elif item.key in failed_keys:
                    outcome.held.append(item)
                else:
                    try:
                        async with session.begin_nested():
                            uow = self._unit_of_work(session)
                            uow.batch = [item.event]
                            await self._run_handler(uow, item)
                            await uow.finish()
                            await write_upserts(session, uow.writes)
                            await session.execute(insert(rt.tables.inbox).values(**row))
                    except Exception as exc:
                        if isinstance(exc, IntegrityError) and await _seen(
                            session, rt.tables, self.durable, [item]
                        ):
                            outcome.duplicates.append(item)  # another replica was first
                        else:
                            failed_keys.add(item.key)
                            outcome.failed.append((item, exc))
                        continue
                    seen.add(str(row["event_id"]))
                    outbox_rows += uow.outbox_rows()
                    outcome.wakes |= uow.wakes
                    outcome.applied.append(item)
            await write_outbox(session, rt.tables, outbox_rows)
            outcome.emitted = len(outbox_rows)
        return outcome

    def _inbox_rows(self, items: list[_Item]) -> list[dict[str, object]]:
        now = self.rt.clock.now()
        return [
            {"consumer": self.durable, "event_id": item.event_id, "processed_at": now}
            for item in items
        ]

    def _unit_of_work(self, session: AsyncSession) -> UnitOfWork:
        rt = self.rt
        return UnitOfWork(
            session=session,
            tables=rt.tables,
            clock=rt.clock,
            settings=rt.settings,
            source=rt.service,
            cpu=rt.cpu,
        )

    async def _run_handler(self, uow: UnitOfWork, item: _Item) -> None:
        attributes = functools.partial(self._attributes, item)
        with consumer_span(self._span_name, item.msg.headers, attributes):
            await self.subscription.handler(cast(E, item.event), uow)

    def _attributes(self, item: _Item) -> dict[str, object]:
        return {"messaging.consumer.group.name": self.durable, "mentorship.event_id": item.event_id}

    # --- settling ----------------------------------------------------------------------

    async def _settle(self, outcome: _Outcome) -> None:
        rt = self.rt
        for item in outcome.applied + outcome.duplicates:
            await item.msg.ack()
            self._release(item)
        rt.processed += len(outcome.applied)
        rt.duplicates += len(outcome.duplicates)
        if outcome.emitted:  # the relay has rows to publish; a batch without any needs no wake-up
            rt.on_commit()
        for loop in outcome.wakes:
            if (wake := rt.wakers.get(loop)) is not None:
                wake()
        for item in outcome.held:
            await self._defer(item)
        for item, exc in outcome.failed:
            verdict = judge(exc, deliveries=item.deliveries, max_deliver=rt.settings.max_deliver)
            if verdict.park:
                await self._park(item.msg, verdict.reason, item.deliveries)
                self._release(item)
                continue
            delay = backoff(
                item.deliveries,
                base=rt.settings.retry_base_seconds,
                cap=rt.settings.retry_max_seconds,
            )
            if not is_nats_outage(exc):
                log.warning(
                    "%s: delivery %d of #%d failed (%s); retrying in %.1fs",
                    self.durable,
                    item.deliveries,
                    item.sequence,
                    verdict.reason,
                    delay,
                )
            held = self._held.get(item.key)
            until = time.monotonic() + delay + rt.settings.ack_wait_seconds
            if held is None or item.sequence <= held[0]:
                self._held[item.key] = (item.sequence, until)
            rt.retried += 1
            with contextlib.suppress(Exception):  # NATS away: redelivered after ack_wait anyway
                await item.msg.nak(delay=delay)

    def _release(self, item: _Item) -> None:
        """The item is settled for good (acked or parked): progress, for the barrier."""
        self.rt.barrier.active(self.durable)
        self._deferrals.pop(item.sequence, None)
        if self._holds(item):
            del self._held[item.key]

    async def _park(self, msg: Msg, reason: str, deliveries: int) -> None:
        """Parks the message with its reason, then acks it on its subject."""
        rt = self.rt
        letter = DeadLetter(
            service=rt.service,
            consumer=self.durable,
            original_subject=msg.subject,
            payload=msg.data,
            headers=dict(msg.headers or {}),
            reason=reason,
            stream_sequence=delivery_of(msg)[0],
            deliveries=deliveries,
        )
        try:
            await publish_dead_letter(rt.js, letter, at=rt.clock.now())
        except Exception as exc:  # NATS away: keep the original, it comes back later
            log.warning("%s: could not dead-letter (%s); will retry", self.durable, exc)
            with contextlib.suppress(Exception):
                await msg.nak(delay=rt.settings.retry_max_seconds)
            return
        await msg.ack()
        rt.barrier.active(self.durable)
        rt.dead_letters[self.subject] = rt.dead_letters.get(self.subject, 0) + 1
        _dead_letter_counter.add(1, {"service": rt.service, "subject": self.subject})
        log.error("%s: dead-lettered #%d: %s", self.durable, letter.stream_sequence, reason)

    @contextlib.asynccontextmanager
    async def _keep_alive(self, items: list[_Item]) -> AsyncIterator[None]:
        """Tells JetStream the batch is still being worked on, so it is not redelivered."""

        async def beat() -> None:
            every = self.rt.settings.ack_wait_seconds / 3
            while True:
                await asyncio.sleep(every)
                self.rt.barrier.active(self.durable)
                for item in items:
                    with contextlib.suppress(Exception):
                        await item.msg.in_progress()

        task = asyncio.create_task(beat(), name=f"{self.durable}-keep-alive")
        try:
            yield
        finally:
            await stop(task)


def delivery_of(msg: Msg) -> tuple[int, int]:
    """(stream sequence, times delivered), read from the ack subject.

    Only the two fields the consumer needs: nats-py's whole metadata (with a timestamp
    conversion) cost a sixth of a registration's processing.
    """
    tokens = (msg.reply or "").split(".", 6)  # the fields after these two are not needed
    if len(tokens) == 7 and tokens[0] == "$JS" and tokens[6].count(".") == 2:
        # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>
        return int(tokens[5]), int(tokens[4])
    if len(tokens) >= 11 and tokens[0] == "$JS":  # with domain and account hash
        return int(tokens[Msg.Ack.StreamSeq]), int(tokens[Msg.Ack.NumDelivered])
    metadata = msg.metadata
    return metadata.sequence.stream, metadata.num_delivered or 1


async def _claim_inbox(
    session: AsyncSession,
    tables: DeliveryTables,
    consumer: str,
    event_ids: list[str],
    now: dt.datetime,
) -> set[str]:
    """Inserts the batch's inbox rows; returns the event ids that were new (one statement).

    On PostgreSQL a row another replica inserted in a transaction still open waits for it,
    then counts as seen: two replicas never both apply one event.
    """
    inbox = tables.inbox
    if session.get_bind().dialect.name == "postgresql":
        # the ids as one array parameter: a VALUES list of three parameters a row was parsed
        # and planned again for every batch (plans are custom, see shared.db.make_engine)
        source = select(
            literal(consumer, String).label("consumer"),
            func.unnest(sql_cast(event_ids, ARRAY(String))).label("event_id"),
            literal(now, inbox.c.processed_at.type).label("processed_at"),
        )
        claim = postgresql_insert(inbox).from_select(
            ["consumer", "event_id", "processed_at"], source
        )
        statement = claim.on_conflict_do_nothing().returning(inbox.c.event_id)
        return set(await session.scalars(statement))
    rows = [{"consumer": consumer, "event_id": i, "processed_at": now} for i in event_ids]
    statement = upsert_insert(session)(inbox).on_conflict_do_nothing().returning(inbox.c.event_id)
    return set(await session.scalars(statement, rows))


async def _seen(
    session: AsyncSession, tables: DeliveryTables, consumer: str, items: Sequence[_Item]
) -> set[str]:
    """The batch's event ids this consumer has processed before, in one query."""
    inbox = tables.inbox
    ids = [item.event_id for item in items]
    rows = await session.execute(
        select(inbox.c.event_id).where(inbox.c.consumer == consumer, inbox.c.event_id.in_(ids))
    )
    return {row[0] for row in rows}
