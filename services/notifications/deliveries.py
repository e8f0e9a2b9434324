"""Which deliveries a notification makes: ids, idempotency keys, Message-IDs and kinds (pure)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from services.notifications import mime
from services.notifications.messages import InvitationMail, Mail, NoticeMail, Partner, Recipient
from services.notifications.mime import Mailbox
from shared.events import SessionCancelled, SessionRescheduled, SessionScheduled

SEND = "notifications.send"  # the timer kind of a delivery's send, keyed by delivery id

SessionChange = SessionScheduled | SessionRescheduled | SessionCancelled


@dataclass(frozen=True)
class Attendee:
    """Someone who hears about a session, as notifications knows them."""

    participant_id: str
    name: str
    email: str
    timezone: str
    role: str | None = None


@dataclass(frozen=True)
class PlannedDelivery:
    """One email to one recipient, before its MIME is built."""

    delivery_id: str
    idempotency_key: str
    recipient_id: str
    recipient_email: str
    kind: str
    source_event_id: str
    message_id: str
    mail: Mail
    not_before: dt.datetime | None = None  # program-wide mail: the recipient's own local hour


@dataclass(frozen=True)
class SessionContext:
    """What the session emails say beyond the event: program, coordinator, reasons, links."""

    sender: Mailbox
    program_name: str
    now: dt.datetime
    reply_to: Mailbox | None = None
    reasons: Sequence[str] = ()
    location: str | None = None
    replies_read: bool = False
    held_links: dict[str, str] | None = None  # participant id -> "we met" link


def idempotency_key(*, program_id: str, source_event_id: str, recipient_id: str) -> str:
    """One logical notification for one recipient, within one program."""
    return f"{program_id}/{source_event_id}/{recipient_id}"


def delivery_id(key: str) -> str:
    """The delivery's id, derived from its idempotency key (so from the program too)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, key))


def message_id(delivery: str, sender: Mailbox) -> str:
    """The Message-ID of a delivery: the same on every resend."""
    domain = sender.address.rpartition("@")[2] if "@" in sender.address else ""
    return f"<{delivery}@{domain or 'localhost'}>"


def sender_address(mail_from: str, display_name: str) -> Mailbox:
    """The From address of every email (a configuration error raises BadAddress at start)."""
    if "@" not in mail_from:
        return Mailbox(mime.one_line(display_name), mail_from)
    return mime.mailbox(display_name, mail_from)


def _change(event: SessionChange) -> tuple[str, str, str]:
    """(kind suffix, iTIP METHOD, how the text speaks of it)."""
    if isinstance(event, SessionCancelled):
        return "cancelled", "CANCEL", "CANCEL"
    if isinstance(event, SessionRescheduled):
        return "rescheduled", "REQUEST", "UPDATE"
    return event.kind.value, "REQUEST", "REQUEST"


def session_mails(
    event: SessionChange,
    attendees: Sequence[Attendee],
    *,
    context: SessionContext,
    start: dt.datetime,
    end: dt.datetime,
    session_kind: str,
) -> list[PlannedDelivery]:
    """One iMIP email per attendee, in the attendee's own zone, naming the others."""
    suffix, method, change = _change(event)
    planned = []
    for attendee in attendees:
        key = idempotency_key(
            program_id=event.program_id,
            source_event_id=str(event.event_id),
            recipient_id=attendee.participant_id,
        )
        delivery = delivery_id(key)
        mail_id = message_id(delivery, context.sender)
        others = [a for a in attendees if a is not attendee]
        links = {}
        if context.held_links and attendee.participant_id in context.held_links:
            links["held"] = context.held_links[attendee.participant_id]
        mail = InvitationMail(
            sender=context.sender,
            recipient=Recipient(attendee.name, attendee.email, attendee.timezone, attendee.role),
            other_names=[a.name for a in others],
            kind=session_kind,
            start=start,
            end=end,
            ical=event.ical,
            method=method,
            message_id=mail_id,
            sent_at=context.now,
            program_name=context.program_name,
            change=change,
            partners=[Partner(a.name, a.timezone, a.role) for a in others],
            reasons=list(context.reasons) if change == "REQUEST" else [],
            location=context.location,
            reply_to=context.reply_to,
            reason=getattr(event, "reason", None),
            previous_start=getattr(event, "previous_start", None),
            links=links,
            replies_read=context.replies_read,
        )
        planned.append(
            PlannedDelivery(
                delivery_id=delivery,
                idempotency_key=key,
                recipient_id=attendee.participant_id,
                recipient_email=attendee.email,
                kind=f"session.{suffix}",
                source_event_id=str(event.event_id),
                message_id=mail_id,
                mail=mail,
            )
        )
    return planned


def invitations(
    event: SessionScheduled,
    attendees: Sequence[Attendee],
    *,
    sender: Mailbox,
    program_name: str,
    now: dt.datetime,
) -> list[PlannedDelivery]:
    """One iMIP invitation per attendee for a newly scheduled session."""
    context = SessionContext(sender=sender, program_name=program_name, now=now)
    return session_mails(
        event,
        attendees,
        context=context,
        start=event.start,
        end=event.end,
        session_kind=event.kind.value,
    )


def logical_id(*parts: str) -> str:
    """A stable id for a notification that no single event names (a reminder, a ladder level)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(("notifications", *parts))))


def notice(
    *,
    program_id: str,
    source_id: str,
    recipient: Attendee,
    kind: str,
    template: str,
    subject: str,
    fields: dict[str, object],
    context: SessionContext,
    unsubscribe: str | None = None,
) -> PlannedDelivery:
    """One notice (no calendar object) to one recipient; source_id makes it one per logical
    notification (an event id, or a logical_id)."""
    key = idempotency_key(
        program_id=program_id, source_event_id=source_id, recipient_id=recipient.participant_id
    )
    delivery = delivery_id(key)
    mail_id = message_id(delivery, context.sender)
    mail = NoticeMail(
        sender=context.sender,
        recipient=Recipient(recipient.name, recipient.email, recipient.timezone, recipient.role),
        template=template,
        subject=subject,
        fields=fields,
        message_id=mail_id,
        sent_at=context.now,
        program_name=context.program_name,
        reply_to=context.reply_to,
        unsubscribe=unsubscribe,
    )
    return PlannedDelivery(
        delivery_id=delivery,
        idempotency_key=key,
        recipient_id=recipient.participant_id,
        recipient_email=recipient.email,
        kind=kind,
        source_event_id=source_id,
        message_id=mail_id,
        mail=mail,
    )
