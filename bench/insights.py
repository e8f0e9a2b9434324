"""insights at program size: ingest into the read models, and the coordinators' queries.

    .venv/bin/python -m bench.insights [--pairs 1000] [--database-url postgresql://...]
                                       [--participants 100000] [--events 5000000]

1. Ingest, on SQLite and (with --database-url) PostgreSQL: a program of --pairs pairs as ~19
   events each (registrations, proposals, pairs, sessions held and missed, check-ins, feedback,
   emails) published to a fresh stream, then consumed by insights (one durable pull consumer
   per event type, inbox, per-key order, barriers, batches of 512, until every consumer has
   acked everything), against a raw nats-py pull consumer of the whole stream in the same run:
   fetch 512, validate, the same preloads (one query per model and event type in the batch) and
   the same projection code on the same tables (so the same inserts and updates), one commit,
   ack. Target: insights >= 60% of the raw rate.
2. Queries, on PostgreSQL: read models bulk-loaded (COPY) for --participants participants and
   --events events (5,000,000 timeline entries, sessions, check-ins, pairs with health, daily
   counters), then GET overview and the lists (pairs riskiest first, at-risk ones, page 51 by
   cursor and by offset, sessions, unmatched mentees, a pair's timeline) through insights'
   HTTP app, p95 of 200 requests each, against the overview as it was built before (about ten
   COUNT queries over the program's rows) on the same data. Target: p95 < 50 ms. Before each,
   the plan of every statement the request sends (EXPLAIN ANALYZE of the same SQL and
   parameters): the index it reads, flagged SCAN/SORT if a sequential scan or a sort remains.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import re
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from bench.insights_program import PROGRAM, program_events
from bench.throughput import drop_created, fresh_postgres, verdict, wait_for
from cli.launcher import NatsServer, free_port
from services.insights import grants, store
from services.insights.app import definition
from services.insights.handlers import SUBSCRIPTIONS
from services.insights.tokens import new_token
from shared.bus import STREAM, durable_name, ensure_stream
from shared.clock import SystemClock
from shared.cpu import CpuPool
from shared.db import create_schema, make_engine, make_sessions
from shared.events import BY_SUBJECT
from shared.service import Service, tune_garbage_collector
from shared.settings import Settings
from shared.unit_of_work import UnitOfWork, write_outbox, write_upserts

HANDLERS = {s.event: s.handler for s in SUBSCRIPTIONS}
PRELOADS = {s.event: s.preload for s in SUBSCRIPTIONS}


async def _fresh_stream(url: str) -> JetStreamContext:
    """An empty MENTORSHIP stream; the context's connection is closed with `_close`."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(STREAM)
    await ensure_stream(js)
    return js


async def _close(js: JetStreamContext) -> None:
    await js._nc.drain()  # nats-py keeps the connection only there


async def _publish(js: JetStreamContext, events: list[tuple[str, dict[str, Any]]]) -> None:
    for at in range(0, len(events), 5000):
        futures = [
            await js.publish_async(
                subject, json.dumps(body).encode(), headers={"Nats-Msg-Id": body["event_id"]}
            )
            for subject, body in events[at : at + 5000]
        ]
        await asyncio.gather(*futures)


