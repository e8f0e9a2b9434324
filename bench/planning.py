"""How fast scheduling plans formed pairs: pair.formed -> session.scheduled, events/s.

    .venv/bin/python -m bench.planning [--pairs 1000] [--per-mentor 1] [--database-url ...]

Per pair: a kickoff (60 min) and a series of one-to-ones (26 occurrences), in both people's
working hours (four zones, 09:00-17:00 weekdays, as bench/email.py's cohort), clear of the
mentor's other pairs (`--per-mentor`). The registrations are consumed first; then every
pair.formed is published at once (pipelined PubAcks, as pairing's outbox relay sends a round's
pairs) and the clock runs until every pair's kickoff and series are announced (session.scheduled,
or session.unschedulable), on a real nats-server with the scheduling service as it runs in
production (consumer batches, unit of work, outbox relay).

Baseline, in the same run and process: the pure planner (`plans.plan_pair`) called in a loop for
the same pairs, each mentor's earlier sessions as busy time, without the service. The ratio
service/pure is what the service adds around the planning: reads, writes, iCalendar objects,
the outbox, the bus. The bench also counts the SQL statements the service sent per pair.formed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import nats
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine

from bench.throughput import drained, stop_quietly, wait_for
from cli.launcher import NatsServer, free_port
from services.scheduling import plans, series
from services.scheduling.app import definition
from services.scheduling.planning import Planner, Rules
from shared.bus import STREAM, ensure_stream
from shared.clock import SystemClock
from shared.service import Service
from shared.settings import Settings
from shared.worktime import Availability, Interval

ZONES = ("Europe/Berlin", "Europe/London", "America/New_York", "Europe/Madrid")
HOURS = [{"weekday": d, "start": "09:00", "end": "17:00"} for d in range(5)]
PROGRAM = f"bench-{uuid.uuid4().hex[:8]}"  # PostgreSQL keeps earlier runs' pairs


def _envelope(**fields: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
        "program_id": PROGRAM,
        **fields,
    }


def _people(pairs: int, per_mentor: int) -> list[dict[str, Any]]:
    mentors = -(-pairs // per_mentor)
    bodies = []
    for i in range(mentors):
        bodies.append(_person(f"m{i}", "mentor", ZONES[i % len(ZONES)], per_mentor))
    for i in range(pairs):
        bodies.append(_person(f"e{i}", "mentee", ZONES[(i + 1) % len(ZONES)], 0))
    return bodies


def _person(pid: str, role: str, zone: str, capacity: int) -> dict[str, Any]:
    body = _envelope(
        participant_id=pid, email=f"{pid}@example.org", display_name=pid, role=role,
        timezone=zone, working_hours=HOURS, languages=["en"],
    )  # fmt: skip
    if role == "mentor":
        body["capacity"] = capacity
    return body


def _formed(pairs: int, per_mentor: int) -> list[dict[str, Any]]:
    return [
        _envelope(
            pair_id=f"p{i}",
            round_id="r",
            mentor_id=f"m{i // per_mentor}",
            mentee_id=f"e{i}",
            language="en",
        )
        for i in range(pairs)
    ]


async def _publish_all(js: Any, subject: str, bodies: list[dict[str, Any]]) -> None:
    futures = [
        await js.publish_async(
            subject, json.dumps(b).encode(), headers={"Nats-Msg-Id": b["event_id"]}
        )
        for b in bodies
    ]
    await asyncio.gather(*futures)


def pure(pairs: int, per_mentor: int, settings: Settings) -> float:
    """Seconds the pure planner takes for the pairs, each mentor's earlier sessions busy."""
    rules = Rules(
        notice=dt.timedelta(hours=settings.session_notice_hours),
        buffer=dt.timedelta(minutes=settings.session_buffer_minutes),
    )
    cadence = series.cadence_for(settings.session_cadence_days)
    people = {b["participant_id"]: b for b in _people(pairs, per_mentor)}
    busy: dict[str, list[Interval]] = {}
    now = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    for formed in _formed(pairs, per_mentor):
        planners = []
        for pid in (formed["mentor_id"], formed["mentee_id"]):
            p = people[pid]
            availability = Availability.from_json(p["timezone"], p["working_hours"])
            planners.append(Planner(pid, availability, list(busy.get(pid, ())), 0))
        plan = plans.plan_pair(
            PROGRAM, formed["pair_id"], planners[0], planners[1], now=now,
            lead_days=settings.kickoff_lead_days, rules=rules, cadence=cadence,
        )  # fmt: skip
        for meeting in (plan.kickoff, plan.series):
            for o in meeting.occurrences if meeting else ():
                if o.slot is not None:
                    for pid in (formed["mentor_id"], formed["mentee_id"]):
                        busy.setdefault(pid, []).append(o.slot)
    return time.perf_counter() - started


