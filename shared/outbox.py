"""Transactional outbox and inbox: state changes and the events they cause commit together.

A handler's unit of work (shared/unit_of_work.py) records the consumed event in the inbox and the
events it emits in the outbox, in the same transaction as its own state. The relay publishes
outbox rows afterwards, awaiting each PubAck and retrying with the same Nats-Msg-Id; a row that
can never be published is parked with its reason while the rows after it keep flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from opentelemetry import metrics, trace
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    select,
    update,
)

from shared.backoff import backoff
from shared.clock import Clock
from shared.db import Sessions
from shared.telemetry import context_from_traceparent, current_traceparent, tracer

log = logging.getLogger("mentorship.outbox")
_parked_counter = metrics.get_meter("mentorship").create_counter(
    "mentorship.outbox.parked", description="outbox rows that can never be published"
)


def never_publishable(exc: BaseException) -> bool:
    """Whether publishing failed for a reason a retry cannot change (the row is parked)."""
    return isinstance(exc, nats.errors.MaxPayloadError | nats.js.errors.BadRequestError)


# an outbox row to publish: id, subject, payload, headers (JSON)
_Pending = tuple[int, str, bytes, str]

Publish = Callable[[str, bytes, Mapping[str, str]], Awaitable[bool]]


@dataclass(frozen=True)
class DeliveryTables:
    outbox: Table
    inbox: Table


def add_delivery_tables(metadata: MetaData) -> DeliveryTables:
    """Adds the outbox and inbox tables to a service's own metadata."""
    outbox = Table(
        "outbox",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("event_id", String(36), nullable=False, unique=True),
        Column("subject", String(200), nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("headers", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("published_at", DateTime(timezone=True), nullable=True, index=True),
        Column("attempts", Integer, nullable=False, default=0),
        Column("last_error", Text, nullable=True),
        # set when the row can never be published (e.g. over the server's max_payload)
        Column("parked_at", DateTime(timezone=True), nullable=True, index=True),
    )
    inbox = Table(
        "inbox",
        metadata,
        Column("consumer", String(200), primary_key=True),
        Column("event_id", String(36), primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False),
    )
    return DeliveryTables(outbox=outbox, inbox=inbox)


class OutboxRelay:
    """Publishes pending outbox rows in order, a batch in flight at once; retries while NATS is
    away."""

    def __init__(
        self,
        *,
        sessions: Sessions,
        tables: DeliveryTables,
        publish: Publish,
        clock: Clock,
        batch_size: int = 200,
        idle_seconds: float = 0.5,
        max_backoff_seconds: float = 5.0,
    ) -> None:
        self._sessions = sessions
        self._outbox = tables.outbox
        self._publish = publish
        self._clock = clock
        self._batch_size = batch_size
        self._idle_seconds = idle_seconds
        self._max_backoff = max_backoff_seconds
        self._wakeup = asyncio.Event()
        self.published = 0
        self.parked = 0

    def wake(self) -> None:
        """Tells the relay that new rows were committed."""
        self._wakeup.set()

    async def run(self) -> None:
        """Runs until cancelled."""
        failures = 0
        while True:
            self._wakeup.clear()  # before reading: a wake() during the batch is not lost
            try:
                sent = await self.publish_pending()
                failures = 0
            except Exception as exc:  # NATS away, DB busy: keep the rows, try again later
                failures += 1
                delay = backoff(failures, base=0.1, cap=self._max_backoff)
                log.warning("outbox relay: %s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            if sent < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=self._idle_seconds)

    async def publish_pending(self) -> int:
        """Publishes one batch of pending rows; returns how many were published."""
        outbox = self._outbox
        async with self._sessions() as session:
            rows: list[_Pending] = [
                (r[0], r[1], r[2], r[3])
                for r in await session.execute(
                    select(outbox.c.id, outbox.c.subject, outbox.c.payload, outbox.c.headers)
                    .where(outbox.c.published_at.is_(None), outbox.c.parked_at.is_(None))
                    .order_by(outbox.c.id)
                    .limit(self._batch_size)
                )
            ]
        results = await self._publish_all(rows)
        done: list[int] = []
        failure: Exception | None = None
        try:
            for (row_id, subject, _, _), result in zip(rows, results, strict=True):
                if result is None:
                    done.append(row_id)
                elif never_publishable(result):  # park it; the rows after it keep flowing
                    await self._park(row_id, subject, result)
                elif failure is None:
                    failure = result
                    await self._record_failure(row_id, result)
        finally:
            # one transaction for the batch; should it be lost, the rows are published again
            # under the same Nats-Msg-Id and JetStream drops the copies (duplicate window)
            await self._mark_published(done)
        if failure is not None:
            raise failure
        return len(rows)

    async def _publish_all(self, rows: Sequence[_Pending]) -> list[Exception | None]:
        """Publishes the rows, pipelined; each row's outcome (None: published).

        The first row is published alone: it makes sure nats-py's response subscription exists
        (created on a connection's first request, which would otherwise let the second row's
        PUB overtake the first). The rest go out in id order on the one connection before any
        PubAck is awaited, so the stream stores them in that order (ADR 0007).
        """
        if not rows:
            return []

        async def one(row: _Pending) -> None:
            _, subject, payload, headers_json = row
            await self._publish_one(subject, payload, json.loads(headers_json))

        outcomes: list[Exception | None] = []
        try:
            await one(rows[0])
            outcomes.append(None)
        except Exception as exc:
            outcomes.append(exc)
        sends = [asyncio.ensure_future(one(row)) for row in rows[1:]]
        for result in await asyncio.gather(*sends, return_exceptions=True):
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result  # cancelled: the rows stay pending
            outcomes.append(result)
        return outcomes

    async def _mark_published(self, row_ids: list[int]) -> None:
        if not row_ids:
            return
        outbox = self._outbox
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(outbox)
                .where(outbox.c.id.in_(row_ids))
                .values(published_at=self._clock.now(), attempts=outbox.c.attempts + 1)
            )
        self.published += len(row_ids)

    async def _publish_one(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        parent = context_from_traceparent(headers.get("traceparent"))
        with tracer().start_as_current_span(
            f"{subject} publish", context=parent, kind=trace.SpanKind.PRODUCER
        ) as span:
            span.set_attribute("messaging.system", "nats")
            span.set_attribute("messaging.destination.name", subject)
            span.set_attribute("messaging.message.id", headers.get("Nats-Msg-Id", ""))
            traceparent = current_traceparent()
            if traceparent:
                headers["traceparent"] = traceparent
            duplicate = await self._publish(subject, payload, headers)
            span.set_attribute("messaging.nats.duplicate", duplicate)

    async def _park(self, row_id: int, subject: str, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}".strip()[:2000]
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(self._outbox)
                .where(self._outbox.c.id == row_id)
                .values(
                    parked_at=self._clock.now(),
                    attempts=self._outbox.c.attempts + 1,
                    last_error=reason,
                )
            )
        self.parked += 1
        _parked_counter.add(1, {"subject": subject})
        log.error(
            "outbox row %d (%s) can never be published (%s): parked; see `mentorship outbox list`",
            row_id,
            subject,
            reason,
        )

    async def _record_failure(self, row_id: int, exc: Exception) -> None:
        try:
            async with self._sessions() as session, session.begin():
                await session.execute(
                    update(self._outbox)
                    .where(self._outbox.c.id == row_id)
                    .values(attempts=self._outbox.c.attempts + 1, last_error=str(exc)[:2000])
                )
        except Exception:  # the failure to record is secondary to the failure itself
            log.exception("outbox relay: could not record a failed attempt")


async def prune(
    *,
    sessions: Sessions,
    tables: DeliveryTables,
    now: dt.datetime,
    outbox_retention: dt.timedelta,
    inbox_retention: dt.timedelta,
) -> tuple[int, int]:
    """Deletes published outbox rows and old inbox rows; returns how many of each.

    Inbox rows must outlive every redelivery and every DLQ replay of the event they guard, so
    their retention is long (default 90 days); published outbox rows are only history.
    """
    outbox, inbox = tables.outbox, tables.inbox
    async with sessions() as session, session.begin():
        published = await session.execute(
            delete(outbox).where(
                outbox.c.published_at.is_not(None), outbox.c.published_at < now - outbox_retention
            )
        )
        seen = await session.execute(
            delete(inbox).where(inbox.c.processed_at < now - inbox_retention)
        )
    return int(published.rowcount), int(seen.rowcount)  # type: ignore[attr-defined]


async def backlog(*, sessions: Sessions, tables: DeliveryTables) -> tuple[int, int]:
    """How many outbox rows wait to be published, and how many are parked for good."""
    outbox = tables.outbox
    async with sessions() as session:
        result = await session.execute(
            select(
                func.count().filter(outbox.c.parked_at.is_(None)),
                func.count().filter(outbox.c.parked_at.is_not(None)),
            ).where(outbox.c.published_at.is_(None))
        )
        pending, parked = result.one()
        return int(pending), int(parked)


@dataclass(frozen=True)
class ParkedRow:
    """An outbox row that could not be published, and why."""

    id: int
    event_id: str
    subject: str
    size: int
    created_at: dt.datetime
    parked_at: dt.datetime
    reason: str


async def parked_rows(*, sessions: Sessions, tables: DeliveryTables) -> list[ParkedRow]:
    """The parked outbox rows, oldest first."""
    outbox = tables.outbox
    async with sessions() as session:
        rows = await session.execute(
            select(
                outbox.c.id,
                outbox.c.event_id,
                outbox.c.subject,
                func.length(outbox.c.payload),
                outbox.c.created_at,
                outbox.c.parked_at,
                outbox.c.last_error,
            )
            .where(outbox.c.published_at.is_(None), outbox.c.parked_at.is_not(None))
            .order_by(outbox.c.id)
        )
        return [ParkedRow(*row) for row in rows]


async def unpark(*, sessions: Sessions, tables: DeliveryTables, ids: list[int]) -> int:
    """Returns parked rows to the relay (after the cause is fixed); how many were unparked."""
    outbox = tables.outbox
    async with sessions() as session, session.begin():
        result = await session.execute(
            update(outbox)
            .where(outbox.c.id.in_(ids), outbox.c.parked_at.is_not(None))
            .values(parked_at=None)
        )
    return int(result.rowcount)  # type: ignore[attr-defined]
