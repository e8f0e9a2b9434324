"""The unit of work a handler gets: its transaction, settings, clock, CPU pool, and what it
emits (the transactional outbox) and writes in batches (upserts)."""

from __future__ import annotations

import contextlib
import functools
import json
import operator
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import Table, insert, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase

from shared.bus import event_headers
from shared.clock import Clock
from shared.cpu import CpuPool
from shared.db import Sessions, keys_in, upsert_insert
from shared.events import Event
from shared.outbox import DeliveryTables
from shared.settings import Settings
from shared.telemetry import current_traceparent

E = TypeVar("E", bound=Event)
M = TypeVar("M", bound=DeclarativeBase)


class UnitOfWork:
    """One event's work: its session, the settings and clock, and the events it emits.

    Emitted events are kept here and written to the outbox by whoever owns the transaction
    (the consumer, once per batch; `unit_of_work` for work no event started), so they are
    published only if the transaction commits, and dropped with a savepoint that rolls back.
    """

    def __init__(
        self,
        *,
        session: AsyncSession,
        tables: DeliveryTables,
        clock: Clock,
        settings: Settings,
        source: str,
        cpu: CpuPool,
    ) -> None:
        self.session = session
        self.cpu = cpu  # await uow.cpu.run(fn, *args): CPU-heavy work off the event loop
        self.clock = clock
        self.settings = settings
        self.tables = tables
        self.source = source
        self.emitted: list[Event] = []
        # the events this unit of work applies (the consumer's whole batch, or the one event of
        # the event-by-event path): a handler may read ahead for the rest of its batch
        self.batch: Sequence[Event] = ()
        self._traceparents: list[str | None] = []
        self.writes: list[Upsert] = []
        self.wakes: set[str] = set()  # loops to wake once this commits (see `wake`)
        self._at_end: dict[str, Callable[[], Awaitable[None]]] = {}  # see `at_end`
        # rows the consumer loaded for the whole batch (None: known not to exist), by model and
        # primary key; see Preload
        self._loaded: dict[tuple[type[Any], tuple[Any, ...]], Any] = {}

    async def get(self, model: type[R], key: tuple[Any, ...]) -> R | None:
        """The row of `model` with this primary key, or None.

        Rows the subscription preloads (Subscription.preload) come from the batch's one query,
        with no statement per event; others are looked up (session.get).
        """
        cached = self._loaded.get((model, key), _MISSING)
        if cached is not _MISSING:
            return cast("R | None", cached)
        return await self.session.get(model, key)

    def peek(self, model: type[R], key: tuple[Any, ...]) -> tuple[bool, R | None]:
        """(whether the batch loaded this key, its row or None): a lookup that never queries."""
        cached = self._loaded.get((model, key), _MISSING)
        if cached is _MISSING:
            return False, None
        return True, cast("R | None", cached)

    def add(self, row: DeclarativeBase) -> None:
        """Adds a new row to the session; later `get`s in the same batch see it."""
        self.session.add(row)
        self._loaded[(type(row), _key_of(row))] = row

    def preloaded(self, model: type[Any], rows: dict[tuple[Any, ...], Any]) -> None:
        """Records rows loaded for the batch (the consumer's step; None for a missing key)."""
        for key, row in rows.items():
            self._loaded[(model, key)] = row

    def at_end(self, name: str, step: Callable[[], Awaitable[None]]) -> None:
        """Runs `step` (once per name) when the handlers of this unit of work are done, before
        its writes: a batch-level step, such as composing a whole batch's mails in one call to
        the CPU pool instead of one per event. What it writes and emits commits with the batch.
        """
        self._at_end.setdefault(name, step)

    async def finish(self) -> None:
        """The `at_end` steps, in the order they were first asked for (the transaction's owner
        calls this after the last handler)."""
        while self._at_end:
            name = next(iter(self._at_end))
            await self._at_end.pop(name)()

    def wake(self, loop: str) -> None:
        """Asks the service's loop registered under this name (ConsumerRuntime.wakers) to look
        for work as soon as this transaction commits, instead of at its next poll: the sender
        when a mail is due now. Dropped with a savepoint that rolls back, as emitted events are.
        """
        self.wakes.add(loop)

    def emit(self, event: Event) -> None:
        """Queues the event for the outbox; it is published only if the transaction commits."""
        self.emitted.append(event)
        self._traceparents.append(current_traceparent())

    def upsert(
        self,
        target: Table | type[DeclarativeBase],
        values: Mapping[str, Any],
        *,
        add: tuple[str, ...] = (),
        if_absent: bool = False,
    ) -> None:
        """Inserts the row, or updates it where its primary key exists, when the batch commits.

        For pure writes on hot paths (a registration): the rows of a batch go to the database in
        one statement per table, in event order, instead of a lookup and a write per event. The
        write is not visible to reads in the same batch. Columns in `add` are added to the
        stored value (counters) instead of replacing it. `if_absent`: a row whose key exists is
        left as it is (insert or nothing; the first of the batch's rows for a key wins).
        """
        if add and if_absent:
            raise ValueError("upsert takes add= or if_absent=, not both")
        table = target if isinstance(target, Table) else cast(Table, target.__table__)
        self.writes.append(Upsert(table, dict(values), add, if_absent))

    def upsert_row(self, model: type[M], values: Mapping[str, Any]) -> M:
        """`upsert` a new row of a mapped class, and return it as later `get`s of the batch see it.

        The returned object reads and writes the deferred upsert's own values: a later event of
        the batch that changes an attribute changes what the batch writes, in the same one
        statement per table. It is not an ORM instance (nothing is added to the session); use
        it only for the model's columns.
        """
        table = cast(Table, model.__table__)  # type: ignore[attr-defined]
        upsert = Upsert(table, dict(values))
        self.writes.append(upsert)
        row = PendingRow(upsert.values)
        key = tuple(upsert.values[name] for name in _primary_key(model))
        self._loaded[(model, key)] = row
        return cast(M, row)

    def outbox_rows(self) -> list[dict[str, object]]:
        """The outbox rows of what was emitted, in order."""
        if not self.emitted:
            return []
        now = self.clock.now()
        return [
            {
                "event_id": str(event.event_id),
                "subject": event.subject,
                "payload": event.model_dump_json().encode(),
                "headers": json.dumps(
                    event_headers(event, source=self.source, traceparent=traceparent)
                ),
                "created_at": now,
                "attempts": 0,
            }
            for event, traceparent in zip(self.emitted, self._traceparents, strict=True)
        ]


