"""A matching round through the running system: registrations in, matching.requested ->
matching.completed, against a maximum-cardinality matching computed in the same run.

    .venv/bin/python -m bench.pairing_round [--sizes 1000 5000 10000] [--shape diverse]
        [--mentor-ratio 0.33] [--timeout 600] [--consent]
        [--database-url postgresql://postgres@127.0.0.1:5432/postgres [--only-postgres]]

Per size: a fresh nats-server and the real pairing service (`python -m services.pairing`, its
own process; SQLite, and with --database-url also a fresh database on that PostgreSQL server),
N mentees and N x 0.33 mentors (bench/matching_data.py: zones clustered by region, Zipf skills,
capacities 1-5, some reporting lines) published as participant.registered and consumed; then one
matching.requested. Printed: the seconds from its publish to the matching.completed (target:
<= 30 s at 10,000 x 3,300) and its timeline: the wait before the round's handler starts (fetch
and barrier), each phase of the handler as pairing logs it (load: profiles and pairs read;
solve: the matcher inside the CPU pool's worker; pool in/out: the rest of the pool call, moving
the standing in and the result out; events; store: pairs, slots and the round written; timers:
proposals' expiry), the commit and outbox up to the first pair.formed (pair.proposed with
--consent) on the wire, and the relay of every pair before matching.completed. Then the round's
pairs against the maximum number of pairs any matching can form under the same hard constraints
(shared language, >= 60 weekly shared minutes with a 60-minute stretch in the round's real week,
mentor capacity, no reporting line), computed here from what pairing stored, independently of
the matcher: shared.worktime per zone-and-hours class, then a max flow (OR-tools) over groups of
interchangeable people. Target: equal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
from nats.js import JetStreamContext

from bench.matching_data import program
from bench.throughput import drop_created, fresh_postgres
from cli.launcher import NatsServer, free_port
from services.pairing.matching import MIN_SHARED_STRETCH_MINUTES, MIN_WEEKLY_OVERLAP_MINUTES
from shared.bus import STREAM, durable_name, ensure_stream
from shared.worktime import Availability, Interval, intersect, working_intervals

PROGRAM = "bench-round"
REGISTERED = "mentorship.participant.registered"
REQUESTED = "mentorship.matching.requested"
COMPLETED = "mentorship.matching.completed"
FORMED = "mentorship.pair.formed"
PROPOSED = "mentorship.pair.proposed"
TARGET_SECONDS = 30.0


def _envelope(**payload: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
        "program_id": PROGRAM,
        "schema_version": 1,
        **payload,
    }


def _hours(who: Availability) -> list[dict[str, Any]]:
    return [
        {"weekday": h.weekday, "start": h.start.strftime("%H:%M"), "end": h.end.strftime("%H:%M")}
        for h in who.hours
    ]


def registrations(size: int, mentors: int, shape: str) -> list[dict[str, Any]]:
    """participant.registered bodies: `mentors` mentors, then `size` mentees."""
    mentor_profiles, mentee_profiles = program(size, shape=shape)
    bodies = []
    for role, people in (("mentor", mentor_profiles[:mentors]), ("mentee", mentee_profiles)):
        for p in people:
            body = _envelope(
                participant_id=p.participant_id, email=f"{p.participant_id}@example.org",
                display_name=p.participant_id, role=role, timezone=p.availability.timezone,
                working_hours=_hours(p.availability), languages=list(p.languages),
                skills_offered=sorted(p.skills_offered), skills_sought=sorted(p.skills_sought),
                goals=sorted(p.goals), manager_id=p.manager_id,
            )  # fmt: skip
            if role == "mentor":
                body["capacity"] = p.capacity
            bodies.append(body)
    return bodies


def _headers(body: dict[str, Any], subject: str) -> dict[str, str]:
    return {
        "Nats-Msg-Id": body["event_id"],
        "ce-specversion": "1.0",
        "ce-id": body["event_id"],
        "ce-type": subject,
        "ce-source": "/bench/pairing_round",
        "ce-time": body["occurred_at"],
        "Content-Type": "application/json",
    }


async def publish_all(js: JetStreamContext, subject: str, bodies: list[dict[str, Any]]) -> None:
    """Publishes with pipelined PubAcks (as a bulk import would)."""
    futures = [
        await js.publish_async(subject, json.dumps(b).encode(), headers=_headers(b, subject))
        for b in bodies
    ]
    await asyncio.gather(*futures)


async def until(check: Any, what: str, limit: float) -> float:
    """Polls check() until true; the seconds it took."""
    started = time.monotonic()
    last = started
    while not await check():
        now = time.monotonic()
        if now - started > limit:
            raise TimeoutError(f"{what}: not after {limit:.0f}s; see the service's log")
        if now - last > 15:
            print(f"    ... {what}: {now - started:.0f}s", flush=True)
            last = now
        await asyncio.sleep(0.05)
    return time.monotonic() - started


# --- the reference: a maximum-cardinality matching under the same hard constraints ----------


PEOPLE = (
    "SELECT participant_id, role, timezone, working_hours, languages, capacity, manager_id, "
    "active_pairs FROM participants WHERE program_id = {} AND active"
)


async def _rows(database: Path | str) -> list[Any]:
    """pairing's stored participants: from its SQLite file, or its PostgreSQL database."""
    if isinstance(database, Path):
        with contextlib.closing(sqlite3.connect(database)) as conn:
            return conn.execute(PEOPLE.format("?"), (PROGRAM,)).fetchall()
    conn = await asyncpg.connect(database, server_settings={"search_path": "pairing"})
    try:
        return [tuple(r) for r in await conn.fetch(PEOPLE.format("$1"), PROGRAM)]
    finally:
        await conn.close()


