"""Reminders before each session, on durable timers: armed when a session is scheduled, moved
when it is rescheduled, withdrawn when it is cancelled.

One timer item per occurrence (kind REMINDER), keyed `<session>|<occurrence>|`: a single session
is keyed by its session id (occurrence empty), an occurrence of a series by the series id and its
RECURRENCE-ID, which is what session.rescheduled and session.cancelled name. It is due at the
first reminder still ahead (payload `minutes`) and carries the later ones (`later`, e.g. [60]
after 1440): when it is due, the handler queues one reminder per attendee and arms the same item
again for the next (handlers.on_reminder_due). One row an occurrence, not one an offset: a
round's series arm half as many. Items armed before (keyed `<prefix><minutes>`, no `later`) are
done the same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events
from dateutil.rrule import rrulestr
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifications import store
from shared.events import SessionCancelled, SessionRescheduled, SessionScheduled
from shared.timers import still_pending
from shared.unit_of_work import Upsert, write_upserts

REMINDER = "notifications.reminder"  # timer kind; its key names the occurrence and the offset
SERIES_HORIZON = dt.timedelta(days=400)  # occurrences of a series armed ahead, at most
SERIES_LIMIT = 120


def offsets(setting: str) -> list[dt.timedelta]:
    """'24,1' -> [24 h, 1 h] before the start (duplicates and non-positive values dropped)."""
    hours = {float(part) for part in setting.replace(";", ",").split(",") if part.strip()}
    return [dt.timedelta(hours=h) for h in sorted(hours, reverse=True) if h > 0]


@dataclass(frozen=True)
class Occurrence:
    """One session (or one occurrence of a series) a reminder is about."""

    base: str  # the session id, or the series id
    recurrence_id: dt.datetime | None
    start: dt.datetime
    end: dt.datetime


def _utc(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)  # an all-day date


def occurrence_prefix(base: str, recurrence_id: dt.datetime | None) -> str:
    """The start of the timer keys of one occurrence."""
    rid = "" if recurrence_id is None else recurrence_id.astimezone(dt.UTC).isoformat()
    return f"{base}|{rid}|"


def timer_key(occurrence: Occurrence) -> str:
    """The occurrence's reminder timer key."""
    return occurrence_prefix(occurrence.base, occurrence.recurrence_id)


def reminder_key(key: str, minutes: int) -> str:
    """One reminder's name (what its mails' idempotency keys are made from): the occurrence and
    how many minutes before it; an item armed before keyed so already."""
    return key + str(minutes) if key.endswith("|") else key


def next_reminder(
    start: dt.datetime, minutes: Sequence[int], now: dt.datetime
) -> tuple[int, list[int]] | None:
    """Of reminders `minutes` before `start` (the earliest first), the first still ahead and
    those after it; None when none is."""
    ahead = [m for m in minutes if start - dt.timedelta(minutes=m) > now]
    return (ahead[0], ahead[1:]) if ahead else None


def _tzid(name_and_params: str) -> str:
    params = name_and_params.split(";")[1:]
    return next((p[5:].strip('"') for p in params if p.upper().startswith("TZID=")), "UTC")


def _when(name_and_params: str, value: str) -> dt.datetime:
    """A DATE-TIME property value (UTC 'Z', TZID=zone, or floating) as UTC."""
    value = value.strip()
    if value.endswith("Z"):
        return dt.datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    tzid = next(
        (
            p.partition("=")[2].strip('"')
            for p in name_and_params.split(";")
            if p.startswith("TZID=")
        ),
        "UTC",
    )
    local = dt.datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=ZoneInfo(tzid))
    return local.astimezone(dt.UTC)


