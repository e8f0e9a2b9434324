"""Invitation emails (iMIP): MIME structure, headers, escaping, local times."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.errors
from email import policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

import pytest

from services.notifications.messages import (
    InvitationMail,
    Recipient,
    when_local,
)
from services.notifications.messages import compose_invitation as compose_bytes
from services.notifications.mime import Mailbox

UTC = dt.UTC
ICAL = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nMETHOD:REQUEST\r\n"
    "BEGIN:VEVENT\r\nUID:s1@mentorship\r\nSEQUENCE:0\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


def mail(**changes) -> InvitationMail:
    base = InvitationMail(
        sender=Mailbox("Mentorship Program", "noreply@mentorship.example"),
        recipient=Recipient("Ana Lima", "ana@example.org", "America/New_York"),
        other_names=["Bob Smith"],
        kind="kickoff",
        start=dt.datetime(2026, 12, 8, 15, tzinfo=UTC),
        end=dt.datetime(2026, 12, 8, 16, tzinfo=UTC),
        ical=ICAL,
        method="REQUEST",
        message_id="<d1.kickoff@mentorship.example>",
        sent_at=dt.datetime(2026, 12, 1, 10, 30, tzinfo=UTC),
        program_name="Remote Mentorship 2027",
    )
    return dataclasses.replace(base, **changes)


def recipient(**changes) -> Recipient:
    return dataclasses.replace(mail().recipient, **changes)


def compose_invitation(mail: InvitationMail) -> EmailMessage:
    """The wire bytes, as the receiving side parses them."""
    return email.message_from_bytes(compose_bytes(mail), policy=policy.default)  # type: ignore[return-value]


def reparsed(msg: EmailMessage) -> EmailMessage:
    """The message as the receiving side sees it after one more trip."""
    return email.message_from_bytes(msg.as_bytes(), policy=policy.default)  # type: ignore[return-value]


def body_parts(msg: EmailMessage) -> dict[str, EmailMessage]:
    alternative = next(msg.iter_parts())
    return {part.get_content_type(): part for part in alternative.iter_parts()}


# --- when_local -----------------------------------------------------------------------------


def test_when_local_matches_the_documented_example():
    start = dt.datetime(2026, 12, 8, 9, tzinfo=UTC)
    text = when_local(start, start + dt.timedelta(hours=1), "Europe/Berlin")
    assert text == "Tuesday 8 December 2026, 10:00\u201311:00 CET"


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("America/New_York", "Tuesday 8 December 2026, 10:00\u201311:00 EST"),
        ("Asia/Kolkata", "Tuesday 8 December 2026, 20:30\u201321:30 IST"),
        ("Pacific/Auckland", "Wednesday 9 December 2026, 04:00\u201305:00 NZDT"),
        ("America/Los_Angeles", "Tuesday 8 December 2026, 07:00\u201308:00 PST"),
    ],
)
def test_when_local_shows_the_time_and_date_in_the_recipients_zone(zone, expected):
    start = dt.datetime(2026, 12, 8, 15, tzinfo=UTC)
    assert when_local(start, start + dt.timedelta(hours=1), zone) == expected


def test_when_local_uses_summer_time_abbreviation_in_summer():
    start = dt.datetime(2027, 7, 6, 13, tzinfo=UTC)
    assert when_local(start, start + dt.timedelta(minutes=45), "Europe/Berlin") == (
        "Tuesday 6 July 2027, 15:00\u201315:45 CEST"
    )


# --- structure ------------------------------------------------------------------------------


@pytest.mark.parametrize("transform", [lambda m: m, reparsed], ids=["built", "reparsed"])
def test_invitation_is_mixed_with_alternative_text_html_calendar_and_an_ics_attachment(transform):
    msg = transform(compose_invitation(mail()))
    assert msg.get_content_type() == "multipart/mixed"
    alternative, attachment = list(msg.iter_parts())
    assert alternative.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in alternative.iter_parts()] == [
        "text/plain",
        "text/html",
        "text/calendar",
    ]
    calendar = list(alternative.iter_parts())[2]
    assert calendar.get_param("method") == "REQUEST"
    assert "BEGIN:VCALENDAR" in calendar.get_content()
    assert attachment.is_attachment()
    assert attachment.get_filename() == "invite.ics"
    assert attachment.get_content() == ICAL.encode()


def test_calendar_part_method_follows_the_mail_method():
    msg = compose_invitation(mail(method="CANCEL", ical=ICAL.replace("REQUEST", "CANCEL")))
    assert body_parts(msg)["text/calendar"].get_param("method") == "CANCEL"


def test_calendar_part_carries_the_ical_text():
    msg = reparsed(compose_invitation(mail()))
    content = body_parts(msg)["text/calendar"].get_content()
    assert content.replace("\r\n", "\n") == ICAL.replace("\r\n", "\n")


# --- headers --------------------------------------------------------------------------------


def test_headers_identify_an_automatic_message():
    msg = reparsed(compose_invitation(mail()))
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Message-ID"] == "<d1.kickoff@mentorship.example>"
    assert parsedate_to_datetime(msg["Date"]) == dt.datetime(2026, 12, 1, 10, 30, tzinfo=UTC)
    assert msg["From"].addresses[0].addr_spec == "noreply@mentorship.example"
    (to,) = msg["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Ana Lima", "ana@example.org")
    assert msg["Subject"] == "Invitation: mentorship kickoff with Bob Smith, Tue 8 Dec 10:00 EST"


def test_date_header_is_the_send_instant_whatever_zone_it_was_given_in():
    sent = dt.datetime(2026, 12, 1, 11, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    msg = compose_invitation(mail(sent_at=sent))
    assert parsedate_to_datetime(msg["Date"]) == sent
    assert msg["Date"].endswith("+0000")


def test_subject_names_every_other_participant_and_the_kind():
    msg = compose_invitation(mail(kind="feedback_moment", other_names=["Bob", "Chen"]))
    assert msg["Subject"].startswith("Invitation: mentorship feedback moment with Bob and Chen, ")


# --- content --------------------------------------------------------------------------------


def test_text_and_html_show_the_time_in_the_recipients_zone():
    msg = compose_invitation(mail(recipient=recipient(timezone="Asia/Tokyo")))
    expected = "Wednesday 9 December 2026, 00:00\u201301:00 JST"  # 15:00 UTC
    parts = body_parts(msg)
    assert expected in parts["text/plain"].get_content()
    assert expected in parts["text/html"].get_content()
    assert "Asia/Tokyo" in parts["text/plain"].get_content()


def test_user_text_is_escaped_in_the_html_part():
    script = "<script>alert(1)</script>"
    msg = compose_invitation(
        mail(
            recipient=recipient(name=script),
            other_names=['Bob <b onmouseover="x()">'],
            program_name="R&D <Mentoring>",
        )
    )
    html = body_parts(msg)["text/html"].get_content()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b onmouseover" not in html
    assert "Bob &lt;b onmouseover=" in html
    assert "R&amp;D &lt;Mentoring&gt;" in html


def test_plain_text_part_keeps_user_text_as_written():
    msg = compose_invitation(mail(recipient=recipient(name="Ana & <Co>")))
    assert "Hello Ana & <Co>," in body_parts(msg)["text/plain"].get_content()


def test_kickoff_explains_its_purpose():
    msg = compose_invitation(mail())
    assert "getting to know each other" in body_parts(msg)["text/plain"].get_content()


def test_non_ascii_names_survive_transport():
    msg = reparsed(compose_invitation(mail(recipient=recipient(name="Zoë Ångström"))))
    assert msg["To"].addresses[0].display_name == "Zoë Ångström"
    assert "Hello Zoë Ångström," in body_parts(msg)["text/plain"].get_content()


# --- header injection -----------------------------------------------------------------------

INJECTIONS = [
    "Eve\r\nBcc: attacker@evil.example",
    "Eve\nBcc: attacker@evil.example",
    "Eve\rBcc: attacker@evil.example",
]


def assert_no_injected_header(build) -> None:
    """Composing either fails loudly or yields a message without the smuggled header."""
    try:
        msg = build()
        raw = msg.as_bytes()
    except (ValueError, email.errors.MessageError):  # HeaderWriteError on newer Pythons
        return
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed["To"] is not None and parsed["Subject"] is not None
    assert parsed["Bcc"] is None
    header_block = raw.split(b"\n\n", 1)[0]
    assert not any(line.lstrip().lower().startswith(b"bcc:") for line in header_block.splitlines())


@pytest.mark.parametrize("name", INJECTIONS)
def test_crlf_in_recipient_name_cannot_inject_headers(name):
    assert_no_injected_header(lambda: compose_invitation(mail(recipient=recipient(name=name))))


@pytest.mark.parametrize("name", INJECTIONS)
def test_crlf_in_other_names_cannot_inject_headers(name):
    assert_no_injected_header(lambda: compose_invitation(mail(other_names=[name])))


def test_injection_check_detects_a_smuggled_header():
    # guards the guard: a message that really carries the header is caught
    def smuggled() -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = "hello"
        msg["Bcc"] = "attacker@evil.example"
        return msg

    with pytest.raises(AssertionError):
        assert_no_injected_header(smuggled)


# --- hostile input, every kind of session mail ----------------------------------------------

HOSTILE = 'Eve <script>x()</script> "q" \r\nBcc: a@evil.example\u2028X-Evil: 1 \u202egnp.exe\u2066'


@pytest.mark.parametrize("change", ["REQUEST", "UPDATE", "CANCEL"])
def test_hostile_names_and_reasons_are_inert_in_every_session_mail(change):
    from services.notifications.messages import Partner

    raw = compose_bytes(
        mail(
            change=change,
            method="CANCEL" if change == "CANCEL" else "REQUEST",
            recipient=recipient(name=HOSTILE),
            other_names=[HOSTILE],
            partners=[Partner(HOSTILE, "Asia/Tokyo", "mentor")],
            reasons=[HOSTILE],
            reason=HOSTILE,
            location=HOSTILE,
            program_name=HOSTILE,
        )
    )
    head = raw.split(b"\r\n\r\n", 1)[0]
    names = [line.split(b":", 1)[0].lower() for line in head.split(b"\r\n") if line[:1] != b" "]
    assert b"bcc" not in names and b"x-evil" not in names
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    parts = body_parts(msg)
    html = parts["text/html"].get_content()
    text = parts["text/plain"].get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    for shown in (html, text, str(msg["Subject"]), str(msg["To"])):
        assert not any(c in shown for c in "\u2028\u202e\u2066"), shown
    assert "\r" not in str(msg["Subject"]) + str(msg["To"])
