"""`mentorship demo`: a sample cohort over ten time zones, run through the whole system."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.parser
import email.policy
import json
import time
import uuid
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import nats
from nats.aio.client import Client as NatsClient

from cli.launcher import System
from cli.tokens import create_token
from shared.bus import event_headers
from shared.clock import SystemClock
from shared.events import (
    Event,
    MatchingRequested,
    NotificationSent,
    PairFormed,
    ParticipantRegistered,
    SessionScheduled,
)
from shared.settings import Settings

WAIT_SECONDS = 120
QUIET_PROGRESS_SECONDS = 10  # while nothing changes, say every so often what is awaited
PROGRAM_HEADER = "X-Mentorship-Program"  # used when notifications puts it on its mail


def load_cohort() -> dict[str, Any]:
    """The bundled sample cohort."""
    text = resources.files("cli").joinpath("data/cohort.json").read_text()
    cohort: dict[str, Any] = json.loads(text)
    return cohort


async def publish(js: Any, event: ParticipantRegistered | MatchingRequested) -> None:
    """Publishes like an outside system would: JSON body, dedupe id and CloudEvents headers."""
    headers = event_headers(event, source="demo", traceparent=None)
    await js.publish(event.subject, event.model_dump_json().encode(), headers=headers, timeout=5)


WATCHED: dict[str, type[Event]] = {
    "pairs": PairFormed,
    "sessions": SessionScheduled,
    "sent": NotificationSent,
}


async def _watch(url: str, program_id: str, seen: dict[str, list[Any]]) -> NatsClient:
    """Collects this program's pairs, sessions and sent emails as they are published."""
    nc = await nats.connect(url)
    for key, model in WATCHED.items():

        async def on_message(msg: Any, key: str = key, model: type[Event] = model) -> None:
            data = json.loads(msg.data)
            if data.get("program_id") == program_id:
                seen[key].append(model.model_validate(data))

        await nc.subscribe(model.subject, cb=on_message)
    return nc


async def _drive(system: System, program_id: str, token: str) -> dict[str, Any]:
    cohort = load_cohort()
    people = {p["participant_id"]: p for p in cohort["participants"]}
    clock = SystemClock()
    seen: dict[str, list[Any]] = {key: [] for key in WATCHED}
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
            ParticipantRegistered(program_id=program_id, occurred_at=clock.now(), **person),
        )
    print("Requesting a matching round ...")
    await publish(
        js,
        MatchingRequested(
            program_id=program_id,
            occurred_at=clock.now(),
            round_id=f"round-{uuid.uuid4().hex[:8]}",
            requested_by="demo",
        ),
    )
    await nc.drain()
    overview = await _wait_for_outcome(system, program_id, token, seen)
    await watcher.drain()
    return {"people": people, **seen, "overview": overview}


def is_invitation(kind: str) -> bool:
    """Whether a notification.sent kind is an invitation to a planned session."""
    changes = ("session.rescheduled", "session.cancelled", "session.reminder", "session.missed")
    return kind.startswith("session.") and kind not in changes


def _awaited(overview: dict[str, Any], seen: dict[str, list[Any]]) -> str:
    """What the demo still waits for, in words; '' once everything has happened."""
    if overview["matching_rounds"] < 1:
        return "the matching round"
    planned = {session.pair_id for session in seen["sessions"]}
    unplanned = [pair for pair in seen["pairs"] if pair.pair_id not in planned]
    if unplanned:
        return f"kickoffs of {len(unplanned)} pairs"
    invitations = [sent for sent in seen["sent"] if is_invitation(sent.kind)]
    emails = sum(len(session.attendee_ids) for session in seen["sessions"]) - len(invitations)
    if emails > 0:
        return f"{emails} invitation emails"
    if overview["emails"].get("sent", 0) < len(seen["sent"]):
        return "insights to count the last emails"
    return ""


