"""Composing emails: iMIP invitations, updates and cancellations (RFC 6047) with text, HTML and
calendar parts, and the other notices (reminders, pairs, check-ins ...) with text and HTML parts,
all rendered from the templates (pure; run it in the CPU pool)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from services.notifications import mime
from services.notifications.mime import Mailbox

_templates = Environment(
    loader=PackageLoader("services.notifications", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    # the templates ship with the code: no stat() of each file at every get_template (a sixth
    # of composing an invitation)
    auto_reload=False,
)

PURPOSES = {
    "kickoff": (
        "This first session is for getting to know each other: share what you hope to get out "
        "of the program and agree how and how often you will meet."
    ),
}

# METHOD -> how the subject and headline speak of the change
CHANGES = {
    "REQUEST": ("Invitation", "is planned"),
    "UPDATE": ("Updated", "has moved"),
    "CANCEL": ("Cancelled", "is cancelled"),
}


@dataclass(frozen=True)
class Recipient:
    """Whom one email is for, and the zone its times are shown in."""

    name: str
    email: str
    timezone: str
    role: str | None = None  # mentor or mentee, when known


@dataclass(frozen=True)
class Partner:
    """Someone else in the session, as the recipient sees them."""

    name: str
    timezone: str
    role: str | None = None


@dataclass(frozen=True)
class InvitationMail:
    """Everything one session email (invitation, update, cancellation) says, for one recipient."""

    sender: Mailbox
    recipient: Recipient
    other_names: Sequence[str]
    kind: str
    start: dt.datetime
    end: dt.datetime
    ical: str
    method: str  # the iTIP METHOD: REQUEST (also for updates) or CANCEL
    message_id: str
    sent_at: dt.datetime
    program_name: str
    change: str = "REQUEST"  # REQUEST, UPDATE or CANCEL: how the text speaks of it
    partners: Sequence[Partner] = ()
    reasons: Sequence[str] = ()
    location: str | None = None
    reply_to: Mailbox | None = None
    reason: str | None = None  # why it moved or was cancelled
    previous_start: dt.datetime | None = None
    links: dict[str, str] = field(default_factory=dict)
    replies_read: bool = False  # the organizer's mailbox is read: answers reach the program


def when_local(start: dt.datetime, end: dt.datetime, timezone: str) -> str:
    """e.g. 'Tuesday 8 December 2026, 10:00-11:00 CET' in the recipient's zone."""
    zone = ZoneInfo(timezone)
    s, e = start.astimezone(zone), end.astimezone(zone)
    day = f"{s:%A} {s.day} {s:%B %Y}"
    return f"{day}, {s:%H:%M}\u2013{e:%H:%M} {s.tzname()}"


def short_when(start: dt.datetime, timezone: str) -> str:
    """e.g. 'Tue 8 Dec 10:00 CET', for subjects."""
    s = start.astimezone(ZoneInfo(timezone))
    return f"{s:%a} {s.day} {s:%b} {s:%H:%M} {s.tzname()}"


def role_line(recipient: Recipient, partners: Sequence[Partner]) -> str:
    """Who is whose mentor, from the recipient's side."""
    if not partners:
        return ""
    other = partners[0]
    name = mime.one_line(other.name)
    if other.role == "mentor":
        return f"{name} will be your mentor."
    if other.role == "mentee" or recipient.role == "mentor":
        return f"You will be {name}'s mentor."
    return ""


def partner_times(mail: InvitationMail) -> list[str]:
    """Each partner's local time at the start, e.g. 'for Eli it is 23:00 JST (Asia/Tokyo)'."""
    return partner_times_at(mail.start, mail.partners)


def partner_times_at(start: dt.datetime, partners: Sequence[Partner]) -> list[str]:
    """Each partner's local time at `start`."""
    lines = []
    for partner in partners:
        local = start.astimezone(ZoneInfo(partner.timezone))
        lines.append(
            f"For {mime.one_line(partner.name)} it is {local:%H:%M} {local.tzname()} on "
            f"{local:%A} ({partner.timezone})."
        )
    return lines


def _context(mail: InvitationMail) -> dict[str, object]:
    verb = CHANGES.get(mail.change, CHANGES["REQUEST"])[1]
    kind_title = mail.kind.replace("_", " ")
    others = " and ".join(mime.one_line(name) for name in mail.other_names)
    previous = (
        when_local(
            mail.previous_start,
            mail.previous_start + (mail.end - mail.start),
            mail.recipient.timezone,
        )
        if mail.previous_start is not None
        else None
    )
    return {
        "recipient_name": mime.one_line(mail.recipient.name),
        "headline": f"Your mentorship {kind_title} with {others} {verb}.",
        "change": mail.change,
        "when_local": when_local(mail.start, mail.end, mail.recipient.timezone),
        "previous_when": previous,
        "other_names": others,
        "recipient_timezone": mail.recipient.timezone,
        "purpose": PURPOSES.get(mail.kind, "") if mail.change != "CANCEL" else "",
        "program_name": mime.one_line(mail.program_name),
        "role_line": role_line(mail.recipient, mail.partners),
        "partner_times": partner_times(mail),
        "reasons": [mime.one_line(r) for r in mail.reasons],
        "location": mime.one_line(mail.location) if mail.location else "",
        "reason": mime.paragraphs(mail.reason) if mail.reason else "",
        "coordinator": mime.one_line(mail.reply_to.name or mail.reply_to.address)
        if mail.reply_to
        else "",
        "links": dict(mail.links),
        "replies_read": mail.replies_read,
    }


