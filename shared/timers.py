"""Durable timers: work due at a time, kept as rows in the service's own database.

An item is claimed with a lease computed from the clock at claim time, so two replicas never do
it twice and a crash hands it back when the lease ends; it is marked done in the transaction
that records the work's own state and events. See docs/adr/0008-durable-timers.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    case,
    delete,
    func,
    literal_column,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from shared.backoff import backoff
from shared.bus import STREAM, durable_name
from shared.clock import Clock
from shared.db import Sessions, upsert_insert
from shared.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    from shared.events import Event
    from shared.service import Running

log = logging.getLogger("mentorship.timers")

LEASE = dt.timedelta(minutes=2)
_ARMED = "mentorship.timers.armed"  # session.info: the items schedule() / cancel() touched
BATCH = 50
# items scheduled by other transactions (consumers, other replicas) are not signalled here
POLL_SECONDS = 0.5

PENDING, DONE, FAILED = "pending", "done", "failed"


def add_timer_table(metadata: MetaData) -> Table:
    """Adds the `timers` table to a service's own metadata."""
    return Table(
        "timers",
        metadata,
        Column("program_id", String(200), primary_key=True),
        Column("kind", String(60), primary_key=True),
        Column("key", String(300), primary_key=True),
        Column("due_at", DateTime(timezone=True), nullable=False),
        Column("status", String(10), nullable=False),  # pending, done, failed
        Column("payload", JSON, nullable=False),
        Column("attempts", Integer, nullable=False),  # claims so far, the current one included
        Column("leased_until", DateTime(timezone=True), nullable=True),
        Column("lease_token", String(36), nullable=True),
        Column("last_error", Text, nullable=True),
        Column("finished_at", DateTime(timezone=True), nullable=True),
        Index("ix_timers_status_due_at", "status", "due_at"),
    )


@dataclass(frozen=True)
class Due:
    """A claimed item: what was scheduled, which attempt this is, and until when it is ours."""

    program_id: str
    kind: str
    key: str
    due_at: dt.datetime
    payload: dict[str, Any]
    attempt: int
    leased_until: dt.datetime
    lease_token: str


class PermanentFailure(Exception):
    """Raised by a timer handler when trying again cannot help: the item fails at once."""


class LeaseLost(Exception):
    """The item was re-claimed, rescheduled or cancelled while this replica held it."""


@dataclass(frozen=True)
class TimerHandler:
    """What the loop does with a due item of one kind.

    `act` (optional) is a side effect outside the database, such as an SMTP send: it runs under
    the lease and outside any transaction. `done` then runs in the transaction that marks the
    item done, with the work's own state and events. If either raises, the item is tried again
    after `backoff(attempt, base=retry_base_seconds, cap=retry_cap_seconds)`; after
    `max_attempts`, or at once on PermanentFailure, it is marked failed and `gave_up` runs in that
    transaction with the reason.
    """

    done: Callable[[Due, UnitOfWork], Awaitable[None]]
    act: Callable[[Due], Awaitable[None]] | None = None
    gave_up: Callable[[Due, str, UnitOfWork], Awaitable[None]] | None = None
    max_attempts: int = 5
    retry_base_seconds: float = 5.0
    retry_cap_seconds: float = 1800.0
    # events whose consumers in this service must first have consumed what the stream held when
    # a batch of this kind was claimed: a deadline about silence ("no contact for 21 days") is
    # not judged while earlier events wait unread, after an outage or in a backlog. Waited for
    # outside any transaction, at most a quarter of the lease; a consumer that makes no progress
    # for the barrier's stall time does not hold it (the items run, and a line says so)
    after: tuple[type[Event], ...] = ()


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands DateTime(timezone=True) back naive; every instant stored here is UTC
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


@dataclass(frozen=True)
class Arm:
    """One item to arm: (program_id, kind, key) due at `due_at`, with its payload."""

    program_id: str
    kind: str
    key: str
    due_at: dt.datetime
    payload: Mapping[str, Any] | None = None


def armed_row(arm: Arm) -> dict[str, Any]:
    """The row of a freshly armed item: pending, never claimed, no lease, no error.

    For services that write timers with their batch's own upserts (UnitOfWork.upsert): the same
    values `schedule` writes.
    """
    if arm.due_at.tzinfo is None:
        raise ValueError("due_at must be timezone-aware")
    return {
        "program_id": arm.program_id,
        "kind": arm.kind,
        "key": arm.key,
        "due_at": arm.due_at.astimezone(dt.UTC),
        "status": PENDING,
        "payload": dict(arm.payload or {}),
        "attempts": 0,
        "leased_until": None,
        "lease_token": None,
        "last_error": None,
        "finished_at": None,
    }


