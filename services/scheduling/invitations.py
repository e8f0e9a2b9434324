"""RFC 5545/5546 invitations for sessions (iTIP REQUEST and CANCEL)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from icalendar import Calendar, vCalAddress, vText
from icalendar import Event as VEvent

PRODID = "-//Mentorship Platform//Scheduling//EN"


@dataclass(frozen=True)
class Person:
    email: str
    name: str


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


def _vevent(invite: Invitation, *, status: str) -> VEvent:
    zone = ZoneInfo(invite.anchor_timezone)
    event = VEvent()
    event.add("uid", invite.uid)
    event.add("sequence", invite.sequence)
    event.add("dtstamp", invite.stamp.astimezone(dt.UTC))
    event.add("dtstart", invite.start.astimezone(zone))
    event.add("dtend", invite.end.astimezone(zone))
    event.add("summary", invite.summary)
    event.add("description", invite.description)
    event.add("status", status)
    event.add("transp", "OPAQUE")
    event.add("organizer", _address(invite.organizer, ROLE="CHAIR"))
    for person in invite.attendees:
        event.add(
            "attendee",
            _address(
                person,
                ROLE="REQ-PARTICIPANT",
                PARTSTAT="NEEDS-ACTION",
                RSVP="TRUE",
                CUTYPE="INDIVIDUAL",
            ),
        )
    return event


def _add_timezone(cal: Calendar, invite: Invitation) -> None:
    # the VTIMEZONE only needs to cover the session (and a year either side for updates)
    first = invite.start.date().replace(month=1, day=1) - dt.timedelta(days=366)
    last = invite.end.date().replace(month=12, day=31) + dt.timedelta(days=366)
    cal.add_missing_timezones(first_date=first, last_date=last)


def request(invite: Invitation) -> str:
    """A METHOD:REQUEST calendar for a new or changed session, with its VTIMEZONE."""
    cal = _calendar("REQUEST")
    cal.add_component(_vevent(invite, status="CONFIRMED"))
    _add_timezone(cal, invite)
    return bytes(cal.to_ical()).decode()


def cancel(invite: Invitation) -> str:
    """A METHOD:CANCEL calendar for a cancelled session (SEQUENCE must be higher than before)."""
    cal = _calendar("CANCEL")
    cal.add_component(_vevent(invite, status="CANCELLED"))
    _add_timezone(cal, invite)
    return bytes(cal.to_ical()).decode()
