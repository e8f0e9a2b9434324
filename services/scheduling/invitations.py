"""RFC 5545/5546 invitations for sessions (iTIP REQUEST and CANCEL).

A single session is one VEVENT. A series is a master VEVENT with an RRULE in the organizer's zone
(EXDATE for occurrences that cannot happen) and one VEVENT per moved occurrence, with the same
UID and a RECURRENCE-ID naming the rule time it replaces. An update or cancellation of single
occurrences carries only those VEVENTs. Every VEVENT has a VALARM reminder.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from icalendar import Alarm, Calendar, Timezone, vCalAddress, vRecur, vText
from icalendar import Event as VEvent

PRODID = "-//Mentorship Platform//Scheduling//EN"


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


def _address(person: Person, **params: str) -> vCalAddress:
    address = vCalAddress(f"mailto:{person.email}")
    address.params["CN"] = vText(common_name(person.name))
    for key, value in params.items():
        address.params[key] = value
    return address


def common_name(name: str) -> str:
    """A display name as a CN parameter can carry it.

    Parameter values have no escape for a backslash (RFC 5545 3.2), and parsers (icalendar's
    among them) read one before the closing quote as escaping it: it becomes a slash.
    """
    return name.replace("\\", "/")


def _calendar(method: str) -> Calendar:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", method)
    return cal


def _vevent(
    invite: Invitation,
    *,
    status: str,
    start: dt.datetime,
    end: dt.datetime,
    recurrence_id: dt.datetime | None = None,
    master: bool = False,
) -> VEvent:
    zone = ZoneInfo(invite.anchor_timezone)
    event = VEvent()
    event.add("uid", invite.uid)
    if recurrence_id is not None:
        event.add("recurrence-id", recurrence_id.astimezone(zone))
    event.add("sequence", invite.sequence)
    event.add("dtstamp", invite.stamp.astimezone(dt.UTC))
    event.add("dtstart", start.astimezone(zone))
    event.add("dtend", end.astimezone(zone))
    if master and invite.rrule:
        event.add("rrule", vRecur.from_ical(invite.rrule))
        for skipped in invite.exdates:
            event.add("exdate", skipped.astimezone(zone))
    event.add("summary", invite.summary)
    event.add("description", invite.description)
    if invite.url:
        event.add("location", invite.url)
        event.add("url", invite.url)
    event.add("status", status)
    event.add("transp", "OPAQUE")
    event.add("organizer", _address(invite.organizer, ROLE="CHAIR"))
    for person in invite.attendees:
        event.add(
            "attendee",
            _address(
                person,
                ROLE=person.role,
                PARTSTAT="NEEDS-ACTION",
                RSVP="TRUE",
                CUTYPE="INDIVIDUAL",
            ),
        )
    if status != "CANCELLED":
        event.add_component(_alarm(invite))
    return event


def _alarm(invite: Invitation) -> Alarm:
    alarm = Alarm()
    alarm.add("action", "DISPLAY")
    alarm.add("description", invite.summary)
    alarm.add("trigger", dt.timedelta(minutes=-invite.alarm_minutes))
    return alarm


def _serialize(cal: Calendar, invite: Invitation) -> str:
    """The calendar as text, with the VTIMEZONE of its TZID before the first VEVENT."""
    text = bytes(cal.to_ical()).decode()
    at = text.index("BEGIN:VEVENT")
    zone = _vtimezone(invite.anchor_timezone, invite.start.year, invite.end.year)
    return text[:at] + zone + text[at:]


@functools.lru_cache(maxsize=256)
def _vtimezone(zone: str, first_year: int, last_year: int) -> str:
    # built from zoneinfo and serialized once per zone and years: it was most of the cost of
    # an invitation. It covers the session's years and one either side, for updates.
    first = dt.date(first_year - 1, 1, 1)
    last = dt.date(last_year + 1, 12, 31)
    timezone = Timezone.from_tzinfo(ZoneInfo(zone), tzid=zone, first_date=first, last_date=last)
    return bytes(timezone.to_ical()).decode()


def request(invite: Invitation) -> str:
    """A METHOD:REQUEST calendar for a new or changed session or series, with its VTIMEZONE."""
    cal = _calendar("REQUEST")
    cal.add_component(
        _vevent(invite, status="CONFIRMED", start=invite.start, end=invite.end, master=True)
    )
    for moved in invite.overrides:
        cal.add_component(_instance(invite, moved, status="CONFIRMED"))
    return _serialize(cal, invite)


def request_instances(invite: Invitation, instances: Sequence[Instance]) -> str:
    """A METHOD:REQUEST updating only some occurrences of a series (RECURRENCE-ID)."""
    cal = _calendar("REQUEST")
    for instance in instances:
        cal.add_component(_instance(invite, instance, status="CONFIRMED"))
    return _serialize(cal, invite)


def cancel(invite: Invitation, instances: Sequence[Instance] = ()) -> str:
    """A METHOD:CANCEL calendar: the whole session, or only the given occurrences of a series.

    SEQUENCE must be higher than in anything sent before for the UID.
    """
    cal = _calendar("CANCEL")
    if instances:
        for instance in instances:
            cal.add_component(_instance(invite, instance, status="CANCELLED"))
    else:
        cal.add_component(
            _vevent(invite, status="CANCELLED", start=invite.start, end=invite.end, master=True)
        )
    return _serialize(cal, invite)


def _instance(invite: Invitation, instance: Instance, *, status: str) -> VEvent:
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
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", name)
    for invite, status in entries:
        cal.add_component(
            _vevent(invite, status=status, start=invite.start, end=invite.end, master=True)
        )
        for moved in invite.overrides:
            cal.add_component(_instance(invite, moved, status="CONFIRMED"))
    text = bytes(cal.to_ical()).decode()
    if not entries:
        return text
    zones = "".join(
        _vtimezone(zone, min(i.start.year for i, _ in entries), max(i.end.year for i, _ in entries))
        for zone in sorted({i.anchor_timezone for i, _ in entries})
    )
    at = text.index("BEGIN:VEVENT")
    return text[:at] + zones + text[at:]
