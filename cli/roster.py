"""`mentorship import` and `mentorship match`: a coordinator's roster in, a matching round asked.

`import roster.csv --program P` turns an HR-style CSV into participant.registered events: every
good row goes, every bad row is reported with its line number and why (docs/pairing.md lists
the columns; docs/samples/roster.csv is a sample). `match --program P [--dry-run] [--rules
FILE.json]` publishes matching.requested (with the file's rules for this round only) and shows
matching.completed when it comes.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import io
import json
import re
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from pydantic import ValidationError

from cli.jetstream import on_jetstream
from cli.rules import read_rules_file
from shared.bus import event_headers
from shared.clock import SystemClock
from shared.events import Event, MatchingCompleted, MatchingRequested, ParticipantRegistered
from shared.settings import Settings

COLUMNS = (
    "participant_id", "email", "display_name", "role", "timezone", "languages", "working_hours",
    "skills_offered", "skills_sought", "goals", "capacity", "department", "manager_id",
    "seniority", "avoid",
)  # fmt: skip
REQUIRED = ("participant_id", "email", "display_name", "role", "timezone", "languages")
LISTS = ("languages", "skills_offered", "skills_sought", "goals", "avoid")
DEFAULT_HOURS = "Mon-Fri 09:00-17:00"
DAYS = {name: i for i, name in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))}
HOURS = re.compile(r"^(?P<days>[a-z]{3}(?:-[a-z]{3})?(?:,[a-z]{3}(?:-[a-z]{3})?)*)\s+"
                   r"(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})$")  # fmt: skip


SHOWN = {
    "round_id", "dry_run", "pairs_formed", "unmatched_mentees", "unmatched_mentee_ids",
    "rules_source",
}  # fmt: skip


class BadRow(ValueError):
    """A row that cannot become an event; the message says why."""


@dataclass(frozen=True)
class Problem:
    line: int
    reason: str


def _list(value: str) -> list[str]:
    return [item.strip() for item in value.split(";") if item.strip()]


def _days(spec: str) -> list[int]:
    days: list[int] = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise BadRow(f"working_hours: unknown day in {part!r} (use Mon, Tue, ... Sun)")
        days += range(DAYS[first], DAYS[last or first] + 1)
    return days


def working_hours(value: str) -> list[dict[str, Any]]:
    """'Mon-Thu 09:00-17:00; Fri 09:00-13:00' as working-hours entries (local time)."""
    entries = []
    for group in _list(value or DEFAULT_HOURS):
        found = HOURS.match(group.lower())
        if found is None:
            raise BadRow(
                f"working_hours: {group!r} is not like 'Mon-Fri 09:00-17:00' (groups split by ;)"
            )
        entries += [
            {"weekday": day, "start": found["start"].zfill(5), "end": found["end"].zfill(5)}
            for day in _days(found["days"])
        ]
    return entries


def registration(row: dict[str, str], program_id: str, now: dt.datetime) -> ParticipantRegistered:
    """One row as participant.registered, or BadRow with every reason in one line."""
    cells = {k: (v or "").strip() for k, v in row.items() if k is not None}
    missing = [name for name in REQUIRED if not cells.get(name)]
    if missing:
        raise BadRow(f"missing {', '.join(missing)}")
    body: dict[str, Any] = {
        "program_id": program_id,
        "occurred_at": now,
        **{name: cells[name] for name in ("participant_id", "email", "display_name", "timezone")},
        "role": cells["role"].lower(),
        "working_hours": working_hours(cells.get("working_hours", "")),
        **{name: _list(cells.get(name, "")) for name in LISTS},
    }
    for name in ("department", "manager_id"):
        if cells.get(name):
            body[name] = cells[name]
    if cells.get("seniority"):
        if not cells["seniority"].isdigit():
            raise BadRow(f"seniority: {cells['seniority']!r} is not a whole number of years")
        body["seniority"] = int(cells["seniority"])
    if cells.get("capacity"):
        if not cells["capacity"].isdigit():
            raise BadRow(f"capacity: {cells['capacity']!r} is not a whole number")
        body["capacity"] = int(cells["capacity"])
    try:
        return ParticipantRegistered.model_validate(body)
    except ValidationError as exc:
        raise BadRow("; ".join(_reason(error) for error in exc.errors())) from exc


def _reason(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"] if not isinstance(part, int))
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def read_roster(
    text: str, program_id: str, now: dt.datetime
) -> tuple[list[ParticipantRegistered], list[Problem]]:
    """The CSV's good rows as events and its bad rows' problems (line numbers as in the file)."""
    reader = csv.DictReader(io.StringIO(text))
    unknown = [c for c in reader.fieldnames or [] if c and c.strip() not in COLUMNS]
    if not reader.fieldnames or unknown:
        raise BadRow(
            f"line 1: unknown column(s) {', '.join(unknown) or '(none: is the file empty?)'}; "
            f"the columns are {', '.join(COLUMNS)}"
        )
    reader.fieldnames = [c.strip() for c in reader.fieldnames]
    good: list[ParticipantRegistered] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    starts = reader.line_num + 1  # where the next row starts (a quoted cell may span lines)
    for row in reader:
        line, starts = starts, reader.line_num + 1
        try:
            event = registration(row, program_id, now)
        except BadRow as exc:
            problems.append(Problem(line, str(exc)))
            continue
        if event.participant_id in seen:
            problems.append(
                Problem(
                    line,
                    f"participant_id {event.participant_id!r} is on line "
                    f"{seen[event.participant_id]} already",
                )
            )
            continue
        seen[event.participant_id] = line
        good.append(event)
    return good, problems


def progress(done: int, total: int, out: TextIO) -> None:
    """A one-line progress bar, redrawn in place."""
    width = 30
    filled = width * done // max(1, total)
    out.write(f"\rpublishing [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done == total:
        out.write("\n")
    out.flush()


async def publish_all(js: JetStreamContext, events: Iterable[Event], total: int) -> int:
    """Publishes each event as an outside system would (dedupe id, CloudEvents headers)."""
    sent = 0
    progress(0, total, sys.stderr)
    for event in events:
        headers = event_headers(event, source="cli", traceparent=None)
        await js.publish(event.subject, event.model_dump_json().encode(), headers=headers)
        sent += 1
        if sent % 50 == 0 or sent == total:
            progress(sent, total, sys.stderr)
    return sent


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """Publishes participant.registered for every good row; reports every bad one."""

    path = Path(args.csv)
    try:
        text = path.read_text(encoding="utf-8-sig")
        good, problems = read_roster(text, args.program, SystemClock().now())
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except BadRow as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"{path}:{problem.line}: skipped: {problem.reason}", file=sys.stderr)

    async def work(js: JetStreamContext, _: Any) -> int:
        return await publish_all(js, good, len(good))

    sent = on_jetstream(settings, work) if good else 0
    print(f"published {sent} participant.registered for {args.program}; {len(problems)} bad row(s)")
    return 1 if problems else 0


def cmd_match(args: argparse.Namespace, settings: Settings) -> int:
    """Publishes matching.requested; waits for the round's matching.completed and shows it."""
    rules = read_rules_file(Path(args.rules)) if args.rules else None
    event = MatchingRequested(
        program_id=args.program, occurred_at=SystemClock().now(),
        round_id=args.round_id or f"{args.program}-{uuid.uuid4().hex[:12]}",
        requested_by="cli", dry_run=args.dry_run, rules=rules,
    )  # fmt: skip

    async def work(js: JetStreamContext, _: Any) -> int:
        completed: asyncio.Queue[MatchingCompleted] = asyncio.Queue()

        async def on_completed(msg: Any) -> None:
            outcome = MatchingCompleted.model_validate_json(msg.data)
            if outcome.program_id == event.program_id and outcome.round_id == event.round_id:
                await completed.put(outcome)

        # before publishing: an outcome that comes quickly is not missed
        sub = await js.subscribe(
            MatchingCompleted.subject, cb=on_completed, ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
        )  # fmt: skip
        try:
            await publish_all(js, [event], 1)
            print(f"requested round {event.round_id}{' (dry run)' if event.dry_run else ''}")
            if args.no_wait:
                return 0
            try:
                outcome = await asyncio.wait_for(completed.get(), timeout=args.timeout)
            except TimeoutError:
                print(
                    f"no matching.completed within {args.timeout:g}s: is pairing running "
                    "(`mentorship up`)? The round still runs when it comes.",
                    file=sys.stderr,
                )
                return 1
        finally:
            await sub.unsubscribe()
        shown = outcome.model_dump(mode="json", include=SHOWN)
        print(json.dumps(shown, indent=2))
        return 0

    return on_jetstream(settings, work)


def add_parser(subparsers: Any) -> None:
    """Registers `mentorship import` and `mentorship match` on the CLI's subcommands."""
    roster = subparsers.add_parser("import", help="publish participant.registered from a CSV")
    roster.add_argument("csv", help="the roster (columns: docs/pairing.md, 'Roster import')")
    roster.add_argument("--program", required=True)
    roster.set_defaults(func=cmd_import)
    match = subparsers.add_parser("match", help="ask for a matching round (matching.requested)")
    match.add_argument("--program", required=True)
    match.add_argument("--dry-run", action="store_true", help="preview: counts, no pairs formed")
    match.add_argument("--round-id", help="default: a new id")
    match.add_argument(
        "--rules",
        metavar="FILE.json",
        help="this round's rules, instead of the program's stored ones (`mentorship rules`)",
    )
    match.add_argument("--no-wait", action="store_true", help="do not wait for the outcome")
    match.add_argument("--timeout", type=float, default=120.0, help="seconds to wait")
    match.set_defaults(func=cmd_match)