_KEY = ("program_id", "kind", "key")


async def schedule(
    session: AsyncSession,
    timers: Table,
    *,
    program_id: str,
    kind: str,
    key: str,
    due_at: dt.datetime,
    payload: Mapping[str, Any] | None = None,
) -> None:
    """Arms the item (program_id, kind, key) for due_at; scheduling it again moves it.

    A done or failed item is armed again; an item in flight loses its lease, so the run in
    flight is discarded when it finishes and the item runs at its new time.
    """
    await schedule_many(session, timers, [Arm(program_id, kind, key, due_at, payload)])


async def schedule_many(session: AsyncSession, timers: Table, arms: Iterable[Arm]) -> int:
    """`schedule` for many items in one statement (executemany); returns how many were armed.

    When the same item comes twice, the last one wins, as two `schedule` calls would have it.
    """
    rows = list({tuple(row[k] for k in _KEY): row for row in map(armed_row, arms)}.values())
    if not rows:
        return 0
    insert = upsert_insert(session)(timers)
    changes = {name: insert.excluded[name] for name in rows[0] if name not in _KEY}
    await session.execute(
        insert.on_conflict_do_update(index_elements=list(_KEY), set_=changes), rows
    )
    # a timer's own `done` that re-arms its item is told apart from a lease lost (TimerRunner)
    session.info.setdefault(_ARMED, set()).update(tuple(row[k] for k in _KEY) for row in rows)
    return len(rows)


async def cancel(
    session: AsyncSession, timers: Table, *, program_id: str, kind: str, key: str
) -> bool:
    """Removes a pending item; returns whether there was one (a run in flight is discarded)."""
    result = await session.execute(
        delete(timers).where(
            timers.c.program_id == program_id,
            timers.c.kind == kind,
            timers.c.key == key,
            still_pending(timers),
        )
    )
    session.info.setdefault(_ARMED, set()).add((program_id, kind, key))  # see schedule()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def still_pending(timers: Table) -> ColumnElement[bool]:
    """`status = 'pending'` for a statement that finds its timers by key, written so that no index
    on status can serve it (status is never NULL: the same rows). Before a table has statistics
    (a new database, a first round) PostgreSQL costed the primary key and an index starting with
    status alike for `key = ... AND status = 'pending'` and could take the second, reading every
    pending timer once per row: 0.9 ms a row, 4.4 s to mark a round's 5,000 sent mails done."""
    return timers.c.status.concat("") == PENDING


def _claimable(timers: Table, kinds: list[str], now: dt.datetime) -> Any:
    return and_(
        timers.c.status == PENDING,
        timers.c.kind.in_(kinds),
        timers.c.due_at <= now,
        or_(timers.c.leased_until.is_(None), timers.c.leased_until <= now),
    )


def _this(timers: Table, item: Due) -> Any:
    """The item's row, as long as this replica's lease on it holds."""
    return and_(
        timers.c.program_id == item.program_id,
        timers.c.kind == item.kind,
        timers.c.key == item.key,
        still_pending(timers),
        timers.c.lease_token == item.lease_token,
    )