def _people(rows: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(mentors, mentees) as pairing stored them (active ones)."""
    people = [
        {
            "id": pid,
            "role": role,
            "zone": zone,
            "hours": json.loads(hours),
            "languages": frozenset(json.loads(langs)),
            "capacity": cap or 0,
            "manager": manager,
            "load": load or 0,
        }
        for pid, role, zone, hours, langs, cap, manager, load in rows
    ]
    return [p for p in people if p["role"] == "mentor"], [
        p for p in people if p["role"] == "mentee"
    ]


def _chains(people: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Each person's whole chain of managers."""
    manager = {p["id"]: p["manager"] for p in people if p["manager"]}
    chains: dict[str, set[str]] = {}
    for person in manager:
        seen: set[str] = set()
        at = manager.get(person)
        while at is not None and at not in seen:
            seen.add(at)
            at = manager.get(at)
        chains[person] = seen
    return chains


def _week(zone: str, hours_json: str, week_of: dt.date) -> list[Interval]:
    who = Availability.from_json(zone, json.loads(hours_json))
    window = [
        Interval(
            dt.datetime.combine(week_of, dt.time(), tzinfo=dt.UTC),
            dt.datetime.combine(week_of + dt.timedelta(days=7), dt.time(), tzinfo=dt.UTC),
        )
    ]
    return intersect(working_intervals(who, week_of - dt.timedelta(days=2), 10), window)


def maximum_pairs(rows: list[Any], week_of: dt.date) -> tuple[int, float]:
    """The most pairs any matching forms under the hard constraints, and the seconds it took."""
    from ortools.graph.python import max_flow

    started = time.perf_counter()
    mentors, mentees = _people(rows)
    chains = _chains(mentors + mentees)
    mentor_ids, mentee_ids = {p["id"] for p in mentors}, {p["id"] for p in mentees}
    ruled_out = set()  # (mentee, mentor) inside one reporting line, either direction
    for person, chain in chains.items():
        if person in mentee_ids:
            ruled_out |= {(person, boss) for boss in chain if boss in mentor_ids}
        elif person in mentor_ids:
            ruled_out |= {(boss, person) for boss in chain if boss in mentee_ids}
    involved_mentees = {e for e, _ in ruled_out}
    involved_mentors = {m for _, m in ruled_out}

    classes: dict[tuple[str, str], int] = {}
    weeks: list[list[Interval]] = []
    for p in mentors + mentees:
        key = (p["zone"], json.dumps(p["hours"], sort_keys=True))
        if key not in classes:
            classes[key] = len(weeks)
            weeks.append(_week(p["zone"], key[1], week_of))
        p["class"] = classes[key]

    @functools.cache
    def time_ok(a: int, b: int) -> bool:
        shared = intersect(weeks[a], weeks[b])
        total = sum(i.minutes for i in shared)
        longest = max((i.minutes for i in shared), default=0)
        return total >= MIN_WEEKLY_OVERLAP_MINUTES and longest >= MIN_SHARED_STRETCH_MINUTES

    # groups of interchangeable people: same class and languages, in no ruled-out pair
    def groups(people: list[dict[str, Any]], involved: set[str], weight: str) -> list[Any]:
        grouped: dict[Any, list[Any]] = defaultdict(lambda: [None, None, 0])
        for p in people:
            key = p["id"] if p["id"] in involved else (p["class"], p["languages"])
            entry = grouped[key]
            entry[0], entry[1] = p["class"], p["languages"]
            # the program was fresh: the round started from no pairs (active_pairs counts its own)
            entry[2] += 1 if weight == "one" else p["capacity"]
        return [(key, *entry) for key, entry in grouped.items()]

    mentee_groups = groups(mentees, involved_mentees, "one")
    mentor_groups = [g for g in groups(mentors, involved_mentors, "capacity") if g[3] > 0]
    flow = max_flow.SimpleMaxFlow()
    source, sink = 0, 1
    first_mentee, first_mentor = 2, 2 + len(mentee_groups)
    for a, (_, _, _, count) in enumerate(mentee_groups):
        flow.add_arc_with_capacity(source, first_mentee + a, count)
    for b, (_, _, _, room) in enumerate(mentor_groups):
        flow.add_arc_with_capacity(first_mentor + b, sink, room)
    for a, (a_key, a_class, a_langs, count) in enumerate(mentee_groups):
        for b, (b_key, b_class, b_langs, _) in enumerate(mentor_groups):
            if not a_langs & b_langs or not time_ok(a_class, b_class):
                continue
            if isinstance(a_key, str) and isinstance(b_key, str) and (a_key, b_key) in ruled_out:
                continue
            flow.add_arc_with_capacity(first_mentee + a, first_mentor + b, count)
    assert flow.solve(source, sink) == flow.OPTIMAL
    return flow.optimal_flow(), time.perf_counter() - started


# --- one size through the system ----------------------------------------------------------


def _start_pairing(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """The real pairing service in its own process, as `mentorship up` runs it."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.pairing"], env=env, stdout=out, stderr=out
        )


TIMELINE = re.compile(r"round (\S+) of \S+: .*; timeline (\{.*\})$")


def handler_timeline(log: Path, round_id: str) -> dict[str, Any] | None:
    """The timeline pairing logged for the round (see services/pairing/handlers.py)."""
    for line in log.read_text(errors="replace").splitlines():
        found = TIMELINE.search(line)
        if found and found.group(1) == round_id:
            timeline: dict[str, Any] = json.loads(found.group(2))
            return timeline
    return None


async def one_size(
    size: int, mentors: int, shape: str, limit: float, admin_url: str | None, consent: bool
) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"mentorship-round-{size}-"))
    server = NatsServer(free_port(), folder / "nats", folder / "nats.log")
    server.start()
    port = free_port()
    env = dict(os.environ) | {
        "MENTORSHIP_NATS_URL": server.url,
        "MENTORSHIP_DATA_DIR": str(folder / "data"),
        "MENTORSHIP_PAIRING_HTTP_PORT": str(port),
        "MENTORSHIP_LOG_LEVEL": "INFO",  # the round's timeline is an INFO line
        "MENTORSHIP_PAIRING_CONSENT_REQUIRED": "true" if consent else "false",
    }
    for name in ("MENTORSHIP_DATABASE_URL", "MENTORSHIP_PAIRING_DATABASE_URL"):
        env.pop(name, None)
    env.pop("MENTORSHIP_PAIRING_CONSENT_BY_PROGRAM", None)
    database: Path | str = folder / "data" / "pairing.sqlite3"
    if admin_url:
        env["MENTORSHIP_PAIRING_DATABASE_URL"] = url = await fresh_postgres(admin_url)
        database = url.replace("postgresql+asyncpg://", "postgresql://")  # asyncpg's own form
    (folder / "data").mkdir()
    log = folder / "pairing.log"
    nc = await nats.connect(server.url)
    js = nc.jetstream()
    await ensure_stream(js)  # the stream's owner declares it (as `mentorship up` does)
    proc = _start_pairing(env, log)
    round_id = f"round-{size}"
    try:

        async def ready() -> bool:
            async with httpx.AsyncClient() as client:
                try:
                    return (await client.get(f"http://127.0.0.1:{port}/readyz")).is_success
                except httpx.HTTPError:
                    return False

        await until(ready, "pairing starting", 120)
        bodies = registrations(size, mentors, shape)
        started = time.perf_counter()
        await publish_all(js, REGISTERED, bodies)
        durable = durable_name("pairing", REGISTERED)

        async def consumed() -> bool:
            info = await js.consumer_info(STREAM, durable)
            return not info.num_pending and not info.num_ack_pending

        await until(consumed, f"{len(bodies):,} registrations consumed", limit)
        registered = time.perf_counter() - started

        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        arrived: dict[str, float] = {}

        async def on_completed(msg: Any) -> None:
            if not done.done():
                arrived["completed"] = time.time()
                done.set_result(json.loads(msg.data))

        async def on_pair(_msg: Any) -> None:
            arrived.setdefault("first_pair", time.time())
            arrived["last_pair"] = time.time()

        await nc.subscribe(COMPLETED, cb=on_completed)
        await nc.subscribe(PROPOSED if consent else FORMED, cb=on_pair)
        request = _envelope(round_id=round_id)
        week_of = dt.datetime.now(dt.UTC).date()  # pairing matches the week from its clock's day
        published_at = time.time()
        started = time.perf_counter()
        await publish_all(js, REQUESTED, [request])
        completed = await asyncio.wait_for(done, limit)
        seconds = time.perf_counter() - started
        load = os.getloadavg()
    finally:
        await nc.drain()
        proc.terminate()
        proc.wait(60)
        server.stop()
    try:
        rows = await _rows(database)
    finally:
        await drop_created()
    maximum, reference_seconds = maximum_pairs(rows, week_of)
    return {
        "size": size, "mentors": mentors, "shape": shape, "registered_seconds": registered,
        "round_seconds": seconds, "pairs": completed["pairs_formed"],
        "unmatched": completed["unmatched_mentees"], "maximum": maximum,
        "reference_seconds": reference_seconds, "load": load, "log": str(log),
        "database": "PostgreSQL" if admin_url else "SQLite", "consent": consent,
        "timeline": _timeline(published_at, arrived, handler_timeline(log, round_id)),
    }  # fmt: skip


def _timeline(
    published_at: float, arrived: dict[str, float], handler: dict[str, Any] | None
) -> list[tuple[str, float]]:
    """(phase, seconds) from matching.requested's publish to matching.completed's arrival."""
    if handler is None:  # no timeline in the log: the outside view only
        return [("request -> completed", arrived["completed"] - published_at)]
    phases: list[tuple[str, float]] = [("fetch+barrier", handler["started_at"] - published_at)]
    inner = dict(handler["phases"])
    for name, seconds in inner.items():
        if name == "match":
            continue
        if name == "pool":  # the solver's own seconds, and the rest: moving data in and out
            solving = inner.get("match", 0.0)
            phases += [("solve", solving), ("pool in/out", seconds - solving)]
        else:
            phases.append((name, seconds))
    first = arrived.get("first_pair", arrived["completed"])
    phases.append(("outbox+commit -> 1st pair", first - handler["ended_at"]))
    phases.append(("relay pairs + completed", arrived["completed"] - first))
    return phases


def _line(r: dict[str, Any]) -> str:
    verdict = "meets" if r["round_seconds"] <= TARGET_SECONDS else "MISSES"
    pairs = "equal" if r["pairs"] == r["maximum"] else f"x{r['pairs'] / max(1, r['maximum']):.4f}"
    kind = "proposals" if r["consent"] else "pairs"
    timeline = ", ".join(f"{name} {seconds:.2f}" for name, seconds in r["timeline"])
    return (
        f"{r['size']:,} mentees x {r['mentors']:,} mentors ({r['shape']}, {r['database']}"
        f"{', consent' if r['consent'] else ''}): registrations consumed in "
        f"{r['registered_seconds']:.1f}s; matching.requested -> matching.completed "
        f"{r['round_seconds']:.1f}s ({verdict} the {TARGET_SECONDS:.0f} s target); "
        f"{r['pairs']:,} {kind} vs a maximum matching's {r['maximum']:,} ({pairs}; reference "
        f"{r['reference_seconds']:.1f}s), {r['unmatched']:,} unmatched; load "
        f"{' '.join(f'{x:.1f}' for x in r['load'])}\n    timeline (s): {timeline}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--shape", choices=["diverse", "popular"], default="diverse")
    parser.add_argument("--mentor-ratio", type=float, default=0.33)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per stage")
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server (rights to create databases): each size also runs on a fresh "
        "database there",
    )
    parser.add_argument(
        "--only-postgres", action="store_true", help="with --database-url: skip SQLite"
    )
    parser.add_argument(
        "--consent", action="store_true", help="the round proposes (pair.proposed, timers)"
    )
    args = parser.parse_args()
    if args.only_postgres and not args.database_url:
        parser.error("--only-postgres needs --database-url")
    backends = [] if args.only_postgres else [None]
    if args.database_url:
        backends.append(args.database_url)
    print("compiling/loading the matcher once: python -m services.pairing.warmup", flush=True)
    subprocess.run([sys.executable, "-m", "services.pairing.warmup"], check=True)
    for size in args.sizes:
        mentors = max(1, round(size * args.mentor_ratio))
        for admin_url in backends:
            result = asyncio.run(
                one_size(size, mentors, args.shape, args.timeout, admin_url, args.consent)
            )
            print(_line(result), flush=True)


if __name__ == "__main__":
    main()
