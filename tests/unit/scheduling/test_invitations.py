"""RFC 5545 / 5546 invitations: what calendar clients need to show and answer them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar import Calendar

from services.scheduling.invitations import (
    PRODID,
    Instance,
    Invitation,
    Person,
    cancel,
    fold,
    parameter,
    request,
    text,
)

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


# --- the writer: folding, escaping ------------------------------------------------------------


def test_a_line_of_75_octets_is_not_folded_and_one_of_76_is():
    assert fold("X:" + "a" * 73) == "X:" + "a" * 73 + "\r\n"
    assert fold("X:" + "a" * 74) == "X:" + "a" * 73 + "\r\n a\r\n"


def test_folding_never_splits_a_multi_byte_character():
    line = "X:" + "a" * 72 + "é" + "b"  # é would be octets 75 and 76
    first, second = fold(line).split("\r\n")[:2]
    assert first == "X:" + "a" * 72  # 74 octets: é moves to the next line whole
    assert second == " éb"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n")))
def test_folded_lines_unfold_to_the_line_and_fit_in_75_octets(value):
    folded = fold("DESCRIPTION:" + value)
    assert folded.endswith("\r\n")
    physical = folded[:-2].split("\r\n")
    assert all(len(p.encode()) <= 75 for p in physical)
    assert all(p.startswith(" ") for p in physical[1:])
    assert "".join([physical[0], *(p[1:] for p in physical[1:])]) == "DESCRIPTION:" + value


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("a,b;c\\d", "a\\,b\\;c\\\\d"),
        ("one\ntwo\r\nthree\rfour", "one\\ntwo\\nthree\\nfour"),
        ("tab\tkept, bell\x07 and nul\x00 dropped", "tab\tkept\\, bell and nul dropped"),
        ("Zoë: 日本", "Zoë: 日本"),
    ],
)
def test_text_values_are_escaped(value, written):
    assert text(value) == written


def test_parameter_values_are_quoted_with_caret_escapes():
    assert parameter('Ann "the" ^boss^\nB') == "\"Ann ^'the^' ^^boss^^^nB\""
    _, event = parse(request(invitation(attendees=[Person("a@example.org", 'Ann "x": y; z')])))
    assert attendees_of(event)[0].params["CN"] == 'Ann "x": y; z'


def test_a_hostile_address_or_url_cannot_start_a_new_property():
    text_ = request(
        invitation(
            attendees=[Person("a@example.org\r\nATTENDEE:mailto:evil@example.org", "A")],
            url="https://meet.example/x\r\nATTACH:https://evil.example",
        )
    )
    lines = unfolded_lines(text_)
    assert not any(line.startswith(("ATTACH", "ATTENDEE:")) for line in lines)
    _, event = parse(text_)
    assert len(attendees_of(event)) == 1


def test_a_series_with_moves_and_exdates_parses_in_both_parsers():
    import recurring_ical_events

    berlin = ZoneInfo("Europe/Berlin")
    first = dt.datetime(2027, 3, 22, 9, tzinfo=berlin)  # the week before Berlin's DST switch
    week = dt.timedelta(weeks=1)
    moved = Instance(
        first + week, first + week + dt.timedelta(hours=5), first + week + dt.timedelta(hours=6)
    )
    text_ = request(
        invitation(
            start=first,
            end=first + dt.timedelta(hours=1),
            rrule="FREQ=WEEKLY;INTERVAL=1;COUNT=4",
            exdates=[first + 2 * week],
            overrides=[moved],
        )
    )
    cal = Calendar.from_ical(text_)
    assert [e["SEQUENCE"] for e in cal.walk("VEVENT")] == [0, 0]
    starts = [
        e["DTSTART"].dt
        for e in recurring_ical_events.of(cal).between(first - week, first + 5 * week)
    ]
    # the wall clock of the rule holds across the switch (09:00 before and after), the moved
    # one is at 14:00, the excluded one is gone
    assert [(s.date().isoformat(), s.hour) for s in starts] == [
        ("2027-03-22", 9),
        ("2027-03-29", 14),
        ("2027-04-12", 9),
    ]


def _libical():
    """libical's GObject bindings (Debian: gir1.2-ical-3.0 and python3-gi), or a skip."""
    gi = pytest.importorskip("gi", reason="python gi (gir1.2-ical-3.0) is not installed")
    try:
        gi.require_version("ICalGLib", "3.0")
        from gi.repository import ICalGLib  # type: ignore[import-not-found]
    except (ImportError, ValueError) as exc:
        pytest.skip(f"libical's ICalGLib 3.0 typelib (gir1.2-ical-3.0) is not installed: {exc}")
    return ICalGLib


def test_libical_finds_no_itip_restriction_broken():
    ical = _libical()
    berlin = ZoneInfo("Europe/Berlin")
    first = dt.datetime(2027, 3, 22, 9, tzinfo=berlin)
    series = invitation(start=first, end=first + dt.timedelta(hours=1), rrule="FREQ=WEEKLY;COUNT=4")
    moved = Instance(first, first + dt.timedelta(hours=3), first + dt.timedelta(hours=4))
    for text_ in (request(series), cancel(invitation(sequence=2)), cancel(series, [moved])):
        component = ical.Component.new_from_string(text_)
        check = getattr(component, "check_restrictions", None)
        valid = check() if check else ical.restriction_check(component)
        errors = [line for line in component.as_ical_string().splitlines() if "X-LIC-ERROR" in line]
        assert valid and not errors, errors
