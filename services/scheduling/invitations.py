"""RFC 5545/5546 invitations for sessions (iTIP REQUEST and CANCEL).

A single session is one VEVENT. A series is a master VEVENT with an RRULE in the organizer's zone
(EXDATE for occurrences that cannot happen) and one VEVENT per moved occurrence, with the same
UID and a RECURRENCE-ID naming the rule time it replaces. An update or cancellation of single
occurrences carries only those VEVENTs. Every VEVENT has a VALARM reminder.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from icalendar import Alarm, Calendar, vCalAddress, vRecur, vText
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
    address.params["CN"] = vText(person.name)
    for key, value in params.items():
        address.params[key] = value
    return address


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


def _add_timezone(cal: Calendar, invite: Invitation) -> None:
    # the VTIMEZONE only needs to cover the session (and a year either side for updates)
    first = invite.start.date().replace(month=1, day=1) - dt.timedelta(days=366)
    last = invite.end.date().replace(month=12, day=31) + dt.timedelta(days=366)
    cal.add_missing_timezones(first_date=first, last_date=last)


def request(invite: Invitation) -> str:
    """A METHOD:REQUEST calendar for a new or changed session or series, with its VTIMEZONE."""
    cal = _calendar("REQUEST")
    cal.add_component(
        _vevent(invite, status="CONFIRMED", start=invite.start, end=invite.end, master=True)
    )
    for moved in invite.overrides:
        cal.add_component(_instance(invite, moved, status="CONFIRMED"))
    _add_timezone(cal, invite)
    return bytes(cal.to_ical()).decode()


def request_instances(invite: Invitation, instances: Sequence[Instance]) -> str:
    """A METHOD:REQUEST updating only some occurrences of a series (RECURRENCE-ID)."""
    cal = _calendar("REQUEST")
    for instance in instances:
        cal.add_component(_instance(invite, instance, status="CONFIRMED"))
    _add_timezone(cal, invite)
    return bytes(cal.to_ical()).decode()


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
    _add_timezone(cal, invite)
    return bytes(cal.to_ical()).decode()


def _instance(invite: Invitation, instance: Instance, *, status: str) -> VEvent:
    return _vevent(
        invite,
        status=status,
        start=instance.start,
        end=instance.end,
        recurrence_id=instance.recurrence_id,
    )