_MISSING = object()


class PendingRow:
    """A row that a deferred upsert will write: attribute access on the upsert's values."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Any]) -> None:
        object.__setattr__(self, "_values", values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self._values[name] = value

    def __repr__(self) -> str:
        return f"PendingRow({self._values!r})"


@functools.cache
def _primary_key(model: type[Any]) -> tuple[str, ...]:
    """The attribute names of a mapped class's primary key, in its column order."""
    mapper = inspect(model)
    return tuple(mapper.get_property_by_column(column).key for column in mapper.primary_key)


def _key_of(row: Any) -> tuple[Any, ...]:
    """A mapped row's primary key, in its column order."""
    return tuple(getattr(row, name) for name in _primary_key(row.__class__))


R = TypeVar("R")


def _no_key(event: Any) -> tuple[Any, ...]:
    raise TypeError("this Preload has keys=, not key=")


@dataclass(frozen=True)
class Preload(Generic[E]):
    """Rows a subscription's handler reads by primary key, loaded for a whole batch at once.

    `key(event)` gives the primary key (a tuple, in the model's primary-key column order) of
    the `model` row the handler will `uow.get`; `keys(event)` instead, several (a session's
    attendees, say). The consumer loads every such row of a batch in one query before the
    handlers run, so a read-modify-write handler (a projection that updates a row) costs no
    statement per event. Handlers add new rows with `uow.add`.
    """

    model: type[DeclarativeBase]
    key: Callable[[E], tuple[Any, ...]] = _no_key
    keys: Callable[[E], Iterable[tuple[Any, ...]]] | None = None

    def __post_init__(self) -> None:
        if (self.key is _no_key) == (self.keys is None):
            raise TypeError("Preload takes key= or keys=, exactly one")

    def _keys_of(self, events: list[E]) -> list[tuple[Any, ...]]:
        if self.keys is None:
            return list(dict.fromkeys(self.key(event) for event in events))
        return list(dict.fromkeys(k for event in events for k in self.keys(event)))

    async def load(self, session: AsyncSession, events: list[E]) -> dict[tuple[Any, ...], Any]:
        """The rows for these events' keys, None where a key has no row (chunks of 500)."""
        mapper = inspect(self.model)
        columns = list(mapper.primary_key)
        keys = self._keys_of(events)
        found: dict[tuple[Any, ...], Any] = dict.fromkeys(keys)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            statement = select(self.model).where(keys_in(columns, chunk))
            for row in await session.scalars(statement):
                found[_key_of(row)] = row
        return found


