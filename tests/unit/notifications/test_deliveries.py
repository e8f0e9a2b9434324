"""Which deliveries an invitation makes: ids, keys and Message-IDs, scoped to the program."""

from __future__ import annotations

import datetime as dt
import uuid

from services.notifications.deliveries import (
    Attendee,
    delivery_id,
    idempotency_key,
    invitations,
    message_id,
    sender_address,
)
from tests.unit.notifications.test_handlers import scheduled

SENDER = sender_address("team@mentoring.example", "Mentoring Team")
NOW = dt.datetime(2027, 3, 1, 8, tzinfo=dt.UTC)
PEOPLE = [
    Attendee("m", "Mia Mentor", "mia@example.org", "Europe/Berlin"),
    Attendee("e", "Eli Mentee", "eli@example.org", "Asia/Tokyo"),
]


def test_the_idempotency_key_names_program_event_and_recipient():
    key = idempotency_key(program_id="prog", source_event_id="ev-1", recipient_id="e")
    assert key == "prog/ev-1/e"


def test_one_event_and_recipient_in_two_programs_make_two_delivery_ids():
    same = {"source_event_id": "ev-1", "recipient_id": "e"}
    a = delivery_id(idempotency_key(program_id="prog-a", **same))
    b = delivery_id(idempotency_key(program_id="prog-b", **same))
    assert a != b
    assert uuid.UUID(a) and uuid.UUID(b)


def test_the_delivery_id_and_message_id_are_the_same_every_time_they_are_derived():
    key = idempotency_key(program_id="prog", source_event_id="ev-1", recipient_id="e")
    assert delivery_id(key) == delivery_id(key)
    assert message_id(delivery_id(key), SENDER) == f"<{delivery_id(key)}@mentoring.example>"


def test_a_sender_without_a_domain_gets_message_ids_at_localhost():
    assert message_id("d-1", sender_address("mentorship", "X")) == "<d-1@localhost>"


def test_an_invitation_goes_to_each_attendee_in_their_zone_naming_the_others():
    event = scheduled("prog", "m", "e")
    planned = invitations(event, PEOPLE, sender=SENDER, program_name="Team", now=NOW)
    assert [(p.recipient_id, p.recipient_email) for p in planned] == [
        ("m", "mia@example.org"),
        ("e", "eli@example.org"),
    ]
    assert [p.mail.recipient.timezone for p in planned] == ["Europe/Berlin", "Asia/Tokyo"]
    assert [list(p.mail.other_names) for p in planned] == [["Eli Mentee"], ["Mia Mentor"]]
    assert {p.kind for p in planned} == {"session.kickoff"}
    for p in planned:
        assert p.idempotency_key == f"prog/{event.event_id}/{p.recipient_id}"
        assert p.delivery_id == delivery_id(p.idempotency_key)
        assert p.mail.message_id == p.message_id == message_id(p.delivery_id, SENDER)
        assert (p.mail.sent_at, p.mail.method) == (NOW, "REQUEST")
