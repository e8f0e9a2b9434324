"""RFC 5545 / 5546 invitations: what calendar clients need to show and answer them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar import Calendar

from services.scheduling.invitations import PRODID, Invitation, Person, cancel, request

UTC = dt.UTC


def invitation(**changes) -> Invitation:
    base = Invitation(
        uid="5a1c@mentorship",
        sequence=0,
        start=dt.datetime(2027, 3, 29, 13, tzinfo=UTC),
        end=dt.datetime(2027, 3, 29, 14, tzinfo=UTC),
        anchor_timezone="Europe/Berlin",
        summary="Mentorship kickoff: Zoë Ångström & Bob",
        description="Your first mentorship session: get to know each other.",
        organizer=Person("noreply@mentorship.example", "Mentorship Program"),
        attendees=[
            Person("zoe@example.org", "Zoë Ångström"),
            Person("bob@example.org", "Bob Smith, Jr."),
        ],
        stamp=dt.datetime(2027, 3, 20, 10, 15, tzinfo=dt.timezone(dt.timedelta(hours=1))),
    )
    return dataclasses.replace(base, **changes)


def parse(text: str):
    cal = Calendar.from_ical(text)
    (event,) = cal.walk("VEVENT")
    return cal, event


def unfolded_lines(text: str) -> list[str]:
    return text.replace("\r\n ", "").split("\r\n")


def attendees_of(event) -> list:
    found = event.get("ATTENDEE")
    return found if isinstance(found, list) else [found]


# --- request --------------------------------------------------------------------------------


def test_request_is_an_itip_request_calendar():
    cal, _ = parse(request(invitation()))
    assert cal["METHOD"] == "REQUEST"
    assert cal["VERSION"] == "2.0"
    assert cal["PRODID"] == PRODID
    assert len(cal.walk("VEVENT")) == 1


def test_request_event_carries_uid_sequence_and_status():
    _, event = parse(request(invitation(sequence=3)))
    assert event["UID"] == "5a1c@mentorship"
    assert event["SEQUENCE"] == 3
    assert event["STATUS"] == "CONFIRMED"
    assert event["SUMMARY"] == "Mentorship kickoff: Zoë Ångström & Bob"


def test_dtstamp_is_written_in_utc():
    text = request(invitation())
    _, event = parse(text)
    assert event["DTSTAMP"].dt == dt.datetime(2027, 3, 20, 9, 15, tzinfo=UTC)
    assert event["DTSTAMP"].dt.utcoffset() == dt.timedelta(0)
    assert "DTSTAMP:20270320T091500Z" in unfolded_lines(text)


@pytest.mark.parametrize(
    ("zone", "start", "local"),
    [
        ("Europe/Berlin", dt.datetime(2027, 3, 29, 13, tzinfo=UTC), "20270329T150000"),  # CEST
        ("Europe/Berlin", dt.datetime(2027, 3, 26, 13, tzinfo=UTC), "20270326T140000"),  # CET
        ("America/New_York", dt.datetime(2027, 3, 15, 13, tzinfo=UTC), "20270315T090000"),  # EDT
        ("Asia/Kolkata", dt.datetime(2027, 1, 4, 4, tzinfo=UTC), "20270104T093000"),
    ],
)
def test_dtstart_is_local_time_in_the_anchor_zone_and_converts_back(zone, start, local):
    text = request(invitation(anchor_timezone=zone, start=start, end=start + dt.timedelta(hours=1)))
    assert f"DTSTART;TZID={zone}:{local}" in unfolded_lines(text)
    _, event = parse(text)
    assert event["DTSTART"].params["TZID"] == zone
    assert event["DTSTART"].dt.astimezone(UTC) == start
    assert event["DTEND"].dt.astimezone(UTC) == start + dt.timedelta(hours=1)


def test_request_contains_a_vtimezone_matching_the_anchor_zone():
    text = request(invitation())
    cal, event = parse(text)
    (vtimezone,) = cal.walk("VTIMEZONE")
    assert vtimezone["TZID"] == "Europe/Berlin"
    # the VTIMEZONE alone (not the client's own zone database) maps the local DTSTART back to
    # the right instant, on both sides of the DST switch it covers
    tz = vtimezone.to_tz()
    naive_start = event["DTSTART"].dt.replace(tzinfo=None)
    assert naive_start.replace(tzinfo=tz).astimezone(UTC) == invitation().start
    winter = dt.datetime(2027, 1, 15, 12).replace(tzinfo=tz)
    assert winter.utcoffset() == dt.timedelta(hours=1)
    summer = dt.datetime(2027, 7, 15, 12).replace(tzinfo=tz)
    assert summer.utcoffset() == dt.timedelta(hours=2)


def test_vtimezone_is_declared_before_the_event_that_uses_it():
    lines = unfolded_lines(request(invitation()))
    assert lines.index("BEGIN:VTIMEZONE") < lines.index("BEGIN:VEVENT")


def test_organizer_is_a_mailto_address_with_a_name():
    _, event = parse(request(invitation()))
    organizer = event["ORGANIZER"]
    assert str(organizer) == "mailto:noreply@mentorship.example"
    assert organizer.params["CN"] == "Mentorship Program"


def test_attendees_are_mailto_addresses_asked_to_respond():
    _, event = parse(request(invitation()))
    attendees = attendees_of(event)
    assert [str(a) for a in attendees] == ["mailto:zoe@example.org", "mailto:bob@example.org"]
    assert [a.params["CN"] for a in attendees] == ["Zoë Ångström", "Bob Smith, Jr."]
    for attendee in attendees:
        assert attendee.params["PARTSTAT"] == "NEEDS-ACTION"
        assert attendee.params["RSVP"] == "TRUE"
        assert attendee.params["ROLE"] == "REQ-PARTICIPANT"


def test_every_line_ends_with_crlf():
    text = request(invitation())
    assert text.endswith("\r\n")
    assert "\n" not in text.replace("\r\n", "")
    assert "\r" not in text.replace("\r\n", "")


def test_no_line_exceeds_75_octets_even_with_long_non_ascii_text():
    long_text = "Zoë Ångström und Jürgen Groß besprechen Ziele — 日本語のテキスト " * 8
    text = request(invitation(summary=long_text, description=long_text))
    for line in text.split("\r\n"):
        assert len(line.encode("utf-8")) <= 75, line
    _, event = parse(text)
    assert event["SUMMARY"] == long_text
    assert event["DESCRIPTION"] == long_text


texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.just("\n"),
    min_size=1,
    max_size=300,
)


@settings(max_examples=50, deadline=None)
@given(summary=texts, description=texts, name=texts)
def test_any_text_survives_folding_and_escaping(summary, description, name):
    text = request(
        invitation(
            summary=summary, description=description, attendees=[Person("zoe@example.org", name)]
        )
    )
    assert all(len(line.encode("utf-8")) <= 75 for line in text.split("\r\n"))
    assert "\n" not in text.replace("\r\n", "")
    cal, event = parse(text)
    assert len(cal.walk("VEVENT")) == 1
    assert event["SUMMARY"] == summary
    assert event["DESCRIPTION"] == description
    (attendee,) = attendees_of(event)
    assert attendee.params["CN"] == name.replace("\\", "/")  # see common_name
    assert str(attendee) == "mailto:zoe@example.org"


def test_the_same_invitation_gives_the_same_calendar():
    assert request(invitation()) == request(invitation())


# --- cancel ---------------------------------------------------------------------------------


def test_cancel_is_an_itip_cancel_with_a_cancelled_event():
    text = cancel(invitation(sequence=1))
    cal, event = parse(text)
    assert cal["METHOD"] == "CANCEL"
    assert event["STATUS"] == "CANCELLED"
    assert event["UID"] == "5a1c@mentorship"
    assert event["SEQUENCE"] == 1
    assert "METHOD:REQUEST" not in text


def test_cancel_keeps_the_attendees_and_the_timezone():
    cal, event = parse(cancel(invitation(sequence=1)))
    assert [str(a) for a in attendees_of(event)] == [
        "mailto:zoe@example.org",
        "mailto:bob@example.org",
    ]
    assert cal.walk("VTIMEZONE")[0]["TZID"] == "Europe/Berlin"
    assert event["DTSTART"].dt.astimezone(UTC) == invitation().start


def test_cancel_lines_are_crlf_and_folded():
    text = cancel(invitation(summary="x" * 500))
    assert "\n" not in text.replace("\r\n", "")
    assert max(len(line.encode()) for line in text.split("\r\n")) <= 75
    assert re.search(r"^STATUS:CANCELLED$", text.replace("\r\n", "\n"), re.MULTILINE)