async def raw_ingest(url: str, database_url: str, n: int) -> None:
    """A bare pull consumer of the whole stream applying insights' projections per batch."""
    engine = make_engine(database_url, schema="insights")
    await create_schema(engine, store.Base.metadata, schema="insights")
    sessions, settings, clock = make_sessions(engine), Settings(), SystemClock()
    cpu = CpuPool(threads=True)
    nc = await nats.connect(url)
    js = nc.jetstream()
    config = ConsumerConfig(
        durable_name="raw_insights",
        filter_subject="mentorship.>",
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        max_ack_pending=4000,
    )
    await js.add_consumer(STREAM, config)
    psub = await js.pull_subscribe_bind("raw_insights", stream=STREAM)
    tune_garbage_collector()
    done = 0
    while done < n:
        try:
            msgs = await psub.fetch(batch=settings.batch_size, timeout=1.0)
        except (TimeoutError, nats.errors.TimeoutError):
            continue
        async with sessions() as session, session.begin():
            uow = UnitOfWork(
                session=session,
                tables=store.delivery,
                clock=clock,
                settings=settings,
                source="raw",
                cpu=cpu,
            )
            events = [BY_SUBJECT[msg.subject].model_validate_json(msg.data) for msg in msgs]
            # the rows the handlers read, loaded per batch as insights' subscriptions preload them
            by_type: dict[type[Any], list[Any]] = {}
            for event in events:
                by_type.setdefault(type(event), []).append(event)
            for kind, of_kind in by_type.items():
                for preload in PRELOADS[kind]:
                    uow.preloaded(preload.model, await preload.load(session, of_kind))
            for event in events:
                await HANDLERS[type(event)](event, uow)
            await write_upserts(session, uow.writes)
            await write_outbox(session, store.delivery, uow.outbox_rows())
        for msg in msgs:
            await msg.ack()
        done += len(msgs)
    await nc.drain()
    cpu.close()
    await engine.dispose()


async def _drained(js: JetStreamContext, durables: list[str], total: int) -> tuple[int, int]:
    pending = 0
    for durable in durables:
        info = await js.consumer_info(STREAM, durable)
        pending += info.num_pending + info.num_ack_pending
    return total - pending, total


async def ingest(url: str, folder: Path, database_url: str | None, pairs: int) -> float:
    """insights' rate as a share of the raw consumer's, on one kind of database."""
    events = program_events(pairs, now=dt.datetime.now(dt.UTC))
    n = len(events)
    js = await _fresh_stream(url)
    print(f"  publishing {n:,} events of {pairs:,} pairs ...", flush=True)
    await _publish(js, events)
    raw_db = (
        await fresh_postgres(database_url)
        if database_url
        else (f"sqlite+aiosqlite:///{folder / 'raw.sqlite3'}")
    )
    started = time.perf_counter()
    await raw_ingest(url, raw_db, n)
    raw = time.perf_counter() - started
    print(f"  raw consumer: {n / raw:,.0f} events/s ({raw:.1f}s)", flush=True)
    db = await fresh_postgres(database_url) if database_url else None
    settings = Settings(data_dir=folder / "service", nats_url=url, database_url=db)
    durables = [durable_name("insights", s.event.subject) for s in SUBSCRIPTIONS]
    started = time.perf_counter()
    async with Service(definition(), settings, SystemClock()).started():
        await wait_for(lambda: _drained(js, durables, n), "insights consuming")
        service = time.perf_counter() - started
    print(f"  insights: {n / service:,.0f} events/s ({service:.1f}s, start included)", flush=True)
    await _close(js)
    return raw / service


# --- 2. queries ----------------------------------------------------------------------------

DAYS = 365


def _chunks(
    rows: Iterator[tuple[Any, ...]], size: int = 100_000
) -> Iterator[list[tuple[Any, ...]]]:
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def _copy(
    conn: Any, table: str, columns: list[str], rows: Iterator[tuple[Any, ...]], total: int
) -> None:
    done, started = 0, time.monotonic()
    for chunk in _chunks(rows):
        await conn.copy_records_to_table(
            table, records=chunk, columns=columns, schema_name="insights"
        )
        done += len(chunk)
        if done % 1_000_000 < len(chunk) or done == total:
            print(
                f"    {table}: {done:,}/{total:,} rows ({time.monotonic() - started:.0f}s)",
                flush=True,
            )