def _fast_series(
    ical: str, series_id: str, after: dt.datetime, until: dt.datetime
) -> list[Occurrence]:
    """The same as recurring_ical_events for the VCALENDARs scheduling writes (one master with
    an RRULE in a TZID, EXDATEs, overrides by RECURRENCE-ID), some 50 times faster; raises
    ValueError on anything else."""
    lines: list[str] = []
    for raw in ical.replace("\r\n", "\n").split("\n"):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] += raw[1:]
        elif raw:
            lines.append(raw)
    events: list[dict[str, list[tuple[str, str]]]] = []
    current: dict[str, list[tuple[str, str]]] | None = None
    depth = 0
    for line in lines:
        if line == "BEGIN:VEVENT":
            current, depth = {}, 0
        elif line == "END:VEVENT" and current is not None:
            events.append(current)
            current = None
        elif current is not None:
            if line.startswith("BEGIN:"):
                depth += 1  # a VALARM inside: not the event's own properties
            elif line.startswith("END:"):
                depth -= 1
            elif depth == 0:
                head, _, value = line.partition(":")
                current.setdefault(head.split(";")[0].upper(), []).append((head, value))
    masters = [e for e in events if "RRULE" in e and "RECURRENCE-ID" not in e]
    if len(masters) != 1:
        raise ValueError("not one master VEVENT with an RRULE")
    master = masters[0]
    [(start_head, start_value)] = master["DTSTART"]
    first = _when(start_head, start_value)
    duration = dt.timedelta(0)
    if "DTEND" in master:
        [(end_head, end_value)] = master["DTEND"]
        duration = _when(end_head, end_value) - first
    zone = ZoneInfo(_tzid(start_head))
    local_first = first.astimezone(zone).replace(tzinfo=None)
    rule = rrulestr(master["RRULE"][0][1], dtstart=local_first, ignoretz=True)
    skipped = {
        _when(head, value)
        for head, values in master.get("EXDATE", [])
        for value in values.split(",")
    }
    moved: dict[dt.datetime, Occurrence | None] = {}
    for e in events:
        if "RECURRENCE-ID" not in e:
            continue
        [(rid_head, rid_value)] = e["RECURRENCE-ID"]
        rid = _when(rid_head, rid_value)
        if any(v.strip().upper() == "CANCELLED" for _, v in e.get("STATUS", [])):
            moved[rid] = None
            continue
        [(s_head, s_value)] = e["DTSTART"]
        start = _when(s_head, s_value)
        end = start + duration
        if "DTEND" in e:
            [(e_head, e_value)] = e["DTEND"]
            end = _when(e_head, e_value)
        moved[rid] = Occurrence(series_id, rid, start, end)
    found: list[Occurrence] = []
    for local in rule:
        rid = local.replace(tzinfo=zone).astimezone(dt.UTC)
        if rid > until:
            break
        if rid in skipped:
            continue
        occurrence = moved.pop(rid, Occurrence(series_id, rid, rid, rid + duration))
        if occurrence is not None and after < occurrence.start <= until:
            found.append(occurrence)
        if len(found) >= SERIES_LIMIT * 2:
            break
    found.extend(o for o in moved.values() if o is not None and after < o.start <= until)
    return found


def series_occurrences(
    ical: str,
    *,
    series_id: str,
    after: dt.datetime,
    horizon: dt.timedelta = SERIES_HORIZON,
    quick: bool = True,
) -> list[Occurrence]:
    """The occurrences of a series' VCALENDAR (rule, exceptions, moved ones) starting after
    `after`, within the horizon and at most SERIES_LIMIT (`quick`: the fast reader first)."""
    fast = None
    try:
        if quick:
            fast = _fast_series(ical, series_id, after, after + horizon)
    except (ValueError, KeyError, LookupError):
        fast = None
    if fast is not None:
        fast.sort(key=lambda o: o.start)
        return fast[:SERIES_LIMIT]
    calendar = icalendar.Calendar.from_ical(ical)
    found = []
    for component in recurring_ical_events.of(calendar).between(after, after + horizon):
        start = _utc(component.decoded("DTSTART"))
        end = _utc(component.decoded("DTEND")) if "DTEND" in component else start
        rid = component.get("RECURRENCE-ID")
        recurrence_id = _utc(rid.dt) if rid is not None else start
        if start > after:
            found.append(Occurrence(series_id, recurrence_id, start, end))
    found.sort(key=lambda o: o.start)
    return found[:SERIES_LIMIT]