@dataclass(frozen=True)
class Upsert:
    """One deferred insert-or-update of a row."""

    table: Table
    values: dict[str, Any]
    add: tuple[str, ...] = ()
    if_absent: bool = False  # insert or nothing: an existing row is kept


async def write_upserts(session: AsyncSession, writes: list[Upsert]) -> None:
    """Executes deferred upserts: one executemany per table and column set, in order."""
    groups: dict[tuple[Table, tuple[str, ...], tuple[str, ...], bool], list[dict[str, Any]]] = {}
    for write in writes:
        group = (write.table, tuple(write.values), write.add, write.if_absent)
        groups.setdefault(group, []).append(write.values)
    build = upsert_insert(session)
    for (table, columns, add, if_absent), rows in groups.items():
        keys = [c.name for c in table.primary_key.columns]
        if if_absent:
            first = list({tuple(row[k] for k in keys): row for row in reversed(rows)}.values())
            await session.execute(build(table).on_conflict_do_nothing(index_elements=keys), first)
            continue
        rows = _one_row_per_key(rows, keys, add)  # one statement may not touch a row twice
        statement = build(table)
        changes: dict[str, Any] = {
            name: (table.c[name] + statement.excluded[name])
            if name in add
            else statement.excluded[name]
            for name in columns
            if name not in keys
        }
        await session.execute(
            statement.on_conflict_do_update(index_elements=keys, set_=changes), rows
        )


def _one_row_per_key(
    rows: list[dict[str, Any]], keys: list[str], add: tuple[str, ...]
) -> list[dict[str, Any]]:
    key_of = operator.itemgetter(*keys)
    if len(set(map(key_of, rows))) == len(rows):
        return rows  # the usual batch: every row its own key
    merged: dict[Any, dict[str, Any]] = {}
    for row in rows:
        key = key_of(row)
        earlier = merged.get(key)
        if earlier is not None:
            row = row | {name: earlier[name] + row[name] for name in add}
        merged[key] = row
    return list(merged.values())


async def write_outbox(
    session: AsyncSession, tables: DeliveryTables, rows: list[dict[str, object]]
) -> None:
    """Inserts outbox rows in one statement (one round trip per batch, not per event)."""
    if rows:
        await session.execute(insert(tables.outbox), rows)


@contextlib.asynccontextmanager
async def unit_of_work(
    *,
    sessions: Sessions,
    tables: DeliveryTables,
    clock: Clock,
    settings: Settings,
    source: str,
    cpu: CpuPool,
) -> AsyncIterator[UnitOfWork]:
    """A transaction of its own for work no event started (timers, HTTP), with its events."""
    async with sessions() as session, session.begin():
        uow = UnitOfWork(
            session=session, tables=tables, clock=clock, settings=settings, source=source, cpu=cpu
        )
        yield uow
        await uow.finish()
        await write_upserts(session, uow.writes)
        await write_outbox(session, tables, uow.outbox_rows())