class TimerRunner:
    """Claims and does the due items of some kinds; `run_due` once, or `run` until cancelled."""

    def __init__(
        self,
        timers: Table,
        handlers: Mapping[str, TimerHandler],
        *,
        sessions: Sessions,
        unit_of_work: Callable[[], contextlib.AbstractAsyncContextManager[UnitOfWork]],
        clock: Clock,
        lease: dt.timedelta = LEASE,
        batch: int = BATCH,
        on_commit: Callable[[], None] = lambda: None,
        caught_up: Callable[[Sequence[type[Event]]], Awaitable[None]] | None = None,
    ) -> None:
        self._timers = timers
        self._caught_up = caught_up
        self._handlers = dict(handlers)
        self._sessions = sessions
        self._unit_of_work = unit_of_work
        self._clock = clock
        self._lease = lease
        self._batch = batch
        self._on_commit = on_commit
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        """Makes a sleeping `run` look for due items now (after new items, or a clock move)."""
        self._wakeup.set()

    async def claim(self, session: AsyncSession | None = None) -> list[Due]:
        """Leases up to one batch of due items to this runner, oldest first: in a transaction of
        its own, or in the caller's `session` (the lease then commits with the caller's work)."""
        if session is not None:
            return await self._claim_in(session)
        async with self._sessions() as own, own.begin():
            return await self._claim_in(own)

    async def _claim_in(self, session: AsyncSession) -> list[Due]:
        t, kinds = self._timers, list(self._handlers)
        now = self._clock.now()  # at claim time: a lease from a stale instant would be short
        # SQLite: the due rows by rowid (a row-value IN made it scan every due row per row
        # claimed: 10 ms for 200 of 2,800 due sends, 4 ms by rowid)
        dialect = _dialect(session)
        columns: list[ColumnElement[Any]] = (
            [literal_column("rowid")] if dialect == "sqlite" else [t.c[name] for name in _KEY]
        )
        due = select(*columns).where(_claimable(t, kinds, now)).order_by(t.c.due_at)
        due = due.limit(self._batch)
        token, until = str(uuid.uuid4()), now + self._lease
        lease = update(t).values(leased_until=until, lease_token=token, attempts=t.c.attempts + 1)
        if dialect == "postgresql":
            # the batch picked once, in a materialized CTE (replicas take disjoint batches).
            # As `key IN (batch)`, a table without statistics yet (a new database) was planned
            # as a nested loop running the batch's query again per candidate row: each row
            # leased left the batch and let the next one in, and one claim of 200 leased all
            # 5,000 due sends, in 6 s. Its rows are locked: joined by key alone, each is one
            # primary-key lookup (checked again against the batch's conditions, the planner
            # scanned the due rows once per row of the batch: 330 ms for 200 of 5,000)
            batch = due.with_for_update(skip_locked=True).cte("batch").prefix_with("MATERIALIZED")
            lease = lease.where(*(t.c[name] == batch.c[name] for name in _KEY))
        else:
            # one statement: the one writer makes the check and the lease atomic
            picked = columns[0] if len(columns) == 1 else tuple_(*columns)
            lease = lease.where(picked.in_(due), _claimable(t, kinds, now))
        rows = await session.execute(
            lease.returning(
                t.c.program_id, t.c.kind, t.c.key, t.c.due_at, t.c.payload, t.c.attempts
            )
        )
        claimed = [
            Due(
                program_id=r.program_id,
                kind=r.kind,
                key=r.key,
                due_at=_utc(r.due_at),
                payload=dict(r.payload),
                attempt=r.attempts,
                leased_until=until,
                lease_token=token,
            )
            for r in rows
        ]
        return sorted(claimed, key=lambda item: (item.due_at, item.key))

    async def run_due(self) -> int:
        """Does every item due by the clock, batch after batch; returns how many were claimed."""
        claimed = 0
        while True:
            items = await self.claim()
            await self._catch_up(items)
            for item in items:
                await self._do(item)
            claimed += len(items)
            if len(items) < self._batch:
                return claimed

    async def _catch_up(self, items: Sequence[Due]) -> None:
        """Waits until the consumers the claimed kinds name in `after` have caught up."""
        after = list(dict.fromkeys(e for i in items for e in self._handlers[i.kind].after))
        if not after or self._caught_up is None:
            return
        try:
            await asyncio.wait_for(self._caught_up(after), timeout=self._lease.total_seconds() / 4)
        except Exception as exc:  # stalled, too far behind, NATS away: as without `after`
            reason = "still behind" if isinstance(exc, TimeoutError) else str(exc)
            log.warning(
                "timers: doing %d due item(s) before %s caught up (%s)",
                len(items),
                ", ".join(e.subject for e in after),
                reason,
            )

    async def next_due(self, within: dt.timedelta | None = None) -> dt.datetime | None:
        """When the earliest pending item of these kinds can next be claimed; with `within`,
        only if that is before now + within (else None).

        `within` bounds the index range read: the loop sleeps at most POLL_SECONDS anyway, and
        an item due later cannot be free sooner. Without it, every pending row was read each
        poll: 33 ms a poll with a round's 28,000 armed reminders (SQLite, the one connection
        held meanwhile), for an answer the loop capped at POLL_SECONDS.
        """
        t = self._timers
        free_at = case(
            (and_(t.c.leased_until.is_not(None), t.c.leased_until > t.c.due_at), t.c.leased_until),
            else_=t.c.due_at,
        )
        where = [t.c.status == PENDING, t.c.kind.in_(list(self._handlers))]
        if within is not None:
            where.append(t.c.due_at <= self._clock.now() + within)
        async with self._sessions() as session:
            earliest = await session.scalar(select(func.min(free_at)).where(*where))
        return None if earliest is None else _utc(earliest)

    async def run(self) -> None:
        """Does due items until cancelled, sleeping until the next is due or a wake-up."""
        failures = 0
        while True:
            self._wakeup.clear()  # before looking: a wake() meanwhile is not lost
            try:
                await self.run_due()
                upcoming = await self.next_due(within=dt.timedelta(seconds=POLL_SECONDS))
                failures = 0
                delay = POLL_SECONDS
                if upcoming is not None:
                    delay = min(delay, max(0.0, (upcoming - self._clock.now()).total_seconds()))
            except Exception:  # database away: keep the items, look again later
                failures += 1
                delay = backoff(failures, base=POLL_SECONDS, cap=30.0)
                log.exception("timers: will look again in %.1fs", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=delay)

    async def _do(self, item: Due) -> None:
        handler = self._handlers[item.kind]
        if item.attempt > handler.max_attempts:  # only leases that ran out get here
            await self._failed(item, handler, "not finished within its lease; did the process die?")
            return
        if self._clock.now() > item.leased_until - self._lease / 2:
            await self._release(item)  # the batch took long: start only with half a lease left
            return
        try:
            if handler.act is not None:
                await handler.act(item)
            async with self._unit_of_work() as uow:
                # done first, then the item's own row: the order in which consumers lock the
                # same rows (a projection's row, then the timer it re-arms), so the two never
                # wait on each other in a cycle (a deadlock PostgreSQL breaks after a second)
                await handler.done(item, uow)
                await self._finish(uow.session, item, status=DONE, error=None)
        except LeaseLost:
            log.warning(
                "timer %s/%s/%s: lease lost, result discarded", item.program_id, item.kind, item.key
            )
            return
        except Exception as exc:
            permanent = isinstance(exc, PermanentFailure)
            reason = (str(exc) if permanent else f"{type(exc).__name__}: {exc}")[:2000]
            if permanent or item.attempt >= handler.max_attempts:
                await self._failed(item, handler, reason)
            else:
                await self._retry(item, handler, reason)
            return
        self._on_commit()

    async def _finish(
        self, session: AsyncSession, item: Due, *, status: str, error: str | None
    ) -> None:
        result = await session.execute(
            update(self._timers)
            .where(_this(self._timers, item))
            .values(
                status=status,
                last_error=error,
                finished_at=self._clock.now(),
                leased_until=None,
                lease_token=None,
            )
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            if (item.program_id, item.kind, item.key) in session.info.get(_ARMED, ()):
                return  # its own `done` armed it again (it runs at its new time) or cancelled it
            raise LeaseLost(f"{item.kind} {item.key!r} is no longer leased to this runner")

    async def _failed(self, item: Due, handler: TimerHandler, reason: str) -> None:
        try:
            async with self._unit_of_work() as uow:
                await self._finish(uow.session, item, status=FAILED, error=reason)
                if handler.gave_up is not None:
                    await handler.gave_up(item, reason, uow)
        except LeaseLost:
            return
        log.error(
            "timer %s/%s/%s failed for good: %s", item.program_id, item.kind, item.key, reason
        )
        self._on_commit()

    async def _retry(self, item: Due, handler: TimerHandler, reason: str) -> None:
        delay = backoff(
            item.attempt, base=handler.retry_base_seconds, cap=handler.retry_cap_seconds
        )
        retry_at = self._clock.now() + dt.timedelta(seconds=delay)
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(self._timers)
                .where(_this(self._timers, item))
                .values(due_at=retry_at, leased_until=None, lease_token=None, last_error=reason)
            )
        log.warning(
            "timer %s/%s/%s attempt %d failed (%s); retrying at %s",
            item.program_id,
            item.kind,
            item.key,
            item.attempt,
            reason,
            retry_at.isoformat(),
        )

    async def _release(self, item: Due) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(self._timers)
                .where(_this(self._timers, item))
                .values(leased_until=None, lease_token=None, attempts=self._timers.c.attempts - 1)
            )


def timer_loop(
    timers: Table,
    handlers: Mapping[str, TimerHandler],
    *,
    lease: dt.timedelta = LEASE,
    batch: int = BATCH,
) -> Callable[[Running], Coroutine[Any, Any, None]]:
    """A service loop (ServiceDefinition.loops) doing the due items of these kinds."""

    async def run_timers(running: Running) -> None:
        """Does due timer items until the service stops."""

        async def caught_up(events: Sequence[type[Event]]) -> None:
            """Returns once this service's consumers of `events` acked what the stream holds."""
            rt = running.consumers
            last = (await rt.js.stream_info(STREAM)).state.last_seq
            subjects = [event.subject for event in events]
            durables = [durable_name(running.name, subject) for subject in subjects]
            await rt.barrier.wait(durables, last, subjects=subjects)

        runner = TimerRunner(
            timers,
            handlers,
            sessions=running.sessions,
            unit_of_work=running.unit_of_work,
            clock=running.clock,
            lease=lease,
            batch=batch,
            on_commit=running.relay.wake,
            caught_up=caught_up,
        )
        await runner.run()

    return run_timers
