"""Durable timers on real SQLite and PostgreSQL databases, driven by a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.clock import FixedClock
from shared.cpu import CpuPool
from shared.db import Sessions, make_engine, make_sessions
from shared.outbox import add_delivery_tables
from shared.settings import Settings
from shared.timers import (
    LEASE,
    Arm,
    Due,
    PermanentFailure,
    TimerHandler,
    TimerRunner,
    add_timer_table,
    armed_row,
    cancel,
    schedule,
    schedule_many,
    still_pending,
)
from shared.unit_of_work import UnitOfWork, unit_of_work
from tests.support.waiting import eventually

START = dt.datetime(2027, 3, 1, 8, tzinfo=dt.UTC)
KIND = "reminder"

metadata = MetaData()
outbox_tables = add_delivery_tables(metadata)
timers = add_timer_table(metadata)
# one row per execution that committed, without a unique key: a second execution would show
executions = Table(
    "executions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(300), nullable=False),
    Column("replica", String(20), nullable=False),
    Column("at", String(40), nullable=False),
)


@dataclass
class Replica:
    """One process's view of the database: its own engine and a runner."""

    name: str
    engine: AsyncEngine
    sessions: Sessions
    clock: FixedClock
    settings: Settings
    acted: list[str] = field(default_factory=list)

    def unit_of_work(self) -> contextlib.AbstractAsyncContextManager[UnitOfWork]:
        return unit_of_work(
            sessions=self.sessions,
            tables=outbox_tables,
            clock=self.clock,
            settings=self.settings,
            source=self.name,
            cpu=CpuPool(threads=True),
        )

    def runner(self, handler: TimerHandler, **options: object) -> TimerRunner:
        return TimerRunner(
            timers,
            {KIND: handler},
            sessions=self.sessions,
            unit_of_work=self.unit_of_work,
            clock=self.clock,
            **options,  # type: ignore[arg-type]
        )

    def recording(self, **options: object) -> TimerHandler:
        """A handler that records each execution in the transaction that marks it done."""

        async def act(item: Due) -> None:
            self.acted.append(item.key)
            await asyncio.sleep(0)  # let the other replica interleave

        async def done(item: Due, uow: UnitOfWork) -> None:
            await uow.session.execute(
                insert(executions).values(
                    key=item.key, replica=self.name, at=uow.clock.now().isoformat()
                )
            )

        return TimerHandler(done=done, act=act, **options)  # type: ignore[arg-type]


@pytest.fixture
async def url(tmp_path: Path, database_url: str | None) -> AsyncIterator[str]:
    url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'timers.sqlite3'}"
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    await engine.dispose()
    yield url


@pytest.fixture
async def replicas(url: str, tmp_path: Path) -> AsyncIterator[Callable[[str], Replica]]:
    clock = FixedClock(START)
    made: list[Replica] = []

    def replica(name: str) -> Replica:
        engine = make_engine(url)
        made.append(
            Replica(name, engine, make_sessions(engine), clock, Settings(data_dir=tmp_path))
        )
        return made[-1]

    yield replica
    for r in made:
        await r.engine.dispose()


async def arm(r: Replica, key: str, due_at: dt.datetime, **payload: object) -> None:
    async with r.sessions() as session, session.begin():
        await schedule(
            session, timers, program_id="prog", kind=KIND, key=key, due_at=due_at, payload=payload
        )


async def executed(r: Replica) -> list[tuple[str, str]]:
    async with r.sessions() as session:
        rows = await session.execute(select(executions.c.key, executions.c.at).order_by("id"))
        return [(key, at) for key, at in rows]


async def timer_row(r: Replica, key: str) -> dict[str, object]:
    async with r.sessions() as session:
        row = (await session.execute(select(timers).where(timers.c.key == key))).one()
        return dict(row._mapping)


async def test_weeks_of_fake_time_do_each_item_once_and_not_before_it_is_due(replicas):
    r = replicas("a")
    due = {
        f"day-{d}-{h}": START + dt.timedelta(days=d, hours=h) for d in range(42) for h in (3, 15)
    }
    for key, at in due.items():
        await arm(r, key, at)
    runner = r.runner(r.recording(), batch=7)
    for _ in range(6 * 7 * 4):  # six weeks in steps of six hours
        r.clock.advance(dt.timedelta(hours=6))
        await runner.run_due()
    done = await executed(r)
    assert sorted(key for key, _ in done) == sorted(due)
    for key, at in done:
        ran = dt.datetime.fromisoformat(at)
        assert due[key] <= ran < due[key] + dt.timedelta(hours=6), key
    assert await runner.next_due() is None


