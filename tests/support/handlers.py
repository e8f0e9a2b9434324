"""Handler tests without NATS: a real SQLite database, a unit of work, what it emitted.

async with handler_db(store.Base.metadata, tmp_path) as db:
    uow = await db.apply(on_pair_formed, event)
    assert [type(e) for e in uow.emitted] == [SessionScheduled]
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import MetaData
from sqlalchemy import event as sa_event

from shared.clock import FixedClock
from shared.cpu import CpuPool
from shared.db import Sessions, make_engine, make_sessions
from shared.events import Event
from shared.outbox import DeliveryTables
from shared.settings import Settings
from shared.unit_of_work import UnitOfWork, unit_of_work

E = TypeVar("E", bound=Event)

START = dt.datetime(2027, 3, 1, 8, tzinfo=dt.UTC)  # a Monday

_POOL: CpuPool | None = None


def _test_pool() -> CpuPool:
    """One real worker process for every handler test (its functions must pickle, as in prod)."""
    global _POOL
    if _POOL is None:
        _POOL = CpuPool(1)
        atexit.register(_POOL.close)
    return _POOL


@dataclass
class HandlerDb:
    """A service's tables in a fresh SQLite file, with the clock and settings handlers see."""

    sessions: Sessions
    tables: DeliveryTables
    clock: FixedClock
    settings: Settings
    source: str

    async def apply(
        self, handler: Callable[[E, UnitOfWork], Awaitable[None]], event: E
    ) -> UnitOfWork:
        """Runs the handler in one committed transaction and returns its unit of work."""
        async with self.unit_of_work() as uow:
            await handler(event, uow)
        return uow

    @contextlib.contextmanager
    def statements(self) -> Iterator[list[str]]:
        """The SQL statements sent meanwhile, each as its first three words."""
        sent: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            sent.append(" ".join(statement.split()[:3]))

        engine = self.sessions.kw["bind"].sync_engine
        sa_event.listen(engine, "before_cursor_execute", record)
        try:
            yield sent
        finally:
            sa_event.remove(engine, "before_cursor_execute", record)

    def unit_of_work(self) -> contextlib.AbstractAsyncContextManager[UnitOfWork]:
        """A committed transaction, as the consumer gives a handler."""
        return unit_of_work(
            sessions=self.sessions,
            tables=self.tables,
            clock=self.clock,
            settings=self.settings,
            source=self.source,
            cpu=_test_pool(),
        )


@contextlib.asynccontextmanager
async def handler_db(
    metadata: MetaData,
    tables: DeliveryTables,
    tmp_path: Path,
    *,
    source: str = "test",
    now: dt.datetime = START,
    **settings: Any,
) -> AsyncIterator[HandlerDb]:
    """A fresh SQLite database with `metadata`'s tables, for one test."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'handlers.sqlite3'}")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        yield HandlerDb(
            sessions=make_sessions(engine),
            tables=tables,
            clock=FixedClock(now),
            settings=Settings(data_dir=tmp_path / "data", **settings),
            source=source,
        )
    finally:
        await engine.dispose()