async def bulk_load(database_url: str, participants: int, events: int) -> None:
    """Read models of a program of this size, written with COPY (no events replayed)."""
    import asyncpg

    engine = make_engine(database_url, schema="insights")
    await create_schema(engine, store.Base.metadata, schema="insights")
    await engine.dispose()
    plain = database_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(plain)
    now = dt.datetime.now(dt.UTC)
    mentors = participants // 4
    mentees = participants - mentors
    pairs = int(mentees * 0.8)
    sessions_per_pair, checkins_per_pair = 8, 4
    timeline = events  # every event of the program leaves a timeline entry or a counter
    p = PROGRAM
    try:
        await _copy(
            conn,
            "participants",
            [
                "program_id",
                "participant_id",
                "role",
                "timezone",
                "display_name",
                "cohort",
                "matched",
                "active",
                "registered_at",
                "unmatched_reason",
                "demographics",
            ],
            (
                (
                    p,
                    f"u{i}",
                    "mentor" if i < mentors else "mentee",
                    "UTC",
                    f"Person {i}",
                    "2027-01",
                    mentors <= i < mentors + pairs,
                    True,
                    now,
                    None if i < mentors + pairs else "waiting for the next matching round",
                    json.dumps({"group": "abcd"[i % 4]}),
                )
                for i in range(participants)
            ),
            participants,
        )
        bands = ["healthy"] * 7 + ["watch"] * 2 + ["at_risk"]
        await _copy(
            conn,
            "pairs",
            [
                "program_id",
                "pair_id",
                "mentor_id",
                "mentee_id",
                "formed_at",
                "state",
                "risk_score",
                "health",
                "reasons",
                "sessions_planned",
                "sessions_held",
                "sessions_missed",
                "checkins_due",
                "checkins_submitted",
                "last_contact_at",
            ],
            (
                (
                    p,
                    f"p{i}",
                    f"u{i % mentors}",
                    f"u{mentors + i}",
                    now - dt.timedelta(days=90),
                    "formed",
                    {"healthy": 0, "watch": 1, "at_risk": 2 + i % 3}[bands[i % 10]],
                    bands[i % 10],
                    json.dumps([] if bands[i % 10] == "healthy" else ["no contact for 30 days"]),
                    sessions_per_pair,
                    6,
                    2,
                    checkins_per_pair,
                    3,
                    now - dt.timedelta(days=i % 40),
                )
                for i in range(pairs)
            ),
            pairs,
        )
        n_sessions = pairs * sessions_per_pair
        await _copy(
            conn,
            "sessions",
            [
                "program_id",
                "session_id",
                "pair_id",
                "kind",
                "start",
                "sequence",
                "status",
                "held_at",
            ],
            (
                (
                    p,
                    f"s{i}",
                    f"p{i // sessions_per_pair}",
                    "regular",
                    now - dt.timedelta(days=i % DAYS),
                    0,
                    "held" if i % 4 else "missed",
                    now - dt.timedelta(days=i % DAYS) if i % 4 else None,
                )
                for i in range(n_sessions)
            ),
            n_sessions,
        )
        n_checkins = pairs * checkins_per_pair
        await _copy(
            conn,
            "checkins",
            ["program_id", "checkin_id", "pair_id", "status", "due_at", "was_overdue"],
            (
                (
                    p,
                    f"c{i}",
                    f"p{i // checkins_per_pair}",
                    "submitted" if i % 4 else "overdue",
                    now - dt.timedelta(days=i % DAYS),
                    i % 4 == 0,
                )
                for i in range(n_checkins)
            ),
            n_checkins,
        )
        await _copy(
            conn,
            "timeline",
            ["program_id", "pair_id", "at", "event_id", "kind", "summary"],
            (
                (
                    p,
                    f"p{i % pairs}",
                    now - dt.timedelta(minutes=i),
                    f"{i:036d}",
                    "session.held",
                    "session held (45 min)",
                )
                for i in range(timeline)
            ),
            timeline,
        )
        counters = {
            "participants.mentor": mentors,
            "participants.mentee": mentees,
            "mentees.matched": pairs,
            "pairs.state.formed": pairs,
            "pairs.health.healthy": pairs * 7 // 10,
            "pairs.health.watch": pairs * 2 // 10,
            "pairs.health.at_risk": pairs // 10,
            "sessions.planned": n_sessions,
            "sessions.held": n_sessions * 3 // 4,
            "sessions.missed": n_sessions // 4,
            "checkins.due": n_checkins,
            "checkins.submitted": n_checkins * 3 // 4,
            "checkins.overdue_now": n_checkins // 4,
            "first_session.pairs": pairs,
            "first_session.days": pairs * 9.5,
            "milestones": pairs,
            "emails.sent": events // 5,
            "emails.failed": events // 500,
        }
        await _copy(
            conn,
            "program_counters",
            ["program_id", "metric", "value"],
            ((p, m, float(v)) for m, v in counters.items()),
            len(counters),
        )
        metrics = [
            "sessions.planned",
            "sessions.held",
            "sessions.missed",
            "checkins.due",
            "checkins.submitted",
        ]
        await _copy(
            conn,
            "daily_counters",
            ["program_id", "metric", "day", "value"],
            (
                (p, m, (now - dt.timedelta(days=d)).date(), n_sessions // DAYS)
                for m in metrics
                for d in range(DAYS)
            ),
            len(metrics) * DAYS,
        )
        subjects = [s.event.subject for s in SUBSCRIPTIONS]
        await _copy(
            conn,
            "event_counts",
            ["program_id", "subject", "count"],
            ((p, s, events // len(subjects)) for s in subjects),
            len(subjects),
        )
        await _copy(
            conn,
            "assessment_sums",
            ["program_id", "cohort", "period", "dimension", "total", "responses"],
            (
                (p, "2027-01", f"2026-{m:02d}", d, 4.0 * 1000, 1000)
                for m in range(1, 13)
                for d in ("relevance", "impact", "satisfaction", "treated_fairly")
            ),
            48,
        )
        print("    analysing ...", flush=True)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


async def _timed(call: Any, repeats: int) -> list[float]:
    for _ in range(10):
        await call()
    samples = []
    cpu = time.process_time()
    for _ in range(repeats):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    # this process's CPU per request (client and app): what load multiplies into wall time
    print(f"    cpu {(time.process_time() - cpu) * 1000 / repeats:.1f} ms/request", flush=True)
    return samples


async def old_overview(sessions: Any) -> None:
    """The overview as it was built before: COUNT queries over the program's rows."""
    from sqlalchemy import func, select

    from services.insights.store import (
        DeliveryView,
        PairView,
        ParticipantView,
        RoundView,
        SessionView,
    )

    async with sessions() as session:
        for query in (
            select(func.count())
            .select_from(ParticipantView)
            .where(ParticipantView.program_id == PROGRAM, ParticipantView.role == "mentor"),
            select(func.count())
            .select_from(ParticipantView)
            .where(ParticipantView.program_id == PROGRAM, ParticipantView.role == "mentee"),
            select(func.count()).select_from(PairView).where(PairView.program_id == PROGRAM),
            select(func.count()).select_from(SessionView).where(SessionView.program_id == PROGRAM),
            select(func.count())
            .select_from(DeliveryView)
            .where(DeliveryView.program_id == PROGRAM, DeliveryView.status == "sent"),
            select(func.count())
            .select_from(DeliveryView)
            .where(DeliveryView.program_id == PROGRAM, DeliveryView.status == "failed"),
            select(func.count()).select_from(RoundView).where(RoundView.program_id == PROGRAM),
            select(func.count(func.distinct(ParticipantView.timezone))).where(
                ParticipantView.program_id == PROGRAM
            ),
        ):
            await session.scalar(query)


async def _cursor_after(client: httpx.AsyncClient, path: str, rows: int) -> str:
    """The next_cursor after the first `rows` rows of a list."""
    cursor = ""
    for _ in range(rows // 1000):
        response = await client.get(path + (f"&cursor={cursor}" if cursor else ""))
        response.raise_for_status()
        cursor = response.json()["next_cursor"]
    return cursor


async def explain(engine: Any, call: Any) -> None:
    """Prints the plan summary of every statement one request issues (EXPLAIN ANALYZE of the
    very SQL and parameters it sent): the index used, and any sequential scan or sort."""
    from sqlalchemy import event

    issued: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM" in statement.upper():
            issued.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        await call()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    async with engine.connect() as conn:
        for statement, parameters in issued:
            plan = (await conn.exec_driver_sql("EXPLAIN ANALYZE " + statement, parameters)).all()
            lines = [row[0] for row in plan]
            nodes = [
                line.strip().removeprefix("->").strip().split("  (")[0]
                for line in lines
                if "Scan" in line or "Sort" in line.split("(")[0]
            ]
            found = re.search(r"\bFROM\s+(\S+)", statement, re.IGNORECASE)
            table = found.group(1) if found else "?"
            took = next((line for line in lines if line.startswith("Execution Time")), "")
            flag = " SCAN/SORT" if any("Seq Scan" in n or "Sort" in n for n in nodes) else ""
            print(f"    {table}: {'; '.join(nodes)} ({took}){flag}", flush=True)


async def queries(
    url: str, folder: Path, admin_url: str, participants: int, events: int
) -> list[tuple[str, float]]:
    """p95 in ms of the API's overview and pairs list, and of the old overview."""
    database_url = await fresh_postgres(admin_url)
    print(
        f"  bulk-loading read models: {participants:,} participants, {events:,} events ...",
        flush=True,
    )
    await bulk_load(database_url, participants, events)
    await _close(await _fresh_stream(url))
    settings = Settings(data_dir=folder / "queries", nats_url=url, database_url=database_url)
    service = Service(definition(), settings, SystemClock())
    figures = []
    async with service.started() as running:
        token = new_token()
        async with running.sessions() as session, session.begin():
            await grants.add_token(
                session,
                token=token,
                program_id=PROGRAM,
                label="bench",
                created_at=running.clock.now(),
            )
        transport = httpx.ASGITransport(app=service.http_app())
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://insights", headers=headers
        ) as client:
            base = f"/programs/{PROGRAM}"
            cursor = await _cursor_after(client, f"{base}/pairs?limit=1000", 5000)
            for name, path in (
                ("GET overview", f"{base}/overview"),
                ("GET pairs (riskiest 100)", f"{base}/pairs?limit=100"),
                ("GET pairs?health=at_risk", f"{base}/pairs?health=at_risk&limit=100"),
                ("GET pairs page 51 (cursor)", f"{base}/pairs?limit=100&cursor={cursor}"),
                ("GET pairs page 51 (offset 5,000)", f"{base}/pairs?limit=100&offset=5000"),
                ("GET sessions (latest 100)", f"{base}/sessions?limit=100"),
                ("GET sessions?status=missed", f"{base}/sessions?status=missed&limit=100"),
                ("GET unmatched-mentees", f"{base}/unmatched-mentees?limit=100"),
                ("GET pair timeline", f"{base}/pairs/p7/timeline?limit=100"),
            ):

                async def call(path: str = path) -> None:
                    response = await client.get(path)
                    response.raise_for_status()

                await explain(running.engine, call)
                figures.append((name, p95(await _timed(call, 200))))
                print(f"  {name}: p95 {figures[-1][1]:.1f} ms", flush=True)
        old = p95(await _timed(lambda: old_overview(running.sessions), 50))
        figures.append(("old overview (COUNT queries), same data", old))
        print(f"  old overview (COUNT queries): p95 {old:.1f} ms", flush=True)
    return figures


async def run(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="mentorship-bench-insights-"))
    server = NatsServer(free_port(), folder / "nats", folder / "nats.log")
    server.start()
    try:
        results: list[str] = []
        if not args.skip_ingest:
            kinds = [("SQLite", None)] + (
                [("PostgreSQL", args.database_url)] if args.database_url else []
            )
            for kind, url in kinds:
                print(f"[ingest] {kind}", flush=True)
                here = folder / kind
                here.mkdir()
                ratio = await ingest(server.url, here, url, args.pairs)
                results.append(
                    f"ingest, {kind}, {args.pairs:,} pairs: insights at {verdict(ratio, 0.6)}"
                )
        if args.database_url and not args.skip_queries:
            print("[queries] PostgreSQL", flush=True)
            figures = await queries(
                server.url, folder, args.database_url, args.participants, args.events
            )
            for name, value in figures[:-1]:
                target = "meets" if value < 50 else "MISSES"
                old = figures[-1][1]
                results.append(
                    f"query {name}: p95 {value:.1f} ms ({target} the 50 ms target; the old "
                    f"overview's COUNT queries {old:.1f} ms = {old / value:.1f}x)"
                )
        print("summary:")
        for line in results:
            print(f"  {line}")
    finally:
        server.stop()
        await drop_created()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=1000, help="ingest: pairs (~19 events each)")
    parser.add_argument("--participants", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL server to create fresh databases on; without it, SQLite ingest only",
    )
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-queries", action="store_true")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