async def test_the_loop_sleeps_until_woken_and_does_what_the_fake_clock_made_due(replicas):
    r = replicas("a")
    await arm(r, "now", START)
    await arm(r, "in-three-weeks", START + dt.timedelta(weeks=3))
    runner = r.runner(r.recording())
    loop = asyncio.create_task(runner.run())
    try:

        async def done(*keys: str) -> bool:
            return [k for k, _ in await executed(r)] == list(keys)

        await eventually(lambda: done("now"), what="the item due now")
        # the pass that did "now" saw the later item and left it: it is not due yet
        assert (await timer_row(r, "in-three-weeks"))["status"] == "pending"
        r.clock.advance(dt.timedelta(weeks=3))
        runner.wake()
        await eventually(lambda: done("now", "in-three-weeks"), what="the item three weeks on")
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


async def test_two_replicas_on_one_database_do_each_of_several_hundred_items_once(replicas):
    a, b = replicas("a"), replicas("b")
    keys = [f"item-{i:03d}" for i in range(400)]
    for key in keys:
        await arm(a, key, START)
    runners = [a.runner(a.recording(), batch=10), b.runner(b.recording(), batch=10)]
    loops = [asyncio.create_task(runner.run()) for runner in runners]
    try:

        async def all_done() -> bool:
            return len(await executed(a)) >= len(keys)

        await eventually(all_done, timeout=120, what="every item done")
    finally:
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
    done = await executed(a)
    assert sorted(key for key, _ in done) == keys  # each committed exactly once
    assert sorted(a.acted + b.acted) == keys  # and its side effect ran exactly once
    assert a.acted and b.acted, "both replicas took part"
    async with a.sessions() as session:
        statuses = await session.execute(select(timers.c.status, func.count()).group_by("status"))
        assert dict(statuses.all()) == {"done": len(keys)}


async def test_claims_made_at_the_same_moment_by_two_replicas_take_disjoint_items(replicas):
    a, b = replicas("a"), replicas("b")
    keys = [f"item-{i:03d}" for i in range(300)]
    for key in keys:
        await arm(a, key, START)
    claimers = [a.runner(a.recording(), batch=25), b.runner(b.recording(), batch=25)]
    taken: list[list[str]] = [[], []]
    while True:
        batches = await asyncio.gather(*(runner.claim() for runner in claimers))
        if not any(batches):
            break
        for mine, batch in zip(taken, batches, strict=True):
            mine.extend(item.key for item in batch)
    assert not set(taken[0]) & set(taken[1])
    assert sorted(taken[0] + taken[1]) == keys


async def test_an_item_claimed_by_a_crashed_replica_comes_back_after_the_lease(replicas):
    crashed, survivor = replicas("crashed"), replicas("survivor")
    await arm(crashed, "k", START)
    [item] = await crashed.runner(crashed.recording()).claim()  # ... and the process dies
    runner = survivor.runner(survivor.recording())
    assert await runner.run_due() == 0
    survivor.clock.advance(LEASE - dt.timedelta(seconds=1))
    assert await runner.run_due() == 0
    assert await runner.next_due() == item.leased_until
    # within a window: the leased item (due long ago) is seen, its lease end given
    assert await runner.next_due(within=dt.timedelta(seconds=2)) == item.leased_until
    survivor.clock.advance(dt.timedelta(seconds=1))
    assert await runner.run_due() == 1
    assert [key for key, _ in await executed(survivor)] == ["k"]
    assert (await timer_row(survivor, "k"))["attempts"] == 2
    assert survivor.acted == ["k"] and crashed.acted == []


async def test_a_failing_item_is_retried_with_backoff_then_failed_with_the_reason(replicas):
    r = replicas("a")
    gave_up: list[tuple[str, int, str]] = []

    async def done(item: Due, uow: UnitOfWork) -> None:
        raise ConnectionError(f"attempt {item.attempt} refused")

    async def record_give_up(item: Due, reason: str, uow: UnitOfWork) -> None:
        gave_up.append((item.key, item.attempt, reason))

    handler = TimerHandler(
        done=done,
        gave_up=record_give_up,
        max_attempts=3,
        retry_base_seconds=10,
        retry_cap_seconds=15,
    )
    runner = r.runner(handler)
    await arm(r, "k", START)
    assert await runner.run_due() == 1
    assert await runner.next_due() == START + dt.timedelta(seconds=10)
    r.clock.advance(dt.timedelta(seconds=9))
    assert await runner.run_due() == 0
    r.clock.advance(dt.timedelta(seconds=1))
    assert await runner.run_due() == 1
    assert await runner.next_due() == r.clock.now() + dt.timedelta(seconds=15)  # capped
    row = await timer_row(r, "k")
    assert (row["status"], row["last_error"]) == ("pending", "ConnectionError: attempt 2 refused")
    r.clock.advance(dt.timedelta(seconds=15))
    assert await runner.run_due() == 1
    assert gave_up == [("k", 3, "ConnectionError: attempt 3 refused")]
    row = await timer_row(r, "k")
    assert (row["status"], row["last_error"]) == ("failed", "ConnectionError: attempt 3 refused")
    r.clock.advance(dt.timedelta(weeks=4))
    assert await runner.run_due() == 0
    assert len(gave_up) == 1