async def _wait_for_outcome(
    system: System, program_id: str, token: str, seen: dict[str, list[Any]]
) -> dict[str, Any]:
    """Follows the program's overview, printing each change, until everything has happened."""
    url = f"{system.http_url('insights')}/programs/{program_id}/overview"
    headers = {"Authorization": f"Bearer {token}"}
    started = time.monotonic()
    last, last_said = "", started
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            overview: dict[str, Any] = (await client.get(url, headers=headers)).json()
            awaited = _awaited(overview, seen)
            line = (
                f"  participants {sum(overview['participants'].values())}, "
                f"pairs {len(seen['pairs'])}, sessions planned {len(seen['sessions'])}, "
                f"emails sent {overview['emails'].get('sent', 0)}"
            )
            elapsed = time.monotonic() - started
            if line != last or time.monotonic() - last_said >= QUIET_PROGRESS_SECONDS:
                waiting = f" ({elapsed:.0f}s, waiting for {awaited})" if awaited else ""
                print(line + waiting, flush=True)
                last, last_said = line, time.monotonic()
            if not awaited:
                return overview
            if elapsed > WAIT_SECONDS:
                print(
                    f"  (gave up waiting for {awaited} after {WAIT_SECONDS}s; "
                    f"see {system.data_dir / 'logs'})"
                )
                return overview
            await asyncio.sleep(0.5)


def _local(at: dt.datetime, zone: str) -> str:
    local = at.astimezone(ZoneInfo(zone))
    return f"{local:%a %d %b %H:%M} {local.tzname()} ({zone})"


def program_mails(folder: Path, program_id: str, message_ids: set[str]) -> list[Path]:
    """The caught emails of one program: its header if mail carries one, else its Message-IDs."""
    found = []
    headers_only = email.parser.BytesHeaderParser(policy=email.policy.default)
    for path in sorted(folder.glob("*.eml")):
        with path.open("rb") as file:
            headers = headers_only.parse(file)
        program = headers.get(PROGRAM_HEADER)
        if program == program_id or (
            program is None and str(headers["Message-ID"] or "").strip() in message_ids
        ):
            found.append(path)
    return found


def _report(system: System, result: dict[str, Any]) -> None:
    """Prints the pairs, the kickoffs in local time, this program's emails and the overview."""
    people = result["people"]
    print(f"\nPairs formed ({len(result['pairs'])}):")
    for pair in sorted(result["pairs"], key=lambda p: p.mentor_id):
        mentor, mentee = people[pair.mentor_id], people[pair.mentee_id]
        print(
            f"  {mentor['display_name']:<18} mentors {mentee['display_name']:<18} "
            f"[{'; '.join(pair.reasons)}]"
        )
    sessions = result["sessions"]
    kinds = Counter(str(session.kind) for session in sessions)
    summary = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
    print(f"\nSessions planned ({len(sessions)}: {summary}), first occurrences in local time:")
    by_pair: dict[str, list[Any]] = {}
    for session in sorted(sessions, key=lambda s: s.start):
        by_pair.setdefault(session.pair_id, []).append(session)
    for planned in by_pair.values():
        names = [people[pid]["display_name"] for pid in planned[0].attendee_ids]
        print(f"  {' & '.join(names)}")
        for session in planned:
            local = " | ".join(
                _local(session.start, people[pid]["timezone"]) for pid in session.attendee_ids
            )
            repeats = f", repeating {session.rrule}" if session.rrule else ""
            print(f"      {session.kind!s:<9} {local}{repeats}")
    sent = {notification.message_id for notification in result["sent"]}
    mails: list[Path] = []
    if system.catcher is None:
        print(f"\nEmails sent: {len(sent)} through {system.settings.smtp_host}")
    else:
        program_id = result["overview"]["program_id"]
        mails = program_mails(system.mail_dir, program_id, sent)
        total = len(list(system.mail_dir.glob("*.eml")))
        earlier = f" ({total} there in all, with earlier runs')" if total > len(mails) else ""
        print(f"\nEmails caught for {program_id}: {len(mails)} in {system.mail_dir}{earlier}")
    for path in mails[:3]:
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        parts = [part.get_content_type() for part in msg.walk() if not part.is_multipart()]
        print(f"  {path.name}: To {msg['To']} | {msg['Subject']} | {', '.join(parts)}")
    if len(mails) > 3:
        print(f"  ... and {len(mails) - 3} more")
    print("\nOverview (GET /programs/{id}/overview):")
    print(json.dumps(result["overview"], indent=2))


def run_demo(settings: Settings, *, keep_running: bool) -> int:
    """Starts the system, runs the cohort through it, reports, and stops (unless asked not to)."""
    program_id = f"demo-{SystemClock().now():%Y%m%d-%H%M%S}"
    external = "nats_url" in settings.model_fields_set
    system = System(settings, external_nats=external, command="demo")
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
    planned = {session.pair_id for session in result["sessions"]}
    ok = bool(result["pairs"]) and all(pair.pair_id in planned for pair in result["pairs"])
    return 0 if ok else 1
