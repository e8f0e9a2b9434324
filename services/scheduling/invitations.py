"""RFC 5545/5546 invitations for sessions (iTIP REQUEST and CANCEL).

A single session is one VEVENT. A series is a master VEVENT with an RRULE in the organizer's zone
(EXDATE for occurrences that cannot happen) and one VEVENT per moved occurrence, with the same
UID and a RECURRENCE-ID naming the rule time it replaces. An update or cancellation of single
occurrences carries only those VEVENTs. Every VEVENT has a VALARM reminder.

The text is written directly (a content line per property, TEXT escaped, parameter values quoted
with RFC 6868's caret escapes, folded at 75 octets on UTF-8 boundaries, CRLF): building the same
object with `icalendar` cost 4 ms a calendar, most of a re-plan of a whole series. The VTIMEZONE
is still `icalendar`'s, from zoneinfo, serialized once per zone and years.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from icalendar import Timezone

PRODID = "-//Mentorship Platform//Scheduling//EN"
CRLF = "\r\n"
LIMIT = 75  # octets per physical line, CRLF excluded (RFC 5545 3.1)


@dataclass(frozen=True)
class Person:
    email: str
    name: str
    role: str = "REQ-PARTICIPANT"


@dataclass(frozen=True)
class Instance:
    """One occurrence of a series: the rule time it stands for, and when it happens."""

    recurrence_id: dt.datetime
    start: dt.datetime
    end: dt.datetime


@dataclass(frozen=True)
class Invitation:
    uid: str
    sequence: int
    start: dt.datetime
    end: dt.datetime
    anchor_timezone: str
    summary: str
    description: str
    organizer: Person
    attendees: Sequence[Person]
    stamp: dt.datetime
    rrule: str | None = None  # a series: start/end are its first rule occurrence
    exdates: Sequence[dt.datetime] = ()  # rule times that do not happen
    overrides: Sequence[Instance] = ()  # occurrences moved away from their rule time
    alarm_minutes: int = 15
    url: str | None = None  # the video call


# --- content lines ------------------------------------------------------------------------


def fold(line: str) -> str:
    """One content line as physical lines of at most 75 octets, never splitting a character.

    Continuation lines start with a space (RFC 5545 3.1), which counts towards their 75.
    """
    data = line.encode()
    if len(data) <= LIMIT:
        return line + CRLF
    parts, at, room = [], 0, LIMIT
    while len(data) - at > room:
        cut = at + room
        while data[cut] & 0xC0 == 0x80:  # inside a multi-byte character: cut before it
            cut -= 1
        parts.append(data[at:cut].decode())
        at, room = cut, LIMIT - 1
    parts.append(data[at:].decode())
    return (CRLF + " ").join(parts) + CRLF


_NEWLINES = re.compile(r"\r\n|\r|\n")
_TEXT = str.maketrans({"\\": "\\\\", ";": "\\;", ",": "\\,", "\n": "\\n"})
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # not allowed in any value (3.1), TAB is


def text(value: str) -> str:
    """A TEXT value (RFC 5545 3.3.11): backslash, semicolon, comma and line breaks escaped."""
    return _CONTROL.sub("", _NEWLINES.sub("\n", value).translate(_TEXT))


def parameter(value: str) -> str:
    """A quoted parameter value; caret, line break and double quote as RFC 6868 escapes."""
    value = _NEWLINES.sub("\n", value).replace("^", "^^").replace("\n", "^n").replace('"', "^'")
    return '"' + _CONTROL.sub("", value) + '"'


def common_name(name: str) -> str:
    """A display name as a CN parameter can carry it.

    Parameter values have no escape for a backslash (RFC 5545 3.2), and parsers (icalendar's
    among them) read one before the closing quote as escaping it: it becomes a slash.
    """
    return name.replace("\\", "/")


def _raw(value: str) -> str:
    """A value that is not TEXT (an address, a URI, a rule): no line breaks or controls."""
    return _CONTROL.sub("", value)


def _local(moment: dt.datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y%m%dT%H%M%S")


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def _address(name: str, person: Person, params: str) -> str:
    cn = parameter(common_name(person.name))
    return fold(f"{name};CN={cn}{params}:mailto:{_raw(person.email)}")


# --- components ---------------------------------------------------------------------------


def _header(method: str | None, *extra: str) -> list[str]:
    lines = ["BEGIN:VCALENDAR" + CRLF, fold("PRODID:" + text(PRODID)), "VERSION:2.0" + CRLF]
    lines.append("CALSCALE:GREGORIAN" + CRLF)
    if method is not None:
        lines.append(f"METHOD:{method}{CRLF}")
    lines.extend(extra)
    return lines


def _vevent(
    invite: Invitation,
    *,
    status: str,
    start: dt.datetime,
    end: dt.datetime,
    recurrence_id: dt.datetime | None = None,
    master: bool = False,
) -> str:
    zone = ZoneInfo(invite.anchor_timezone)
    tzid = f";TZID={_raw(invite.anchor_timezone)}:"
    lines = ["BEGIN:VEVENT" + CRLF, fold("UID:" + text(invite.uid))]
    if recurrence_id is not None:
        lines.append(f"RECURRENCE-ID{tzid}{_local(recurrence_id, zone)}{CRLF}")
    lines.append(f"SEQUENCE:{int(invite.sequence)}{CRLF}")
    lines.append(f"DTSTAMP:{_utc(invite.stamp)}{CRLF}")
    lines.append(f"DTSTART{tzid}{_local(start, zone)}{CRLF}")
    lines.append(f"DTEND{tzid}{_local(end, zone)}{CRLF}")
    if master and invite.rrule:
        lines.append(fold("RRULE:" + _raw(invite.rrule)))
        lines.extend(f"EXDATE{tzid}{_local(skipped, zone)}{CRLF}" for skipped in invite.exdates)
    summary = fold("SUMMARY:" + text(invite.summary))
    lines += [summary, fold("DESCRIPTION:" + text(invite.description))]
    if invite.url:
        lines += [fold("LOCATION:" + text(invite.url)), fold("URL:" + _raw(invite.url))]
    lines += [f"STATUS:{status}{CRLF}", "TRANSP:OPAQUE" + CRLF]
    lines.append(_address("ORGANIZER", invite.organizer, ";ROLE=CHAIR"))
    for person in invite.attendees:
        params = f";ROLE={_raw(person.role)};PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CUTYPE=INDIVIDUAL"
        lines.append(_address("ATTENDEE", person, params))
    if status != "CANCELLED":
        lines += ["BEGIN:VALARM" + CRLF, "ACTION:DISPLAY" + CRLF]
        lines.append(fold("DESCRIPTION:" + text(invite.summary)))
        lines += [f"TRIGGER:-PT{int(invite.alarm_minutes)}M{CRLF}", "END:VALARM" + CRLF]
    lines.append("END:VEVENT" + CRLF)
    return "".join(lines)


def _calendar(method: str | None, events: Iterable[str], zones: Sequence[str], *extra: str) -> str:
    """The VCALENDAR: its header, the VTIMEZONEs of its TZIDs, then the events."""
    return "".join([*_header(method, *extra), *zones, *events, "END:VCALENDAR" + CRLF])


@functools.lru_cache(maxsize=256)
def _vtimezone(zone: str, first_year: int, last_year: int) -> str:
    # built from zoneinfo and serialized once per zone and years. It covers the session's
    # years and one either side, for updates.
    first = dt.date(first_year - 1, 1, 1)
    last = dt.date(last_year + 1, 12, 31)
    timezone = Timezone.from_tzinfo(ZoneInfo(zone), tzid=zone, first_date=first, last_date=last)
    return bytes(timezone.to_ical()).decode()


def _zone_of(invite: Invitation) -> list[str]:
    return [_vtimezone(invite.anchor_timezone, invite.start.year, invite.end.year)]


def request(invite: Invitation) -> str:
    """A METHOD:REQUEST calendar for a new or changed session or series, with its VTIMEZONE."""
    master = _vevent(invite, status="CONFIRMED", start=invite.start, end=invite.end, master=True)
    moved = [_instance(invite, o, status="CONFIRMED") for o in invite.overrides]
    return _calendar("REQUEST", [master, *moved], _zone_of(invite))


def request_instances(invite: Invitation, instances: Sequence[Instance]) -> str:
    """A METHOD:REQUEST updating only some occurrences of a series (RECURRENCE-ID)."""
    events = [_instance(invite, o, status="CONFIRMED") for o in instances]
    return _calendar("REQUEST", events, _zone_of(invite))


def cancel(invite: Invitation, instances: Sequence[Instance] = ()) -> str:
    """A METHOD:CANCEL calendar: the whole session, or only the given occurrences of a series.

    SEQUENCE must be higher than in anything sent before for the UID.
    """
    if instances:
        events = [_instance(invite, o, status="CANCELLED") for o in instances]
    else:
        start, end = invite.start, invite.end
        events = [_vevent(invite, status="CANCELLED", start=start, end=end, master=True)]
    return _calendar("CANCEL", events, _zone_of(invite))


def _instance(invite: Invitation, instance: Instance, *, status: str) -> str:
    return _vevent(
        invite,
        status=status,
        start=instance.start,
        end=instance.end,
        recurrence_id=instance.recurrence_id,
    )


def feed(name: str, entries: Sequence[tuple[Invitation, str]]) -> str:
    """A subscribable calendar (no METHOD) of whole meetings, each with its status.

    Calendar apps poll it: moves (overrides) and cancellations (EXDATE, or STATUS:CANCELLED
    for a single session) appear without anyone answering an invitation.
    """
    events: list[str] = []
    for invite, status in entries:
        start, end = invite.start, invite.end
        events.append(_vevent(invite, status=status, start=start, end=end, master=True))
        events.extend(_instance(invite, o, status="CONFIRMED") for o in invite.overrides)
    zones = []
    if entries:
        first = min(i.start.year for i, _ in entries)
        last = max(i.end.year for i, _ in entries)
        zones = [
            _vtimezone(z, first, last) for z in sorted({i.anchor_timezone for i, _ in entries})
        ]
    return _calendar(None, events, zones, fold("X-WR-CALNAME:" + text(name)))
