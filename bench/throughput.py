"""Consumption throughput at program size, against raw nats-py consumers measured in the same run.

    .venv/bin/python -m bench.throughput [--events 10000] [--database-url postgresql://...]

Two figures, each a ratio against a baseline measured in the same run on the same nats-server
and the same kind of database (this machine is shared and noisy; absolute times drift):

1. one service: each service's own participant.registered consumer (decode, validate, inbox,
   handler, commit, ack) against a raw nats-py pull consumer fetching batches of the same
   messages and writing the same rows into the same tables (the service's own, in a database of
   the same kind) with one batched INSERT per table per fetch, then acking. Clock: from before
   the service (or the raw consumer) starts until all N events are acked. Target: service >=
   60% of the raw rate.
2. the system: N registrations published to the four services running as processes (as `up`
   runs them), until every durable consumer is drained and insights' overview shows N
   participants; against four raw consumer processes doing the same in parallel, until their
   consumers are drained. Clock: from the first publish. Target: services >= 50% of the raw
   rate. (Until 2026-12-02 the raw clock ran until the raw processes exited, which included
   nats-py's 30 s drain of a pull subscription: the raw figure was 30 s too slow.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from sqlalchemy import insert

from cli.launcher import NatsServer, free_port
from services.insights import handlers as insights_handlers
from services.insights import writes as insights_writes
from shared import migrations
from shared.bus import STREAM, durable_name, ensure_stream
from shared.clock import SystemClock
from shared.db import make_engine
from shared.service import Service, tune_garbage_collector
from shared.settings import SERVICES, Settings

REGISTERED = "mentorship.participant.registered"
PROGRAM = "bench"
TOKEN = "bench-token-" + "x" * 40
NINE_TO_FIVE = [{"weekday": d, "start": "09:00", "end": "17:00"} for d in range(5)]


def _hours(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(h, start=f"{h['start']}:00", end=f"{h['end']}:00") for h in body["working_hours"]]


def _pairing_rows(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        "participants": {
            "program_id": body["program_id"],
            "participant_id": body["participant_id"],
            "role": body["role"],
            "timezone": body["timezone"],
            "working_hours": _hours(body),
            "languages": body["languages"],
            "skills_offered": body["skills_offered"],
            "skills_sought": body["skills_sought"],
            "capacity": body.get("capacity") or 0,
            "department": None,
            "manager_id": None,
            "active": True,
            "registered_at": dt.datetime.fromisoformat(body["occurred_at"]),
        }
    }


def _scheduling_rows(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        "people": {
            "program_id": body["program_id"],
            "participant_id": body["participant_id"],
            "email": body["email"],
            "display_name": body["display_name"],
            "timezone": body["timezone"],
            "working_hours": _hours(body),
            "role": body["role"],
            "edge_burden": 0,
        }
    }


def _notifications_rows(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        "contacts": {
            "program_id": body["program_id"],
            "participant_id": body["participant_id"],
            "email": body["email"],
            "display_name": body["display_name"],
            "timezone": body["timezone"],
            "role": body["role"],
        }
    }


def _insights_rows(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    # the row insights' handler writes (its per-batch counters, a few rows, are left out)
    at = dt.datetime.fromisoformat(body["occurred_at"])
    mentee = body["role"] == "mentee"
    return {
        "participants": {
            "program_id": body["program_id"],
            "participant_id": body["participant_id"],
            "role": body["role"],
            "timezone": body["timezone"],
            "display_name": body["display_name"],
            "cohort": insights_writes.month(at),
            "matched": False,
            "active": True,
            "registered_at": at,
            "unmatched_reason": insights_handlers.WAITING if mentee else None,
            "demographics": None,
        }
    }


# what each service's registration handler writes, from the raw JSON, without any machinery
RAW_ROWS: dict[str, Callable[[dict[str, Any]], dict[str, dict[str, Any]]]] = {
    "pairing": _pairing_rows,
    "scheduling": _scheduling_rows,
    "notifications": _notifications_rows,
    "insights": _insights_rows,
}


def registrations(n: int, tag: str) -> list[dict[str, Any]]:
    """N valid participant.registered bodies: a quarter mentors, the rest mentees."""
    zones = ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "America/Sao_Paulo"]
    bodies = []
    for i in range(n):
        mentor = i % 4 == 0
        body = {
            "event_id": str(uuid.uuid4()),
            "occurred_at": "2027-03-01T09:00:00+00:00",
            "program_id": PROGRAM,
            "schema_version": 1,
            "participant_id": f"{tag}-{i}",
            "email": f"{tag}-{i}@example.org",
            "display_name": f"Person {i}",
            "role": "mentor" if mentor else "mentee",
            "timezone": zones[i % len(zones)],
            "working_hours": NINE_TO_FIVE,
            "languages": ["en"],
            "skills_offered": ["python"] if mentor else [],
            "skills_sought": [] if mentor else ["python"],
        }
        if mentor:
            body["capacity"] = 3
        bodies.append(body)
    return bodies


async def publish_all(js: JetStreamContext, bodies: list[dict[str, Any]]) -> None:
    """Publishes with pipelined PubAcks (as a bulk import would)."""
    futures = []
    for body in bodies:
        headers = {"Nats-Msg-Id": body["event_id"], "ce-type": REGISTERED}
        futures.append(
            await js.publish_async(REGISTERED, json.dumps(body).encode(), headers=headers)
        )
    await asyncio.gather(*futures)


async def wait_for(
    done: Callable[[], Awaitable[tuple[int, int]]], what: str, limit: float = 900
) -> None:
    """Polls done() -> (reached, wanted), printing progress, until reached == wanted."""
    started = time.monotonic()
    last_print = 0.0
    while True:
        reached, wanted = await done()
        if reached >= wanted:
            return
        now = time.monotonic()
        if now - last_print > 5:
            print(f"    {what}: {reached:,}/{wanted:,} after {now - started:.0f}s", flush=True)
            last_print = now
        if now - started > limit:
            raise TimeoutError(f"{what}: only {reached}/{wanted} after {limit:.0f}s")
        await asyncio.sleep(0.05)


async def drained(js: JetStreamContext, durables: list[str], n: int) -> tuple[int, int]:
    """How many of the durables have acked everything (as (reached, wanted))."""
    empty = 0
    for durable in durables:
        info = await js.consumer_info(STREAM, durable)
        if not info.num_pending and not info.num_ack_pending:
            empty += 1
    return empty, len(durables)


# --- the raw baseline --------------------------------------------------------------------


async def raw_consume(
    url: str, service: str, database_url: str, n: int, ready: Path | None
) -> None:
    """A bare pull consumer: fetch a batch, the service's rows in one INSERT per table, ack."""
    durable = f"raw_{service}"
    metadata = migrations.service_metadata(service)
    rows_of = RAW_ROWS[service]
    engine = make_engine(database_url, schema=durable)
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{durable}"')
        await conn.run_sync(metadata.create_all)
    nc = await nats.connect(url)
    js = nc.jetstream()
    config = ConsumerConfig(
        durable_name=durable,
        filter_subject=REGISTERED,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        max_ack_pending=4000,
    )
    await js.add_consumer(STREAM, config)
    psub = await js.pull_subscribe_bind(durable, stream=STREAM)
    tune_garbage_collector()  # as the services do: the baseline gets the same runtime
    if ready:
        await asyncio.to_thread(ready.write_text, "ready")
    done, batch_size = 0, Settings().batch_size  # the services' batch size
    while done < n:
        try:
            msgs = await psub.fetch(batch=batch_size, timeout=1.0)
        except (TimeoutError, nats.errors.TimeoutError):
            continue
        rows: dict[str, list[dict[str, Any]]] = {}
        for msg in msgs:
            for table, row in rows_of(json.loads(msg.data)).items():
                rows.setdefault(table, []).append(row)
        async with engine.begin() as conn:
            for table, batch in rows.items():
                await conn.execute(insert(metadata.tables[table]), batch)
        for msg in msgs:
            await msg.ack()
        done += len(msgs)
    await nc.flush()  # the acks are out; drain() would wait its 30 s for the pull subscription
    await nc.close()
    await engine.dispose()


