"""The sender: due deliveries are claimed in batches (durable timers of kind SEND), sent over a
small pool of SMTP connections (each takes a share of the batch and pipelines it when the server
offers PIPELINING), and recorded in one transaction per batch.

After a 250 a mail is never sent again: the 250 goes to the local sent journal at once, and the
database record (delivery sent, timer done, notification.sent) is retried until it sticks, before
anything else is claimed. A circuit breaker stops sending while the server is away or hanging;
permanent refusals fail the delivery (notification.failed) and nothing else waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from sqlalchemy import Table, and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifications import deliveries, mime, store
from services.notifications.breaker import HALF_OPEN, Breaker
from services.notifications.journal import SentJournal, SentRecord
from services.notifications.smtp import Attempt, Outcome, SmtpPool
from services.notifications.smtp_pipelined import Mail
from shared.backoff import backoff
from shared.clock import Clock
from shared.db import Sessions, keys_in
from shared.events import Channel, NotificationFailed, NotificationSent
from shared.telemetry import context_from_traceparent, tracer
from shared.timers import Due, TimerHandler, TimerRunner, still_pending
from shared.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    from pathlib import Path

    from shared.service import Running

log = logging.getLogger("mentorship.notifications.sender")

MAX_ATTEMPTS = 8
RETRY_BASE_SECONDS = 5.0  # about 5 s, 10 s, 20 s ... between attempts (with jitter)
RETRY_CAP_SECONDS = 1800.0
# covers a claimed batch until it is recorded (two batches' sends, normally seconds); a replica
# that dies leaves its claims for this long (its journalled 250s are recorded on restart)
LEASE = dt.timedelta(seconds=60)
BATCH = 200
POLL_SECONDS = 0.25


def retry_delay(attempt: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds before the next try: the backoff, of which the second half is random (jitter)."""
    delay = backoff(attempt, base=RETRY_BASE_SECONDS, cap=RETRY_CAP_SECONDS)
    return delay / 2 + rand() * delay / 2


@dataclass
class Outcomes:
    """A batch's results, waiting to be recorded."""

    sent: list[SentRecord] = field(default_factory=list)
    failed: list[tuple[Due, str]] = field(default_factory=list)
    retry: list[tuple[Due, str]] = field(default_factory=list)
    released: list[Due] = field(default_factory=list)
    orphan_files: list[Path] = field(default_factory=list)
    journalled: int = 0  # of `sent`, those this process's journal holds

    def merged(self, later: Outcomes) -> Outcomes:
        """These outcomes and those sorted after them, to record together."""
        return Outcomes(
            sent=self.sent + later.sent,
            failed=self.failed + later.failed,
            retry=self.retry + later.retry,
            released=self.released + later.released,
            orphan_files=self.orphan_files + later.orphan_files,
            journalled=self.journalled + later.journalled,
        )

    def __bool__(self) -> bool:
        return bool(self.sent or self.failed or self.retry or self.released or self.orphan_files)


def _settled_without_smtp(item: Due, row: Any) -> Attempt | None:
    """The outcome of a claimed item that must not go over SMTP, else None."""
    if row is None:
        return Attempt(Outcome.PERMANENT, "the delivery's row is gone; nothing to send")
    if row.status == "sent":
        return Attempt(Outcome.SENT, "already sent")
    if item.attempt > MAX_ATTEMPTS:
        return Attempt(Outcome.PERMANENT, "not finished within its lease; did the process die?")
    return None


async def _not_run(item: Due, uow: UnitOfWork) -> None:  # the sender records batches itself
    raise AssertionError("send timers are done by the Sender")


