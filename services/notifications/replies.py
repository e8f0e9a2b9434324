"""Calendar replies: a built-in SMTP receiver for the organizer's address reads iMIP REPLY
objects (RFC 6047) and emits session.responded per attendee (accepted, declined, tentative, with
the comment).

(An IMAP mailbox can be polled instead, or as well: services/notifications/imap.py.)
Point the organizer address's mail at it (an MX or a forwarding rule to
MENTORSHIP_REPLIES_SMTP_PORT). A reply counts only for an attendee of an entry this service
invited, and only when it comes From that attendee's address. A reply sent twice is one event:
its id is derived from the reply's Message-ID, the UID, the occurrence and the attendee.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any

import icalendar
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import func, select

from services.notifications import mime, store
from shared.events import SessionResponded
from shared.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    import contextlib

    from shared.service import Running

log = logging.getLogger("mentorship.notifications.replies")

PARTSTATS = {"ACCEPTED": "accepted", "DECLINED": "declined", "TENTATIVE": "tentative"}
MAX_MESSAGE_BYTES = 1_000_000


@dataclass(frozen=True)
class Reply:
    """One attendee's answer in an iMIP REPLY."""

    uid: str
    sequence: int
    recurrence_id: dt.datetime | None
    attendee: str  # the address, lower case, without mailto:
    response: str  # accepted, declined, tentative
    comment: str


def _address(value: Any) -> str:
    return str(value).strip().removeprefix("mailto:").removeprefix("MAILTO:").strip().lower()


def _utc(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)


def _calendars(message: EmailMessage) -> list[str]:
    found = []
    for part in message.walk():
        if part.get_content_type() in ("text/calendar", "application/ics"):
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                found.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
    return found


def parse_replies(raw: bytes) -> tuple[str, str, list[Reply]]:
    """(From address, Message-ID, the REPLY answers) of a mail; no answers when it is none."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    sender = parseaddr(str(message.get("From", "")))[1].strip().lower()
    message_id = str(message.get("Message-ID", "")).strip()
    replies: list[Reply] = []
    seen: set[str] = set()
    for text in _calendars(message):
        if text in seen:  # the text/calendar part and its .ics attachment are one object
            continue
        seen.add(text)
        try:
            calendar = icalendar.Calendar.from_ical(text)
        except ValueError:
            continue
        if str(calendar.get("METHOD", "")).upper() != "REPLY":
            continue
        for event in calendar.walk("VEVENT"):
            uid = str(event.get("UID", ""))
            rid = event.get("RECURRENCE-ID")
            attendees = event.get("ATTENDEE", [])
            if not isinstance(attendees, list):
                attendees = [attendees]
            for attendee in attendees:
                state = str(getattr(attendee, "params", {}).get("PARTSTAT", "")).upper()
                if not uid or state not in PARTSTATS:
                    continue
                replies.append(
                    Reply(
                        uid=uid,
                        sequence=int(event.get("SEQUENCE", 0) or 0),
                        recurrence_id=_utc(rid.dt) if rid is not None else None,
                        attendee=_address(attendee),
                        response=PARTSTATS[state],
                        comment=mime.paragraphs(str(event.get("COMMENT", "")), 2000),
                    )
                )
    return sender, message_id, replies


def _event_id(message_id: str, reply: Reply) -> uuid.UUID:
    rid = reply.recurrence_id.isoformat() if reply.recurrence_id else ""
    name = "/".join(("reply", message_id, reply.uid, rid, reply.attendee, reply.response))
    return uuid.uuid5(uuid.NAMESPACE_URL, name)


async def record_replies(raw: bytes, uow: UnitOfWork) -> int:
    """Emits session.responded for each answer this service can attribute; returns how many."""
    sender, message_id, replies = parse_replies(raw)
    emitted = 0
    for reply in replies:
        if reply.attendee != sender:
            log.warning("calendar reply for %s ignored: not sent from that address", reply.uid)
            continue
        entry = await uow.session.get(store.CalendarEntry, reply.uid)
        if entry is None:
            log.info("calendar reply for an unknown UID %r ignored", reply.uid[:100])
            continue
        participant = await uow.session.scalar(
            select(store.Contact.participant_id).where(
                store.Contact.program_id == entry.program_id,
                func.lower(store.Contact.email) == reply.attendee,
                store.Contact.participant_id.in_(list(entry.attendee_ids)),
            )
        )
        if participant is None:
            log.warning("calendar reply for %s from someone not invited, ignored", reply.uid)
            continue
        event_id = _event_id(message_id or reply.uid, reply)
        outbox = uow.tables.outbox
        if await uow.session.scalar(select(outbox.c.id).where(outbox.c.event_id == str(event_id))):
            continue  # the same reply again (the sender did not see our 250)
        uow.emit(
            SessionResponded(
                event_id=event_id,
                program_id=entry.program_id,
                occurred_at=uow.clock.now(),
                session_id=entry.session_id,
                pair_id=entry.pair_id,
                participant_id=participant,
                uid=reply.uid,
                sequence=reply.sequence,
                recurrence_id=reply.recurrence_id,
                response=reply.response,  # type: ignore[arg-type]
                comment=reply.comment,
            )
        )
        emitted += 1
    return emitted


class ReplyHandler:
    """aiosmtpd handler: mail for the organizer address only; each mail read in a transaction."""

    def __init__(
        self,
        organizer: str,
        unit_of_work: Callable[[], contextlib.AbstractAsyncContextManager[UnitOfWork]],
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._organizer = organizer.strip().lower()
        self._unit_of_work = unit_of_work
        self._on_commit = on_commit
        self.recorded = 0

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.strip().lower() != self._organizer:
            return "550 5.1.1 only the organizer's mailbox is read here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if len(raw) > MAX_MESSAGE_BYTES:
            return "552 5.3.4 message too big"
        try:
            async with self._unit_of_work() as uow:
                count = await record_replies(bytes(raw), uow)
        except Exception:  # the database away: the sending server tries again later
            log.warning("calendar reply not recorded yet (will be resent)", exc_info=True)
            return "451 4.3.0 try again later"
        self.recorded += count
        if count:
            self._on_commit()
        return "250 OK"


async def run_reply_receiver(running: Running) -> None:
    """Reads calendar replies: the SMTP receiver (MENTORSHIP_REPLIES_SMTP_PORT) and the IMAP
    poller (MENTORSHIP_REPLIES_IMAP_HOST), each when configured."""
    from services.notifications.imap import run_imap_poller  # imap builds on this module

    async with asyncio.TaskGroup() as group:
        group.create_task(run_smtp_receiver(running))
        group.create_task(run_imap_poller(running))


async def run_smtp_receiver(running: Running) -> None:
    """Listens for calendar replies when MENTORSHIP_REPLIES_SMTP_PORT is set."""
    s = running.settings
    port = s.replies_smtp_port
    if not port:
        await asyncio.Event().wait()  # not configured: nothing to do until the service stops
        return
    handler = ReplyHandler(s.mail_from, running.unit_of_work, on_commit=running.relay.wake)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="mentorship-replies", data_size_limit=MAX_MESSAGE_BYTES),
        host=s.http_host,
        port=port,
    )
    log.info("reading calendar replies on %s:%d", s.http_host, port)
    try:
        await asyncio.Event().wait()
    finally:
        server.close()
        await server.wait_closed()