def subject(mail: InvitationMail) -> str:
    """e.g. 'Invitation: mentorship kickoff with Bob Smith, Tue 8 Dec 10:00 EST'."""
    title = CHANGES.get(mail.change, CHANGES["REQUEST"])[0]
    others = " and ".join(mime.one_line(name) for name in mail.other_names)
    when = short_when(mail.start, mail.recipient.timezone)
    return f"{title}: mentorship {mail.kind.replace('_', ' ')} with {others}, {when}"


def compose_invitation(mail: InvitationMail) -> bytes:
    """multipart/mixed[alternative[text/plain, text/html, text/calendar], invite.ics] bytes.

    Raises mime.BadAddress when the recipient's address cannot be written.
    """
    context = _context(mail)
    recipient = mime.mailbox(mail.recipient.name, mail.recipient.email)
    headers = [
        ("From", mime.address_header(mail.sender)),
        ("To", mime.address_header(recipient)),
        ("Subject", mime.unstructured(subject(mail))),
        ("Date", mime.date_header(mail.sent_at)),
        ("Message-ID", mail.message_id),
        ("Auto-Submitted", "auto-generated"),
        ("X-Auto-Response-Suppress", "OOF, AutoReply"),
    ]
    if mail.reply_to is not None:
        headers.append(("Reply-To", mime.address_header(mail.reply_to)))
    return mime.write_message(
        headers,
        text=_templates.get_template("invitation.txt").render(context),
        html=_templates.get_template("invitation.html").render(context),
        calendar=mime.Calendar(mail.method, mail.ical),
    )


@dataclass(frozen=True)
class NoticeMail:
    """An email without a calendar object: templates/<template>.{txt,html} with `fields`.

    Every string in `fields` (also inside lists and dicts) is user text as far as the templates
    know: it is made one line (controls, line separators, bidi marks removed) before rendering,
    and the HTML template escapes it (autoescape).
    """

    sender: Mailbox
    recipient: Recipient
    template: str
    subject: str
    fields: Mapping[str, object]
    message_id: str
    sent_at: dt.datetime
    program_name: str
    reply_to: Mailbox | None = None
    unsubscribe: str | None = None  # one-click unsubscribe URL (RFC 8058), non-essential kinds


Mail = InvitationMail | NoticeMail


def _clean(value: object) -> object:
    if isinstance(value, str):
        return mime.one_line(value, 2000)
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def notice_context(mail: NoticeMail) -> dict[str, object]:
    """What a notice's templates see: its fields made inert, the recipient and the program."""
    context = {str(k): _clean(v) for k, v in mail.fields.items()}
    context.update(
        recipient_name=mime.one_line(mail.recipient.name),
        recipient_timezone=mail.recipient.timezone,
        program_name=mime.one_line(mail.program_name),
        coordinator=mime.one_line(mail.reply_to.name or mail.reply_to.address)
        if mail.reply_to
        else "",
        unsubscribe=mail.unsubscribe or "",
    )
    return context


def compose_notice(mail: NoticeMail) -> bytes:
    """multipart/alternative[text/plain, text/html] bytes; BadAddress when it cannot be written."""
    context = notice_context(mail)
    recipient = mime.mailbox(mail.recipient.name, mail.recipient.email)
    headers = [
        ("From", mime.address_header(mail.sender)),
        ("To", mime.address_header(recipient)),
        ("Subject", mime.unstructured(mail.subject)),
        ("Date", mime.date_header(mail.sent_at)),
        ("Message-ID", mail.message_id),
        ("Auto-Submitted", "auto-generated"),
        ("X-Auto-Response-Suppress", "OOF, AutoReply"),
    ]
    if mail.reply_to is not None:
        headers.append(("Reply-To", mime.address_header(mail.reply_to)))
    if mail.unsubscribe:
        headers.append(("List-Unsubscribe", f"<{mime.one_line(mail.unsubscribe)}>"))
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    return mime.write_message(
        headers,
        text=_templates.get_template(f"{mail.template}.txt").render(context),
        html=_templates.get_template(f"{mail.template}.html").render(context),
    )


def compose_mail(mail: Mail) -> bytes:
    """The wire bytes of an invitation or a notice."""
    if isinstance(mail, NoticeMail):
        return compose_notice(mail)
    return compose_invitation(mail)


def warm_up() -> int:
    """Compiles every template (in a CPU-pool worker at the service's start, so a round's first
    batch of mails does not wait for the worker to start and compile); how many."""
    names = _templates.list_templates()
    for name in names:
        _templates.get_template(name)
    return len(names)


def compose_invitations(mails: Sequence[Mail]) -> list[bytes | str]:
    """The wire bytes of each mail, or why it cannot be built (for the CPU pool)."""
    out: list[bytes | str] = []
    for mail in mails:
        try:
            out.append(compose_mail(mail))
        except mime.BadAddress as exc:
            out.append(str(exc))
    return out
