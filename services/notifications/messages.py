"""Composing emails: iMIP invitations (RFC 6047) with text, HTML and calendar parts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

_templates = Environment(
    loader=PackageLoader("services.notifications", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)

PURPOSES = {
    "kickoff": (
        "This first session is for getting to know each other: share what you hope to get out "
        "of the program and agree how and how often you will meet."
    ),
}


@dataclass(frozen=True)
class Recipient:
    """Whom one email is for, and the zone its times are shown in."""

    name: str
    email: str
    timezone: str


@dataclass(frozen=True)
class InvitationMail:
    """Everything one invitation email says, for one recipient."""

    sender: Address
    recipient: Recipient
    other_names: Sequence[str]
    kind: str
    start: dt.datetime
    end: dt.datetime
    ical: str
    method: str
    message_id: str
    sent_at: dt.datetime
    program_name: str


def when_local(start: dt.datetime, end: dt.datetime, timezone: str) -> str:
    """e.g. 'Tuesday 8 December 2026, 10:00-11:00 CET' in the recipient's zone."""
    zone = ZoneInfo(timezone)
    s, e = start.astimezone(zone), end.astimezone(zone)
    day = f"{s:%A} {s.day} {s:%B %Y}"
    return f"{day}, {s:%H:%M}\u2013{e:%H:%M} {s.tzname()}"


def compose_invitation(mail: InvitationMail) -> EmailMessage:
    """multipart/mixed[alternative[text/plain, text/html, text/calendar], invite.ics]."""
    kind_title = mail.kind.replace("_", " ")
    others = " and ".join(mail.other_names)
    context = {
        "recipient_name": mail.recipient.name,
        "headline": f"Your mentorship {kind_title} with {others} is planned.",
        "when_local": when_local(mail.start, mail.end, mail.recipient.timezone),
        "other_names": others,
        "recipient_timezone": mail.recipient.timezone,
        "purpose": PURPOSES.get(mail.kind, ""),
        "program_name": mail.program_name,
    }
    msg = EmailMessage()
    msg["Subject"] = f"Invitation: mentorship {kind_title} with {others}"
    msg["From"] = mail.sender
    msg["To"] = Address(display_name=mail.recipient.name, addr_spec=mail.recipient.email)
    msg["Date"] = format_datetime(mail.sent_at.astimezone(dt.UTC))
    msg["Message-ID"] = mail.message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(_templates.get_template("invitation.txt").render(context))
    msg.add_alternative(_templates.get_template("invitation.html").render(context), subtype="html")
    msg.add_alternative(mail.ical, subtype="calendar", params={"method": mail.method})
    msg.add_attachment(
        mail.ical.encode(), maintype="application", subtype="ics", filename="invite.ics"
    )
    return msg


def compose_invitations(mails: Sequence[InvitationMail]) -> list[bytes]:
    """The wire bytes of each invitation (CPU-heavy: run it in the service's CPU pool)."""
    return [compose_invitation(mail).as_bytes() for mail in mails]
