"""`mentorship demo`: a sample cohort over ten time zones, run through the whole system."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import json
import os
import time
import uuid
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import nats
from nats.aio.client import Client as NatsClient

from cli.launcher import System
from cli.tokens import create_token
from shared.bus import event_headers
from shared.events import MatchingRequested, PairFormed, ParticipantRegistered, SessionScheduled
from shared.settings import Settings

WAIT_SECONDS = 120


def load_cohort() -> dict[str, Any]:
    """The bundled sample cohort."""
    text = resources.files("cli").joinpath("data/cohort.json").read_text()
    cohort: dict[str, Any] = json.loads(text)
    return cohort


async def publish(js: Any, event: ParticipantRegistered | MatchingRequested) -> None:
    """Publishes like an outside system would: JSON body, dedupe id and CloudEvents headers."""
    headers = event_headers(event, source="demo", traceparent=None)
    await js.publish(event.subject, event.model_dump_json().encode(), headers=headers, timeout=5)


async def _watch(url: str, program_id: str, seen: dict[str, list[Any]]) -> NatsClient:
    nc = await nats.connect(url)

    async def on_message(msg: Any) -> None:
        data = json.loads(msg.data)
        if data.get("program_id") != program_id:
            return
        if msg.subject == PairFormed.subject:
            seen["pairs"].append(PairFormed.model_validate(data))
        elif msg.subject == SessionScheduled.subject:
            seen["sessions"].append(SessionScheduled.model_validate(data))

    await nc.subscribe("mentorship.pair.formed", cb=on_message)
    await nc.subscribe("mentorship.session.scheduled", cb=on_message)
    return nc


async def _drive(system: System, program_id: str, token: str) -> dict[str, Any]:
    cohort = load_cohort()
    people = {p["participant_id"]: p for p in cohort["participants"]}
    seen: dict[str, list[Any]] = {"pairs": [], "sessions": []}
    watcher = await _watch(system.nats_url, program_id, seen)
    nc = await nats.connect(system.nats_url)
    js = nc.jetstream()
    print(
        f"\nRegistering {len(people)} participants of program {program_id} "
        f"({len({p['timezone'] for p in people.values()})} time zones) ..."
    )
    for person in people.values():
        await publish(
            js,
            ParticipantRegistered(
                program_id=program_id, occurred_at=dt.datetime.now(dt.UTC), **person
            ),
        )
    print("Requesting a matching round ...")
    await publish(
        js,
        MatchingRequested(
            program_id=program_id,
            occurred_at=dt.datetime.now(dt.UTC),
            round_id=f"round-{uuid.uuid4().hex[:8]}",
            requested_by="demo",
        ),
    )
    await nc.drain()
    overview = await _wait_for_outcome(system, program_id, token)
    await watcher.drain()
    return {
        "people": people,
        "pairs": seen["pairs"],
        "sessions": seen["sessions"],
        "overview": overview,
    }


async def _wait_for_outcome(system: System, program_id: str, token: str) -> dict[str, Any]:
    url = f"{system.http_url('insights')}/programs/{program_id}/overview"
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + WAIT_SECONDS
    last = ""
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            overview: dict[str, Any] = (await client.get(url, headers=headers)).json()
            line = (
                f"  participants {overview['mentors'] + overview['mentees']}, "
                f"pairs {overview['pairs_formed']}, sessions {overview['sessions_scheduled']}, "
                f"emails sent {overview['emails_sent']}"
            )
            if line != last:
                print(line)
                last = line
            done = (
                overview["events_seen"].get("mentorship.matching.completed", 0) >= 1
                and overview["sessions_scheduled"] >= overview["pairs_formed"]
                and overview["emails_sent"] >= 2 * overview["sessions_scheduled"]
            )
            if done:
                return overview
            if time.monotonic() > deadline:
                print(f"  (gave up waiting after {WAIT_SECONDS}s; see {system.data_dir / 'logs'})")
                return overview
            await asyncio.sleep(0.5)


def _local(at: dt.datetime, zone: str) -> str:
    local = at.astimezone(ZoneInfo(zone))
    return f"{local:%a %d %b %H:%M} {local.tzname()} ({zone})"


def _report(system: System, result: dict[str, Any]) -> None:
    people = result["people"]
    print(f"\nPairs formed ({len(result['pairs'])}):")
    for pair in sorted(result["pairs"], key=lambda p: p.mentor_id):
        mentor, mentee = people[pair.mentor_id], people[pair.mentee_id]
        print(
            f"  {mentor['display_name']:<18} mentors {mentee['display_name']:<18} "
            f"[{'; '.join(pair.reasons)}]"
        )
    print(f"\nKickoff sessions ({len(result['sessions'])}), in each person's local time:")
    for session in sorted(result["sessions"], key=lambda s: s.start):
        print(f"  {session.start:%Y-%m-%d %H:%M} UTC")
        for pid in session.attendee_ids:
            person = people[pid]
            print(f"      {person['display_name']:<18} {_local(session.start, person['timezone'])}")
    mails = sorted(system.mail_dir.glob("*.eml")) if system.catcher else []
    print(f"\nEmails caught: {len(mails)} in {system.mail_dir}")
    for path in mails[:3]:
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        parts = [part.get_content_type() for part in msg.walk() if not part.is_multipart()]
        print(f"  {path.name}: To {msg['To']} | {msg['Subject']} | {', '.join(parts)}")
    if len(mails) > 3:
        print(f"  ... and {len(mails) - 3} more")
    print("\nOverview (GET /programs/{id}/overview):")
    print(json.dumps(result["overview"], indent=2))


def run_demo(*, keep_running: bool) -> int:
    """Starts the system, runs the cohort through it, reports, and stops (unless asked not to)."""
    settings = Settings()
    program_id = f"demo-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
    system = System(settings, external_nats="MENTORSHIP_NATS_URL" in os.environ)
    with system.running():
        token = asyncio.run(create_token(settings, program_id=program_id, label="demo"))
        result = asyncio.run(_drive(system, program_id, token))
        _report(system, result)
        if keep_running:
            print(
                f"\nStill running. Try:\n  curl -H 'Authorization: Bearer {token}' "
                f"{system.http_url('insights')}/programs/{program_id}/overview\n"
                "Ctrl-C stops everything."
            )
            if system.wait_until_stopped() != 0:
                return 1
        print("\nStopping ...")
    ok = result["overview"]["sessions_scheduled"] == len(result["pairs"]) > 0
    return 0 if ok else 1