class Announced:
    """Per pair, how many of its kickoff and series were announced (scheduled or not)."""

    def __init__(self) -> None:
        self.per_pair: dict[str, int] = {}
        self.last = 0.0

    async def receive(self, msg: Any) -> None:
        body = json.loads(msg.data)
        pair = body["pair_id"]
        self.per_pair[pair] = self.per_pair.get(pair, 0) + 1
        self.last = time.perf_counter()

    def complete(self, pairs: int) -> int:
        return sum(1 for n in self.per_pair.values() if n >= 2) if self.per_pair else 0


async def run(pairs: int, per_mentor: int, database_url: str | None) -> None:
    folder = Path(tempfile.mkdtemp(prefix="mentorship-bench-"))
    settings = Settings(
        data_dir=folder / "svc", database_url=database_url, scheduling_http_port=free_port()
    )
    baseline = min(pure(pairs, per_mentor, settings) for _ in range(2))
    server = NatsServer(free_port(), folder / "nats", folder / "nats.log")
    server.start()
    statements = [0]

    def count(*_args: Any) -> None:
        statements[0] += 1

    try:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await ensure_stream(js)
        announced = Announced()
        await nc.subscribe("mentorship.session.scheduled", cb=announced.receive)
        await nc.subscribe("mentorship.session.unschedulable", cb=announced.receive)
        service = Service(
            definition(), settings.model_copy(update={"nats_url": server.url}), SystemClock()
        )
        stack = contextlib.AsyncExitStack()
        await stack.enter_async_context(service.started())
        try:
            durables = [c.name for c in await js.consumers_info(STREAM) if "__" in c.name]
            await _publish_all(js, "mentorship.participant.registered", _people(pairs, per_mentor))
            await wait_for(lambda: drained(js, durables, 0), "registrations consumed", 600)
            sa_event.listen(Engine, "before_cursor_execute", count)
            started = time.perf_counter()
            await _publish_all(js, "mentorship.pair.formed", _formed(pairs, per_mentor))

            async def done() -> tuple[int, int]:
                return announced.complete(pairs), pairs

            await wait_for(done, "pairs planned", 900)
            took = announced.last - started
            sa_event.remove(Engine, "before_cursor_execute", count)
        finally:
            await stop_quietly(stack)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(nc.drain(), 10)
    finally:
        server.stop()
    db = "PostgreSQL" if database_url else "SQLite"
    print(
        f"{pairs} pairs, {per_mentor} a mentor, {db}: pure planner {baseline:.2f} s "
        f"({pairs / baseline:.0f} pairs/s)"
    )
    print(
        f"service pair.formed -> every kickoff and series announced: {took:.2f} s "
        f"({pairs / took:.0f} pair.formed/s), x{took / baseline:.1f} the pure planner; "
        f"{statements[0] / pairs:.1f} SQL statements a pair.formed (with the relay's)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument(
        "--per-mentor", type=int, default=1, help="pairs a mentor has (their sessions are busy)"
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL (postgresql+asyncpg://...) for the service; default SQLite",
    )
    args = parser.parse_args()
    asyncio.run(run(args.pairs, args.per_mentor, args.database_url))


if __name__ == "__main__":
    main()
