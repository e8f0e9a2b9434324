"""Calendar replies through the built-in SMTP receiver (a real aiosmtpd server, real aiosmtplib
client, real SQLite): iMIP REPLY objects become session.responded per attendee, once."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP
from sqlalchemy import select

from cli.launcher import free_port
from services.notifications import store
from services.notifications.handlers import on_participant_registered, on_session_scheduled
from services.notifications.replies import ReplyHandler, parse_replies
from shared.events import ParticipantRegistered, SessionScheduled
from tests.support.factories import envelope, registration
from tests.support.handlers import HandlerDb, handler_db

ORGANIZER = "team@mentoring.example"
REQUEST = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nMETHOD:REQUEST\r\n"
    "BEGIN:VEVENT\r\nUID:s1@mentorship\r\nSEQUENCE:0\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


def reply_ical(partstat: str, *, who: str = "e@example.org", comment: str = "") -> str:
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Some Client//EN",
        "METHOD:REPLY",
        "BEGIN:VEVENT",
        "UID:s1@mentorship",
        "SEQUENCE:0",
        "DTSTAMP:20270301T100000Z",
        f"ATTENDEE;PARTSTAT={partstat};CN=Eli:mailto:{who}",
        "ORGANIZER:mailto:" + ORGANIZER,
    ]
    if comment:
        lines.append(f"COMMENT:{comment}")
    lines += ["END:VEVENT", "END:VCALENDAR", ""]
    return "\r\n".join(lines)


def reply_mail(
    ical: str, *, sender: str = "e@example.org", message_id: str = "<r1@client>"
) -> bytes:
    return (
        f"From: Eli <{sender}>\r\nTo: {ORGANIZER}\r\nSubject: Declined: kickoff\r\n"
        f"Message-ID: {message_id}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n"
        '--b\r\nContent-Type: text/calendar; method=REPLY; charset="utf-8"\r\n\r\n'
        f"{ical}\r\n"
        '--b\r\nContent-Type: application/ics; name="invite.ics"\r\n\r\n'
        f"{ical}\r\n--b--\r\n"
    ).encode()


def _scheduled() -> dict[str, Any]:
    return envelope(
        "p1",
        session_id="s1",
        pair_id="pair-1",
        kind="kickoff",
        start="2027-03-03T15:00:00+00:00",
        end="2027-03-03T16:00:00+00:00",
        anchor_timezone="Europe/Berlin",
        attendee_ids=["m", "e"],
        uid="s1@mentorship",
        sequence=0,
        ical=REQUEST,
    )


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[HandlerDb]:
    async with handler_db(
        store.Base.metadata,
        store.delivery_tables,
        tmp_path,
        source="notifications",
        mail_from=ORGANIZER,
    ) as db:
        for pid, role in (("m", "mentor"), ("e", "mentee")):
            body = registration("p1", pid, role=role)
            await db.apply(on_participant_registered, ParticipantRegistered.model_validate(body))
        event = _scheduled()
        await db.apply(on_session_scheduled, SessionScheduled.model_validate(event))
        yield db


@pytest.fixture
async def receiver(db: HandlerDb) -> AsyncIterator[tuple[int, ReplyHandler]]:
    handler = ReplyHandler(ORGANIZER, db.unit_of_work)
    port = free_port()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(handler, hostname="test"), host="127.0.0.1", port=port
    )
    try:
        yield port, handler
    finally:
        server.close()
        await server.wait_closed()


async def responded(db: HandlerDb) -> list[dict[str, Any]]:
    outbox = db.tables.outbox
    async with db.sessions() as session:
        rows = await session.execute(
            select(outbox.c.event_id, outbox.c.payload).where(
                outbox.c.subject == "mentorship.session.responded"
            )
        )
        return [json.loads(r.payload) for r in rows]


async def send(port: int, raw: bytes, *, to: str = ORGANIZER, sender: str = "e@example.org") -> Any:
    return await aiosmtplib.send(
        raw, sender=sender, recipients=[to], hostname="127.0.0.1", port=port
    )


async def test_a_decline_with_a_comment_becomes_session_responded_for_that_attendee(db, receiver):
    port, _ = receiver
    await send(port, reply_mail(reply_ical("DECLINED", comment="Ill that day\\, sorry")))
    [event] = await responded(db)
    assert {k: event[k] for k in ("program_id", "session_id", "pair_id", "participant_id")} == {
        "program_id": "p1",
        "session_id": "s1",
        "pair_id": "pair-1",
        "participant_id": "e",
    }
    assert (event["response"], event["comment"], event["uid"]) == (
        "declined",
        "Ill that day, sorry",
        "s1@mentorship",
    )


async def test_the_same_reply_twice_is_one_event_and_a_new_answer_is_another(db, receiver):
    port, _ = receiver
    await send(port, reply_mail(reply_ical("ACCEPTED")))
    await send(port, reply_mail(reply_ical("ACCEPTED")))  # resent: its 250 was lost
    await send(port, reply_mail(reply_ical("TENTATIVE"), message_id="<r2@client>"))
    assert [e["response"] for e in await responded(db)] == ["accepted", "tentative"]


async def test_replies_not_attributable_to_an_invited_attendee_are_ignored(db, receiver):
    port, _ = receiver
    # someone answering for Eli, from another address
    await send(port, reply_mail(reply_ical("DECLINED"), sender="mallory@evil.example"))
    # an address that was not invited
    await send(
        port,
        reply_mail(reply_ical("DECLINED", who="x@example.org"), sender="x@example.org"),
        sender="x@example.org",
    )
    # not a REPLY
    await send(port, reply_mail(reply_ical("DECLINED").replace("METHOD:REPLY", "METHOD:REQUEST")))
    assert await responded(db) == []


async def test_only_the_organizer_mailbox_is_accepted(db, receiver):
    port, _ = receiver
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await send(port, reply_mail(reply_ical("DECLINED")), to="someone@mentoring.example")


def test_the_calendar_part_and_its_attachment_are_one_answer():
    sender, message_id, replies = parse_replies(reply_mail(reply_ical("ACCEPTED")))
    assert (sender, message_id) == ("e@example.org", "<r1@client>")
    assert [(r.attendee, r.response) for r in replies] == [("e@example.org", "accepted")]


async def _invitation_text(db: HandlerDb) -> str:
    async with db.sessions() as session:
        row = await session.scalar(
            select(store.Delivery).where(store.Delivery.kind == "session.kickoff").limit(1)
        )
    assert row is not None
    message = email.message_from_bytes(row.message, policy=email.policy.default)
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


async def test_invitations_claim_answers_reach_the_program_only_when_replies_are_read(tmp_path):
    for port, claimed in ((None, False), (2526, True)):
        async with handler_db(
            store.Base.metadata,
            store.delivery_tables,
            tmp_path / str(port),
            source="notifications",
            mail_from=ORGANIZER,
            replies_smtp_port=port,
        ) as db:
            for pid, role in (("m", "mentor"), ("e", "mentee")):
                body = registration("p1", pid, role=role)
                await db.apply(
                    on_participant_registered, ParticipantRegistered.model_validate(body)
                )
            await db.apply(on_session_scheduled, SessionScheduled.model_validate(_scheduled()))
            text = " ".join((await _invitation_text(db)).split())
            assert ("reaches the program" in text) is claimed