async def test_a_permanent_failure_gives_up_at_once(replicas):
    r = replicas("a")
    gave_up: list[str] = []

    async def act(item: Due) -> None:
        raise PermanentFailure("550 no such user")

    async def done(item: Due, uow: UnitOfWork) -> None:
        raise AssertionError("done must not run after a failed act")

    async def record_give_up(item: Due, reason: str, uow: UnitOfWork) -> None:
        gave_up.append(reason)

    await arm(r, "k", START)
    await r.runner(TimerHandler(done=done, act=act, gave_up=record_give_up)).run_due()
    assert gave_up == ["550 no such user"]
    assert (await timer_row(r, "k"))["status"] == "failed"


async def test_work_and_the_done_mark_commit_or_roll_back_together(replicas):
    r = replicas("a")

    async def done(item: Due, uow: UnitOfWork) -> None:
        await uow.session.execute(insert(executions).values(key=item.key, replica="a", at="x"))
        if item.attempt == 1:
            raise RuntimeError("after writing")

    runner = r.runner(TimerHandler(done=done, retry_base_seconds=1))
    await arm(r, "k", START)
    await runner.run_due()
    assert await executed(r) == []  # the first attempt's write went with its rollback
    assert (await timer_row(r, "k"))["status"] == "pending"
    r.clock.advance(dt.timedelta(seconds=1))
    await runner.run_due()
    assert await executed(r) == [("k", "x")]
    assert (await timer_row(r, "k"))["status"] == "done"


async def test_rescheduling_moves_the_item_and_cancelling_removes_it(replicas):
    r = replicas("a")
    await arm(r, "moved", START + dt.timedelta(days=1), version=1)
    await arm(r, "moved", START + dt.timedelta(days=3), version=2)
    await arm(r, "cancelled", START + dt.timedelta(days=2))
    async with r.sessions() as session, session.begin():
        assert await cancel(session, timers, program_id="prog", kind=KIND, key="cancelled")
        assert not await cancel(session, timers, program_id="prog", kind=KIND, key="unknown")
    runner = r.runner(r.recording())
    assert await runner.next_due() == START + dt.timedelta(days=3)
    # due beyond the window: nothing (the loop then sleeps its poll interval)
    assert await runner.next_due(within=dt.timedelta(days=2)) is None
    assert await runner.next_due(within=dt.timedelta(days=3)) == START + dt.timedelta(days=3)
    r.clock.advance(dt.timedelta(days=2, hours=23))
    assert await runner.run_due() == 0
    r.clock.advance(dt.timedelta(hours=1))
    [claimed] = await runner.claim()
    assert (claimed.key, claimed.payload) == ("moved", {"version": 2})


async def test_schedule_many_arms_in_one_statement_what_schedule_would_arm_one_by_one(replicas):
    r = replicas("a")
    runner = r.runner(r.recording())
    await arm(r, "done-before", START - dt.timedelta(hours=1))
    assert await runner.run_due() == 1  # done: arming it again must make it pending again
    arms = [
        Arm("prog", KIND, f"p-{i}", START + dt.timedelta(hours=i), {"n": i}) for i in range(300)
    ]
    arms.append(Arm("prog", KIND, "p-7", START + dt.timedelta(days=30), {"n": "last"}))
    arms.append(Arm("prog", KIND, "done-before", START + dt.timedelta(hours=2)))
    async with r.sessions() as session, session.begin():
        assert await schedule_many(session, timers, arms) == 301
        assert await schedule_many(session, timers, []) == 0
    seventh = await timer_row(r, "p-7")
    assert (seventh["payload"], seventh["status"]) == ({"n": "last"}, "pending")
    again = await timer_row(r, "done-before")
    assert (again["status"], again["attempts"], again["finished_at"]) == ("pending", 0, None)
    r.clock.advance(dt.timedelta(hours=299))
    while await runner.run_due():
        pass
    done = sorted(key for key, _ in await executed(r))
    assert done == sorted(["done-before", "done-before", *(f"p-{i}" for i in range(300) if i != 7)])
    with pytest.raises(ValueError, match="timezone-aware"):
        async with r.sessions() as session, session.begin():
            await schedule_many(
                session, timers, [Arm("prog", KIND, "naive", dt.datetime(2027, 3, 1))]
            )