class Sender:
    """Claims, sends and records due deliveries; `run_once` one batch, `run` until cancelled."""

    def __init__(
        self,
        *,
        sessions: Sessions,
        unit_of_work: Callable[[], contextlib.AbstractAsyncContextManager[UnitOfWork]],
        clock: Clock,
        pool: SmtpPool,
        journal: SentJournal,
        mail_from: str,
        breaker: Breaker | None = None,
        batch: int = BATCH,
        lease: dt.timedelta = LEASE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        handlers = {deliveries.SEND: TimerHandler(done=_not_run)}
        common: dict[str, Any] = dict(
            sessions=sessions, unit_of_work=unit_of_work, clock=clock, lease=lease
        )
        self._runner = TimerRunner(store.timers, handlers, batch=batch, **common)
        self._probe = TimerRunner(store.timers, handlers, batch=1, **common)
        self._unit_of_work = unit_of_work
        self._clock = clock
        self._pool = pool
        self._journal = journal
        self._sender = mime.mailbox("", mail_from).address if "@" in mail_from else mail_from
        self._lease = lease
        self._monotonic = monotonic
        self.breaker = breaker or Breaker()
        self.pending = Outcomes()
        self.recording_problem: str | None = None
        self.sent = 0
        self.failed = 0

    def wake(self) -> None:
        """Looks for due deliveries now."""
        self._runner.wake()

    def problem(self) -> str | None:
        """What /readyz reports: the breaker open, or sends waiting to be recorded."""
        return self.recording_problem or self.breaker.problem()

    async def adopt_orphans(self) -> None:
        """Queues the 250s that dead processes journalled but never recorded."""
        records, files = self._journal.orphans()
        self.pending.sent += records
        self.pending.orphan_files += files
        if records:
            log.warning("recording %d sends journalled by a process that died", len(records))

    async def run_once(self) -> int:
        """Records what waits, then claims, sends and records one batch; how many were claimed."""
        batch = await self._record_and_claim()
        if batch is None:
            return 0
        await self._send_batch(*batch)
        await self._record_pending()
        return len(batch[0])

    async def run_due(self) -> int:
        """Sends batch after batch until nothing is due; how many were claimed.

        Pipelined: while one batch is on the SMTP connections, the one before it is recorded
        and the next one claimed, so the connections do not wait for the database; both in one
        transaction, one turn at the database (on SQLite the consumers share its connection:
        each turn waits for the batch of events being applied).
        """
        total = 0
        batch = await self._record_and_claim()
        while batch is not None:
            sending = asyncio.create_task(self._send_batch(*batch))
            error: Exception | None = None
            try:
                batch_after = await self._record_and_claim()
            except Exception as exc:  # the batch on the wire is still sorted before raising
                error, batch_after = exc, None
            total += await sending
            if error is not None:
                raise error
            batch = batch_after
        await self._record_pending()
        return total

    async def _record_and_claim(self) -> tuple[list[Due], dict[str, Any]] | None:
        """Records every waiting outcome and claims the next due items with their deliveries
        (unless the breaker holds sending back), in one transaction; raises (keeping the
        outcomes) on failure."""
        runner: TimerRunner | None = None
        if self.breaker.allows(self._monotonic()):
            runner = self._probe if self.breaker.state == HALF_OPEN else self._runner
        if runner is None and not self.pending:
            return None
        p, self.pending = self.pending, Outcomes()
        batch = None
        try:
            async with self._unit_of_work() as uow:
                await _record(uow, p)
                if runner is not None and (items := await runner.claim(uow.session)):
                    batch = items, await self._load(uow.session, items)
        except BaseException:
            self.pending = p.merged(self.pending)
            raise
        self._recorded(p)
        return batch

    async def _send_batch(self, items: list[Due], rows: dict[str, Any]) -> int:
        """Sends a claimed batch, a share per pooled connection; outcomes wait in `pending`."""
        attempts = [_settled_without_smtp(item, rows.get(item.key)) for item in items]
        to_send = [n for n, attempt in enumerate(attempts) if attempt is None]
        shares = [to_send[c :: self._pool.size] for c in range(self._pool.size)]
        results = await asyncio.gather(
            *(self._send_share([(items[n], rows[items[n].key]) for n in s]) for s in shares if s)
        )
        for share, outcomes in zip([s for s in shares if s], results, strict=True):
            for n, attempt in zip(share, outcomes, strict=True):
                attempts[n] = attempt
        for item, attempt in zip(items, attempts, strict=True):
            self._sort(item, attempt)
        return len(items)

    async def run(self) -> None:
        """Sends due deliveries until cancelled; one log line per change of the database state."""
        await self.adopt_orphans()
        db_down = 0
        while True:
            self._runner._wakeup.clear()
            try:
                claimed = await self.run_due()
                if db_down:
                    log.info("sender: the database answers again; sending resumes")
                db_down, self.recording_problem = 0, None
            except Exception as exc:
                claimed, db_down = 0, db_down + 1
                unrecorded = len(self.pending.sent)
                self.recording_problem = (
                    f"the database is unavailable ({type(exc).__name__}); {unrecorded} sent "
                    "mail(s) wait to be recorded and nothing is sent meanwhile"
                )
                if db_down == 1:
                    log.warning("sender: %s; retrying until it works", self.recording_problem)
            if claimed:
                continue
            delay = POLL_SECONDS
            if db_down:
                delay = backoff(db_down, base=POLL_SECONDS, cap=5.0)
            elif not self.breaker.allows(self._monotonic()):
                delay = self.breaker.wait(self._monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._runner._wakeup.wait(), timeout=delay)

    # --- sending ------------------------------------------------------------------------

    async def _load(self, session: AsyncSession, items: Sequence[Due]) -> dict[str, Any]:
        """The claimed deliveries' addresses, bytes and status, in one query."""
        d = store.Delivery
        rows = await session.execute(
            select(d.delivery_id, d.recipient_email, d.message, d.status, d.traceparent).where(
                keys_in(_KEY, [(item.program_id, item.key) for item in items])
            )
        )
        return {row.delivery_id: row for row in rows}

    async def _send_share(self, share: list[tuple[Due, Any]]) -> list[Attempt | None]:
        """Deliveries over one pooled connection, pipelined; None for those held back (breaker
        open, lease half gone). Each 250 is journalled the moment it is read."""
        spans: dict[int, trace.Span] = {}

        def may_send(index: int) -> bool:
            item, row = share[index]
            if not self.breaker.allows(self._monotonic()) or (
                self._clock.now() > item.leased_until - self._lease / 2
            ):
                return False
            if index not in spans:  # the send is a span of the trace that asked for this email
                spans[index] = span = tracer().start_span(
                    "smtp send",
                    context=context_from_traceparent(row.traceparent),
                    kind=trace.SpanKind.CLIENT,
                )
                if span.is_recording():
                    span.set_attribute("mentorship.delivery_id", row.delivery_id)
            return True

        def settled(index: int, attempt: Attempt) -> None:
            item, _ = share[index]
            if attempt.outcome == Outcome.SENT:
                # before anything else can happen to this process: the 250 is noted
                self._journal.append(
                    SentRecord(item.program_id, item.key, self._clock.now(), item.attempt)
                )
            if (span := spans.pop(index, None)) is not None:
                if span.is_recording():
                    span.set_attribute("mentorship.outcome", attempt.outcome)
                span.end()
            if attempt.outcome == Outcome.SERVER:
                change = self.breaker.failed(self._monotonic(), attempt.reason)
            else:
                change = self.breaker.succeeded()  # it answered, about this message
            if change:
                log.warning(change) if self.breaker.state != "closed" else log.info(change)

        mails = [
            Mail(self._sender, mime.mailbox("", row.recipient_email).address, row.message)
            for _, row in share
        ]
        try:
            async with self._pool.connection() as connection:
                return await connection.send_many(mails, settled=settled, may_send=may_send)
        finally:
            for span in spans.values():
                span.end()

    def _sort(self, item: Due, attempt: Attempt | None) -> None:
        p = self.pending
        if attempt is None:
            p.released.append(item)
        elif attempt.outcome == Outcome.SENT:
            p.sent.append(SentRecord(item.program_id, item.key, self._clock.now(), item.attempt))
            if not attempt.reason:  # sent now, not found sent already: the journal holds it
                p.journalled += 1
        elif attempt.outcome == Outcome.PERMANENT or item.attempt >= MAX_ATTEMPTS:
            p.failed.append((item, attempt.reason))
        else:
            p.retry.append((item, attempt.reason))

    # --- recording ----------------------------------------------------------------------

    async def _record_pending(self) -> None:
        """Records every waiting outcome in one transaction; raises (and keeps them) on failure.

        The batch on the wire sorts its outcomes into a fresh `pending` meanwhile: what it adds
        while this transaction is open is recorded next time, never dropped with this one.
        """
        if not self.pending:
            return
        p, self.pending = self.pending, Outcomes()
        try:
            async with self._unit_of_work() as uow:
                await _record(uow, p)
        except BaseException:
            self.pending = p.merged(self.pending)
            raise
        self._recorded(p)

    def _recorded(self, p: Outcomes) -> None:
        """After the outcomes committed: counters, the journal, the orphans' files, the logs."""
        journalled = p.journalled
        self.sent += len(p.sent)
        self.failed += len(p.failed)
        for path in p.orphan_files:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self._journal.recorded(journalled)
        for item, reason in p.failed:
            log.error("delivery %s/%s failed for good: %s", item.program_id, item.key, reason)
        if p.retry:
            log.info("%d send(s) will be tried again (first: %s)", len(p.retry), p.retry[0][1])


async def _record(uow: UnitOfWork, p: Outcomes) -> None:
    await record_sent(uow, p.sent)
    await record_failed(uow, p.failed)
    await schedule_retries(uow, p.retry)
    await release(uow, p.released)


_DELIVERIES: Table = store.Delivery.__table__  # type: ignore[assignment]
_KEY = (_DELIVERIES.c.program_id, _DELIVERIES.c.delivery_id)


def _about(row: Any) -> dict[str, Any]:
    """What notification.sent and notification.failed both say about a delivery."""
    return {
        "program_id": row.program_id,
        "delivery_id": row.delivery_id,
        "recipient_id": row.recipient_id,
        "kind": row.kind,
        "channel": Channel.EMAIL,
        "source_event_id": row.source_event_id,
    }


def _columns() -> tuple[Any, ...]:
    d = store.Delivery
    return (
        d.program_id,
        d.delivery_id,
        d.recipient_id,
        d.kind,
        d.source_event_id,
        d.message_id,
        d.status,
    )


async def _rows(uow: UnitOfWork, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    query = select(*_columns()).where(keys_in(_KEY, keys))
    if uow.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()  # two replicas recording one 250 emit it once
    rows = await uow.session.execute(query)
    return {(r.program_id, r.delivery_id): r for r in rows}


def _timers_where(*, lease: bool) -> Any:
    t = store.timers
    conditions = [
        t.c.program_id == bindparam("b_program"),
        t.c.kind == deliveries.SEND,
        t.c.key == bindparam("b_key"),
        still_pending(t),
    ]
    if lease:
        conditions.append(t.c.lease_token == bindparam("b_token"))
    return and_(*conditions)


async def record_sent(uow: UnitOfWork, sent: Sequence[SentRecord]) -> None:
    """Deliveries sent, their timers done, notification.sent once per delivery."""
    if not sent:
        return
    rows = await _rows(uow, [(r.program_id, r.delivery_id) for r in sent])
    now = uow.clock.now()
    new = {}
    for record in sent:
        row = rows.get((record.program_id, record.delivery_id))
        if row is not None and row.status != "sent":
            new[(record.program_id, record.delivery_id)] = (record, row)
    if new:
        await uow.session.execute(
            update(_DELIVERIES)
            .where(
                _DELIVERIES.c.program_id == bindparam("b_program"),
                _DELIVERIES.c.delivery_id == bindparam("b_key"),
            )
            .values(status="sent", sent_at=bindparam("b_at"), attempts=bindparam("b_attempt")),
            [
                {
                    "b_program": r.program_id,
                    "b_key": r.delivery_id,
                    "b_at": r.sent_at,
                    "b_attempt": max(r.attempt, 1),
                }
                for r, _ in new.values()
            ],
        )
    await uow.session.execute(
        update(store.timers)
        .where(_timers_where(lease=False))
        .values(status="done", finished_at=now, leased_until=None, lease_token=None),
        [{"b_program": r.program_id, "b_key": r.delivery_id} for r in sent],
    )
    for _record, row in new.values():
        uow.emit(NotificationSent(**_about(row), occurred_at=now, message_id=row.message_id))


async def record_failed(uow: UnitOfWork, failed: Sequence[tuple[Due, str]]) -> None:
    """Deliveries failed for good, with the reason and notification.failed."""
    if not failed:
        return
    rows = await _rows(uow, [(item.program_id, item.key) for item, _ in failed])
    now = uow.clock.now()
    for item, reason in failed:
        row = rows.get((item.program_id, item.key))
        result = await uow.session.execute(
            update(store.timers)
            .where(_timers_where(lease=True))
            .values(
                status="failed",
                finished_at=now,
                leased_until=None,
                lease_token=None,
                last_error=reason,
            ),
            {"b_program": item.program_id, "b_key": item.key, "b_token": item.lease_token},
        )
        if not result.rowcount or row is None or row.status != "pending":  # type: ignore[attr-defined]
            continue
        await uow.session.execute(
            update(_DELIVERIES)
            .where(
                _DELIVERIES.c.program_id == item.program_id, _DELIVERIES.c.delivery_id == item.key
            )
            .values(status="failed", attempts=item.attempt, last_error=reason)
        )
        uow.emit(
            NotificationFailed(
                **_about(row), occurred_at=now, attempts=max(item.attempt, 1), reason=reason
            )
        )


async def schedule_retries(uow: UnitOfWork, retry: Sequence[tuple[Due, str]]) -> None:
    """Transient failures: tried again after a backoff with jitter."""
    if not retry:
        return
    now = uow.clock.now()
    await uow.session.execute(
        update(store.timers)
        .where(_timers_where(lease=True))
        .values(
            due_at=bindparam("b_due"),
            leased_until=None,
            lease_token=None,
            last_error=bindparam("b_error"),
        ),
        [
            {
                "b_program": item.program_id,
                "b_key": item.key,
                "b_token": item.lease_token,
                "b_due": now + dt.timedelta(seconds=retry_delay(item.attempt)),
                "b_error": reason,
            }
            for item, reason in retry
        ],
    )
    await uow.session.execute(
        update(_DELIVERIES)
        .where(
            _DELIVERIES.c.program_id == bindparam("b_program"),
            _DELIVERIES.c.delivery_id == bindparam("b_key"),
        )
        .values(attempts=bindparam("b_attempt"), last_error=bindparam("b_error")),
        [
            {
                "b_program": item.program_id,
                "b_key": item.key,
                "b_attempt": item.attempt,
                "b_error": reason,
            }
            for item, reason in retry
        ],
    )


async def release(uow: UnitOfWork, items: Sequence[Due]) -> None:
    """Items not tried (breaker open, lease half gone): back to pending, the claim not counted."""
    if not items:
        return
    t = store.timers
    await uow.session.execute(
        update(t)
        .where(_timers_where(lease=True))
        .values(leased_until=None, lease_token=None, attempts=t.c.attempts - 1),
        [{"b_program": i.program_id, "b_key": i.key, "b_token": i.lease_token} for i in items],
    )


async def run_sender(running: Running) -> None:
    """Sends due deliveries until the service stops."""
    s = running.settings
    pool = SmtpPool(s, s.smtp_pool_size)
    journal = SentJournal(s.data_dir / "notifications-journal")
    sender = Sender(
        sessions=running.sessions,
        unit_of_work=running.unit_of_work,
        clock=running.clock,
        pool=pool,
        journal=journal,
        mail_from=s.mail_from,
    )
    running.checks.append(sender.problem)
    # a batch of events that queued mail due now wakes the sender at its commit (queueing.py)
    running.consumers.wakers[deliveries.SEND] = sender.wake
    try:
        await sender.run()
    finally:
        running.consumers.wakers.pop(deliveries.SEND, None)
        await pool.close()
        journal.close()