def scheduled_occurrences(event: SessionScheduled, now: dt.datetime) -> list[Occurrence]:
    """What session.scheduled plans: one session, or the occurrences of a series."""
    if event.rrule and event.series_id:
        occurrences = series_occurrences(event.ical, series_id=event.series_id, after=now)
        if occurrences:
            return occurrences
        return [Occurrence(event.series_id, event.start, event.start, event.end)]
    return [Occurrence(event.session_id, None, event.start, event.end)]


def rescheduled_occurrence(event: SessionRescheduled) -> Occurrence:
    """The one session or occurrence session.rescheduled moved."""
    if event.series_id and event.recurrence_id is not None:
        return Occurrence(event.series_id, event.recurrence_id, event.start, event.end)
    return Occurrence(event.session_id, None, event.start, event.end)


def cancelled_prefixes(event: SessionCancelled) -> list[str]:
    """The timer key prefixes of what session.cancelled cancels (a whole series: all of it)."""
    if event.series_id:
        if not event.recurrence_ids:
            return [f"{event.series_id}|"]
        return [occurrence_prefix(event.series_id, rid) for rid in event.recurrence_ids]
    return [occurrence_prefix(event.session_id, None)]


def _row(
    program_id: str, key: str, due: dt.datetime, payload: dict[str, object]
) -> dict[str, object]:
    return {
        "program_id": program_id,
        "kind": REMINDER,
        "key": key,
        "due_at": due.astimezone(dt.UTC),
        "status": "pending",
        "payload": payload,
        "attempts": 0,
        "leased_until": None,
        "lease_token": None,
        "last_error": None,
        "finished_at": None,
    }


async def withdraw(session: AsyncSession, *, program_id: str, prefixes: Iterable[str]) -> None:
    """Removes the pending reminders whose keys start with these prefixes (now, not at commit)."""
    t = store.timers
    for prefix in prefixes:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        await session.execute(
            delete(t).where(
                t.c.program_id == program_id,
                t.c.kind == REMINDER,
                still_pending(t),
                t.c.key.like(f"{escaped}%", escape="\\"),
            )
        )


async def arm(
    session: AsyncSession,
    *,
    program_id: str,
    occurrences: Sequence[Occurrence],
    before: Sequence[dt.timedelta],
    now: dt.datetime,
    payload: dict[str, object],
    replace: bool = True,
    defer: Callable[[dict[str, object]], None] | None = None,
) -> int:
    """Arms (or moves) each occurrence's reminders that are still ahead, one item per
    occurrence; withdraws those that are not (a session moved to within the hour gets no 24 h
    reminder). Returns how many occurrences have one."""
    minutes = [int(offset.total_seconds() // 60) for offset in before]
    rows = []
    for occurrence in occurrences:
        first = next_reminder(occurrence.start, minutes, now)
        if first is None:
            continue
        due = occurrence.start - dt.timedelta(minutes=first[0])
        rows.append(
            _row(
                program_id,
                timer_key(occurrence),
                due,
                payload
                | {
                    "start": occurrence.start.isoformat(),
                    "end": occurrence.end.isoformat(),
                    "recurrence_id": occurrence.recurrence_id.isoformat()
                    if occurrence.recurrence_id
                    else None,
                    "minutes": first[0],
                    "later": first[1],
                },
            )
        )
    if replace:  # at once (not at the batch's commit), as is the arming below
        await withdraw(
            session,
            program_id=program_id,
            prefixes=[occurrence_prefix(o.base, o.recurrence_id) for o in occurrences],
        )
    if not rows:
        return 0
    if defer is not None:  # a new session: written with the batch, one statement for all
        for row in rows:
            defer(row)
    else:
        await write_upserts(session, [Upsert(store.timers, row) for row in rows])
    return len(rows)