async def test_an_item_rescheduled_while_in_flight_drops_the_stale_run_and_runs_again(replicas):
    r = replicas("a")
    runs: list[int] = []

    async def act(item: Due) -> None:
        runs.append(item.payload["version"])
        if item.payload["version"] == 1:  # meanwhile an event moves the item
            await arm(r, "k", START + dt.timedelta(hours=1), version=2)

    await arm(r, "k", START, version=1)
    runner = r.runner(TimerHandler(done=r.recording().done, act=act))
    await runner.run_due()
    assert await executed(r) == []  # the run in flight lost its lease: nothing recorded
    r.clock.advance(dt.timedelta(hours=1))
    await runner.run_due()
    assert runs == [1, 2]
    assert [key for key, _ in await executed(r)] == ["k"]


async def test_an_if_absent_upsert_arms_new_items_and_leaves_armed_ones_as_they_are(replicas):
    r = replicas("a")
    await arm(r, "armed", START + dt.timedelta(days=3), n="kept")
    later = START + dt.timedelta(days=9)
    async with r.unit_of_work() as uow:
        for key, n in (("armed", "new"), ("fresh", "first"), ("fresh", "second")):
            uow.upsert(timers, armed_row(Arm("prog", KIND, key, later, {"n": n})), if_absent=True)
    kept, fresh = await timer_row(r, "armed"), await timer_row(r, "fresh")
    assert kept["payload"] == {"n": "kept"}
    assert _utc(kept["due_at"]) == START + dt.timedelta(days=3)
    assert (fresh["payload"], fresh["status"]) == ({"n": "first"}, "pending")
    with pytest.raises(ValueError, match="not both"):
        async with r.unit_of_work() as uow:
            uow.upsert(timers, {"program_id": "prog"}, add=("attempts",), if_absent=True)


def _utc(value: object) -> dt.datetime:
    assert isinstance(value, dt.datetime)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


async def test_a_claim_leases_one_batch_of_thousands_due_on_a_table_never_analyzed(replicas):
    """PostgreSQL planned the claim's `key IN (the batch: due, LIMIT, FOR UPDATE SKIP LOCKED)`
    as a nested loop that ran the batch's query again for each candidate row while the table
    had no statistics (a new database, a first round): each row it leased left the batch and
    let the next one in, so one claim of 200 leased all 5,000 due sends, in 6 s."""
    r = replicas("a")
    async with r.sessions() as session, session.begin():
        arms = [Arm("prog", KIND, f"due-{i:05d}", START) for i in range(3000)]
        await schedule_many(session, timers, arms)
    runner = r.runner(r.recording(), batch=50)
    claimed = await runner.claim()
    assert len(claimed) == 50
    async with r.sessions() as session:
        leased = await session.scalar(
            select(func.count()).select_from(timers).where(timers.c.lease_token.is_not(None))
        )
    assert leased == 50


async def test_a_timer_marked_by_its_key_is_found_by_the_primary_key_on_a_new_table(replicas):
    """Before the table has statistics, PostgreSQL costs the primary key and the index starting
    with status alike for `key = ... AND status = 'pending'`, and took the second: each sent
    mail's timer marked done read every pending timer (0.9 ms a row, 4.4 s for a round's 5,000
    sends). Statements by key say pending with `still_pending`, which no index serves."""
    r = replicas("a")
    async with r.sessions() as session, session.begin():
        arms = [Arm("prog", KIND, f"due-{i:05d}", START) for i in range(3000)]
        await schedule_many(session, timers, arms)
    dialect = r.engine.dialect
    by_key = (
        update(timers)
        .where(
            timers.c.program_id == "prog",
            timers.c.kind == KIND,
            timers.c.key == "due-00077",
            still_pending(timers),
        )
        .values(status="done")
    )
    sql = str(by_key.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    explain = "EXPLAIN QUERY PLAN" if dialect.name == "sqlite" else "EXPLAIN"
    async with r.engine.connect() as conn:
        plan = "\n".join(str(row[-1]) for row in await conn.exec_driver_sql(f"{explain} {sql}"))
    primary_key = "sqlite_autoindex_timers_1" if dialect.name == "sqlite" else "timers_pkey"
    assert primary_key in plan, plan