# --- 1. one service ----------------------------------------------------------------------


def _definition(name: str) -> Any:
    module = __import__(f"services.{name}.app", fromlist=["definition"])
    return module.definition()


async def one_service(
    name: str, url: str, folder: Path, database_url: str | None, n: int
) -> tuple[float, float]:
    """Seconds for the raw consumer and for the service to consume the same n registrations."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(STREAM)
    await ensure_stream(js)
    await publish_all(js, registrations(n, f"{name}-one"))
    raw_db = database_url or f"sqlite+aiosqlite:///{folder / f'raw-{name}.sqlite3'}"
    started = time.perf_counter()
    await raw_consume(url, name, raw_db, n, None)
    raw = time.perf_counter() - started

    settings = Settings(data_dir=folder / f"one-{name}", nats_url=url, database_url=database_url)
    durable = durable_name(name, REGISTERED)
    started = time.perf_counter()
    async with Service(_definition(name), settings, SystemClock()).started():
        ready = time.perf_counter() - started
        await wait_for(lambda: drained(js, [durable], n), f"{name} consuming")
        service = time.perf_counter() - started
    await nc.drain()
    print(f"    ({name} started in {ready:.2f}s of its {service:.2f}s)")
    return raw, service


# --- 2. the system -----------------------------------------------------------------------


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


async def _ready(port: int) -> bool:
    async with httpx.AsyncClient() as client:
        try:
            return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False


async def system_services(url: str, folder: Path, database_url: str | None, n: int) -> float:
    """Seconds from the first publish until all four services drained and insights shows n."""
    env = dict(os.environ) | {
        "MENTORSHIP_NATS_URL": url,
        "MENTORSHIP_DATA_DIR": str(folder / "system"),
        "MENTORSHIP_SMTP_HOST": "127.0.0.1",
        "MENTORSHIP_SMTP_PORT": str(free_port()),  # nothing listens: no mail in this flow
        "MENTORSHIP_INSIGHTS_API_TOKENS": f"{PROGRAM}={TOKEN}",
        "MENTORSHIP_LOG_LEVEL": "WARNING",
    }
    if database_url:
        env["MENTORSHIP_DATABASE_URL"] = database_url
    ports = {name: free_port() for name in SERVICES}
    env |= {f"MENTORSHIP_{name.upper()}_HTTP_PORT": str(p) for name, p in ports.items()}
    (folder / "system").mkdir(parents=True, exist_ok=True)
    procs = [
        _start([sys.executable, "-m", f"services.{name}"], env, folder / f"{name}.log")
        for name in SERVICES
    ]
    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        for name in SERVICES:
            port = ports[name]
            await wait_for(lambda port=port: _count(_ready(port)), f"{name} starting", 120)  # type: ignore[misc]
        durables = [c.name for c in await js.consumers_info(STREAM) if "__" in c.name]
        bodies = registrations(n, "system")
        started = time.perf_counter()
        await publish_all(js, bodies)
        print(f"    (services: the {n:,} published in {time.perf_counter() - started:.1f}s)")
        # poll the four registration consumers as the raw side polls its four (asking for all
        # 79 every 50 ms was 1,500 JetStream API requests a second against the services), then
        # check every durable consumer
        registered = [d for d in durables if d.endswith(REGISTERED_DURABLE_SUFFIX)]
        await wait_for(lambda: drained(js, registered, n), "registration consumers drained")
        await wait_for(lambda: drained(js, durables, n), "durable consumers drained")
        await wait_for(lambda: _participants(ports["insights"], n), "insights participants")
        return time.perf_counter() - started
    finally:
        await nc.drain()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)


REGISTERED_DURABLE_SUFFIX = durable_name("x", REGISTERED).removeprefix("x")


async def _count(ready: Awaitable[bool]) -> tuple[int, int]:
    return (1 if await ready else 0), 1


async def _participants(port: int, n: int) -> tuple[int, int]:
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"http://127.0.0.1:{port}/programs/{PROGRAM}/overview",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    body = response.json()
    return sum(int(v) for v in body.get("participants", {}).values()), n


async def system_raw(url: str, folder: Path, database_url: str | None, n: int) -> float:
    """Seconds from the first publish until four raw consumer processes consumed n each."""
    procs, ready = [], []
    for name in SERVICES:
        marker = folder / f"raw-{name}.ready"
        db = database_url or f"sqlite+aiosqlite:///{folder / f'system-raw-{name}.sqlite3'}"
        command = [sys.executable, "-m", "bench.throughput", "raw", "--nats", url]
        command += ["--service", name, "--database-url", db, "--events", str(n)]
        command += ["--ready", str(marker)]
        procs.append(_start(command, dict(os.environ), folder / f"raw-{name}.log"))
        ready.append(marker)
    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        await wait_for(lambda: _markers(ready), "raw consumers starting", 120)
        started = time.perf_counter()
        await publish_all(js, registrations(n, "raw"))
        print(f"    (raw: the {n:,} published in {time.perf_counter() - started:.1f}s)")
        # the services' criterion: every durable consumer has acked everything
        durables = [f"raw_{name}" for name in SERVICES]
        await wait_for(lambda: drained(js, durables, n), "raw consumers drained")
        elapsed = time.perf_counter() - started
        for proc in procs:
            while proc.poll() is None:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            if proc.returncode:
                raise RuntimeError(f"a raw consumer failed; see {folder}/raw-*.log")
        return elapsed
    finally:
        await nc.drain()


async def _markers(markers: list[Path]) -> tuple[int, int]:
    return sum(m.exists() for m in markers), len(markers)


# --- running -----------------------------------------------------------------------------


async def fresh_postgres(admin_url: str) -> str:
    """A new empty PostgreSQL database for this run; its SQLAlchemy URL."""
    name = f"mentorship_bench_{uuid.uuid4().hex[:8]}"
    plain = admin_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(plain)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = plain.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    _created.append((plain, name))
    return f"{base}/{name}"


_created: list[tuple[str, str]] = []


async def drop_created() -> None:
    """Drops the databases this run created (so far)."""
    while _created:
        admin, name = _created.pop()
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def stop_quietly(stack: contextlib.AsyncExitStack) -> None:
    """Stops a benched service; once the figures are out, a slow stop must not hang the command."""
    try:
        await asyncio.wait_for(stack.aclose(), 30)
    except TimeoutError:
        print("warning: the service took over 30 s to stop; figures above stand")


async def fresh_stream(url: str) -> None:
    """An empty MENTORSHIP stream: each measurement reads only its own events."""
    nc = await nats.connect(url)
    with contextlib.suppress(NotFoundError):
        await nc.jetstream().delete_stream(STREAM)
    await ensure_stream(nc.jetstream())
    await nc.drain()


def verdict(ratio: float, target: float) -> str:
    return (
        f"{ratio:.0%} of raw ({'meets' if ratio >= target else 'MISSES'} the {target:.0%} target)"
    )


async def run(
    events: int, rounds: int, database_url: str | None, services: list[str], system: bool
) -> None:
    folder = Path(tempfile.mkdtemp(prefix="mentorship-throughput-"))
    server = NatsServer(free_port(), folder / "nats", folder / "nats.log")
    server.start()
    kind = "PostgreSQL" if database_url else "SQLite"
    print(f"{events:,} participant.registered events, {kind}, nats-server {server.url}")
    one: dict[str, list[float]] = {name: [] for name in services}
    whole: list[float] = []
    try:
        for r in range(1, rounds + 1):
            here = folder / f"round{r}"
            here.mkdir()
            for name in services:
                db = await fresh_postgres(database_url) if database_url else None
                raw, svc = await one_service(name, server.url, here, db, events)
                one[name].append(raw / svc)
                print(
                    f"[round {r}/{rounds}] [one service] {name}: raw {events / raw:,.0f}/s, "
                    f"service {events / svc:,.0f}/s = {verdict(raw / svc, 0.6)}",
                    flush=True,
                )
            if system:
                await fresh_stream(server.url)
                db = await fresh_postgres(database_url) if database_url else None
                svc = await system_services(server.url, here, db, events)
                await fresh_stream(server.url)
                db = await fresh_postgres(database_url) if database_url else None
                raw = await system_raw(server.url, here, db, events)
                whole.append(raw / svc)
                print(
                    f"[round {r}/{rounds}] [system] {events:,} registrations through four "
                    f"services in {svc:.1f}s ({events / svc:,.0f}/s), four raw consumers in "
                    f"{raw:.1f}s ({events / raw:,.0f}/s): {verdict(raw / svc, 0.5)}",
                    flush=True,
                )
        print(f"median over {rounds} round(s), {kind}:")
        for name, ratios in one.items():
            print(f"  one service, {name}: {verdict(statistics.median(ratios), 0.6)}")
        if whole:
            print(f"  system, four services: {verdict(statistics.median(whole), 0.5)}")
    finally:
        server.stop()
        await drop_created()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")
    raw = sub.add_parser("raw", help="(internal) one raw consumer process for the system figure")
    raw.add_argument("--nats", required=True)
    raw.add_argument("--service", choices=SERVICES, required=True)
    raw.add_argument("--database-url", required=True)
    raw.add_argument("--events", type=int, required=True)
    raw.add_argument("--ready", type=Path)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="the median ratio is reported")
    parser.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL server (postgresql+asyncpg://user@host/db) to create fresh databases "
        "on; default SQLite files",
    )
    parser.add_argument("--services", nargs="*", default=list(SERVICES))
    parser.add_argument("--no-system", action="store_true", help="only the one-service figures")
    args = parser.parse_args()
    if args.command == "raw":
        asyncio.run(
            raw_consume(args.nats, args.service, args.database_url, args.events, args.ready)
        )
        return
    asyncio.run(run(args.events, args.rounds, args.database_url, args.services, not args.no_system))


if __name__ == "__main__":
    main()
