"""notifications' event handlers: when X happens, queue who hears about it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from services.notifications import (
    deliveries,
    digests,
    messages,
    notices,
    preferences,
    reminders,
    store,
)
from services.notifications.deliveries import (
    Attendee,
    SessionChange,
    SessionContext,
)
from services.notifications.messages import Partner, Recipient
from services.notifications.mime import one_line
from services.notifications.queueing import queue_all, signer_for
from shared.consumer import Subscription
from shared.events import (
    CharterAgreed,
    CheckinDue,
    CheckinOverdue,
    MatchingCompleted,
    MilestoneReached,
    PairAtRisk,
    PairFormed,
    PairProposed,
    ParticipantLeft,
    ParticipantRegistered,
    ParticipantTimezoneChanged,
    ParticipantUpdated,
    SessionHeld,
    SessionMissed,
    SessionScheduled,
)
from shared.events.pairs import MenteeUnmatched
from shared.events.sessions import SessionCancelled, SessionRescheduled
from shared.links import SESSION_HELD, link_url
from shared.settings import Settings
from shared.timers import Due, schedule
from shared.unit_of_work import Preload, UnitOfWork

HELD_LINK_DAYS = 14  # a "we met" link holds this long after the session's end


async def on_participant_registered(event: ParticipantRegistered, uow: UnitOfWork) -> None:
    """Keeps how to reach the person (a re-registration replaces it)."""
    # on the hot path of a cohort import: one insert-or-update for the whole batch
    uow.upsert(
        store.Contact,
        {
            "program_id": event.program_id,
            "participant_id": event.participant_id,
            "email": str(event.email),
            "display_name": event.display_name,
            "timezone": event.timezone,
            "role": event.role.value,
        },
    )
    frequency = getattr(event, "notification_frequency", None)
    if frequency is not None:
        _prefer(uow, event.program_id, event.participant_id, frequency)
    digests.arm_assessment(uow, event.program_id)  # one row per program and batch


def _prefer(uow: UnitOfWork, program_id: str, participant_id: str, frequency: str) -> None:
    uow.upsert(
        store.Preference,
        {
            "program_id": program_id,
            "participant_id": participant_id,
            "frequency": frequency,
            "updated_at": uow.clock.now(),
        },
    )


async def on_participant_left(event: ParticipantLeft, uow: UnitOfWork) -> None:
    """Someone who left the program gets no optional mail any more (weekly wins, surveys,
    touchpoints), recorded as an unsubscription; mail about their sessions still goes (the
    cancellations scheduling sends when they leave)."""
    uow.upsert(
        store.Unsubscription,
        {
            "program_id": event.program_id,
            "participant_id": event.participant_id,
            "kind": preferences.ALL,
            "unsubscribed_at": uow.clock.now(),
            "source": store.LEFT,
        },
    )


async def on_participant_updated(event: ParticipantUpdated, uow: UnitOfWork) -> None:
    """A new address or name is used from now on; a frequency given is the person's choice."""
    contact = await store.contact_or_raise(
        uow.session, program_id=event.program_id, participant_id=event.participant_id
    )
    if event.email is not None:
        contact.email = str(event.email)
    if event.display_name is not None:
        contact.display_name = event.display_name
    frequency = getattr(event, "notification_frequency", None)
    if frequency is not None:
        _prefer(uow, event.program_id, event.participant_id, frequency)


async def on_timezone_changed(event: ParticipantTimezoneChanged, uow: UnitOfWork) -> None:
    """Times in mail are shown in the person's new zone."""
    contact = await store.contact_or_raise(
        uow.session, program_id=event.program_id, participant_id=event.participant_id
    )
    contact.timezone = event.new_timezone


async def on_pair_formed(event: PairFormed, uow: UnitOfWork) -> None:
    """Keeps why the pair was matched, for its session mails, and tells both (charter prompt)."""
    uow.upsert(
        store.Pair,
        {
            "program_id": event.program_id,
            "pair_id": event.pair_id,
            "mentor_id": event.mentor_id,
            "mentee_id": event.mentee_id,
            "reasons": list(event.reasons),
        },
    )
    with uow.session.no_autoflush:  # as for session mails: no flush per event of a batch
        await notices.on_pair_formed_mail(event, uow)


async def on_session_scheduled(event: SessionScheduled, uow: UnitOfWork) -> None:
    """Queues one iMIP invitation per attendee, each in the attendee's own time zone, and arms
    the reminders before the session (each occurrence of a series)."""
    await _queue_session_mails(event, uow, start=event.start, end=event.end, kind=event.kind.value)
    uow.upsert(  # what a calendar reply with this UID answers (replies.py)
        store.CalendarEntry,
        {
            "uid": event.uid,
            "program_id": event.program_id,
            "session_id": event.session_id,
            "pair_id": event.pair_id,
            "attendee_ids": list(event.attendee_ids),
        },
    )
    now = uow.clock.now()
    await reminders.arm(
        uow.session,
        program_id=event.program_id,
        occurrences=reminders.scheduled_occurrences(event, now),
        before=reminders.offsets(uow.settings.reminder_hours),
        now=now,
        payload=_reminder_payload(event, event.kind.value, uow.settings),
        replace=False,  # a new session (a re-planned series is a new one): nothing to withdraw
        # with the batch's writes: its changes and cancellations come in later transactions
        # (their subscriptions wait for this one's), so nothing in this batch withdraws them
        defer=lambda row: uow.upsert(store.timers, row),
    )


async def on_session_rescheduled(event: SessionRescheduled, uow: UnitOfWork) -> None:
    """Queues the updated invitation (same UID, higher SEQUENCE) to each attendee."""
    kind = getattr(event, "kind", None)
    await _queue_session_mails(
        event, uow, start=event.start, end=event.end, kind=kind.value if kind else "session"
    )
    await reminders.arm(  # moves its reminders; those now in the past are withdrawn
        uow.session,
        program_id=event.program_id,
        occurrences=[reminders.rescheduled_occurrence(event)],
        before=reminders.offsets(uow.settings.reminder_hours),
        now=uow.clock.now(),
        payload=_reminder_payload(event, kind.value if kind else "session", uow.settings),
    )


async def on_session_cancelled(event: SessionCancelled, uow: UnitOfWork) -> None:
    """Queues the cancellation (METHOD:CANCEL) to each attendee."""
    kind = getattr(event, "kind", None)
    starts = list(getattr(event, "starts", []) or [])
    start = min(starts) if starts else uow.clock.now()
    await _queue_session_mails(
        event,
        uow,
        start=start,
        end=start + dt.timedelta(hours=1),
        kind=kind.value if kind else "session",
    )
    await reminders.withdraw(
        uow.session, program_id=event.program_id, prefixes=reminders.cancelled_prefixes(event)
    )


def video_url_for(settings: Settings, program_id: str) -> str | None:
    """The program's own meeting link (MENTORSHIP_PROGRAM_VIDEO_URLS), used when a session event
    carries none."""
    return settings.program_video_urls.get(program_id) or None


def _reminder_payload(
    event: SessionScheduled | SessionRescheduled, kind: str, settings: Settings
) -> dict[str, object]:
    return {
        "session_id": event.session_id if not event.series_id else event.series_id,
        "pair_id": event.pair_id,
        "kind": kind,
        "attendee_ids": list(event.attendee_ids),
        "video_url": event.video_url or video_url_for(settings, event.program_id),
    }


def _hours_phrase(minutes: int) -> str:
    if minutes % 1440 == 0:
        days = minutes // 1440
        return "tomorrow" if days == 1 else f"in {days} days"
    if minutes % 60 == 0:
        hours = minutes // 60
        return "in 1 hour" if hours == 1 else f"in {hours} hours"
    return f"in {minutes} minutes"


async def on_reminder_due(item: Due, uow: UnitOfWork) -> None:
    """A reminder timer is due: queues one reminder per attendee, in each one's own zone, with
    the "we met" link, and arms the occurrence's next reminder (the 1 h one after the 24 h one).
    A session already begun (the service was away) gets none."""
    p = item.payload
    start = dt.datetime.fromisoformat(p["start"])
    end = dt.datetime.fromisoformat(p["end"])
    now = uow.clock.now()
    if now >= start:
        return
    minutes = int(p.get("minutes") or 0)
    following = reminders.next_reminder(start, [int(m) for m in p.get("later") or ()], now)
    if following is not None:  # the same item again, at the next reminder's time
        await schedule(
            uow.session,
            store.timers,
            program_id=item.program_id,
            kind=item.kind,
            key=item.key,
            due_at=start - dt.timedelta(minutes=following[0]),
            payload=p | {"minutes": following[0], "later": following[1]},
        )
    contacts = await store.contacts_or_raise(
        uow.session, program_id=item.program_id, participant_ids=list(p["attendee_ids"])
    )
    attendees = [c.attendee() for c in contacts]
    settings = uow.settings
    context = SessionContext(
        sender=deliveries.sender_address(settings.mail_from, settings.mail_from_name),
        program_name=settings.mail_from_name,
        now=now,
    )
    signer = signer_for(settings)
    name = reminders.reminder_key(item.key, minutes)
    source = deliveries.logical_id("reminder", item.program_id, name, start.isoformat())
    kind = str(p.get("kind") or "session").replace("_", " ")
    soon = _hours_phrase(minutes)
    planned = []
    for attendee in attendees:
        others = [a for a in attendees if a is not attendee]
        names = " and ".join(one_line(a.name) for a in others)
        data = {
            "program_id": item.program_id,
            "session_id": p["session_id"],
            "participant_id": attendee.participant_id,
        }
        if p.get("recurrence_id"):
            data["recurrence_id"] = p["recurrence_id"]
        held = link_url(
            settings, signer, SESSION_HELD, data, end + dt.timedelta(days=HELD_LINK_DAYS)
        )
        partners = [Partner(a.name, a.timezone, a.role) for a in others]
        recipient = Recipient(attendee.name, attendee.email, attendee.timezone, attendee.role)
        planned.append(
            deliveries.notice(
                program_id=item.program_id,
                source_id=source,
                recipient=attendee,
                kind="session.reminder",
                template="reminder",
                subject=f"Reminder: mentorship {kind} with {names} {soon}, "
                f"{messages.short_when(start, attendee.timezone)}",
                fields={
                    "headline": f"Your mentorship {kind} with {names} is {soon}.",
                    "when_local": messages.when_local(start, end, attendee.timezone),
                    "other_names": names,
                    "role_line": messages.role_line(recipient, partners),
                    "partner_times": _partner_times(start, others),
                    "location": p.get("video_url") or "",
                    "agenda": messages.PURPOSES.get(str(p.get("kind")), ""),
                    "held_link": held,
                },
                context=context,
            )
        )
    await queue_all(item.program_id, planned, uow)


def _partner_times(start: dt.datetime, others: list[Attendee]) -> list[str]:
    mail_like = [Partner(a.name, a.timezone, a.role) for a in others]
    return messages.partner_times_at(start, mail_like)


async def _session_context(event: SessionChange, uow: UnitOfWork) -> SessionContext:
    settings, now = uow.settings, uow.clock.now()
    pair = await uow.get(store.Pair, (event.program_id, event.pair_id))  # preloaded
    held_links = None
    session_id = getattr(event, "session_id", None)
    end = getattr(event, "end", None)
    if session_id and end is not None and not isinstance(event, SessionCancelled):
        signer = signer_for(settings)
        expires = end + dt.timedelta(days=HELD_LINK_DAYS)
        held_links = {
            pid: link_url(
                settings,
                signer,
                SESSION_HELD,
                {"program_id": event.program_id, "session_id": session_id, "participant_id": pid},
                expires,
            )
            for pid in event.attendee_ids
        }
    return SessionContext(
        sender=deliveries.sender_address(settings.mail_from, settings.mail_from_name),
        program_name=settings.mail_from_name,
        now=now,
        reasons=pair.reasons if pair else (),
        location=getattr(event, "video_url", None) or video_url_for(settings, event.program_id),
        held_links=held_links,
        replies_read=settings.replies_smtp_port is not None
        or settings.replies_imap_host is not None,
    )


async def _queue_session_mails(
    event: SessionChange, uow: UnitOfWork, *, start: dt.datetime, end: dt.datetime, kind: str
) -> None:
    contacts = [await _contact(uow, event.program_id, pid) for pid in event.attendee_ids]
    context = await _session_context(event, uow)
    planned = deliveries.session_mails(
        event,
        [contact.attendee() for contact in contacts],
        context=context,
        start=start,
        end=end,
        session_kind=kind,
    )
    # the duplicate check needs no flush of the deliveries earlier events of the batch added: a
    # delivery queued twice in one batch breaks its unique idempotency key, and the batch is
    # applied again event by event (each then sees the one before). A flush per event cost
    # most of a session.scheduled.
    with uow.session.no_autoflush:
        await queue_all(event.program_id, planned, uow)


async def _contact(uow: UnitOfWork, program_id: str, participant_id: str) -> store.Contact:
    """An attendee's contact (preloaded for the batch), or why there is none."""
    contact = await uow.get(store.Contact, (program_id, participant_id))
    if contact is None:  # says why: unknown here, or another program's
        return await store.contact_or_raise(
            uow.session, program_id=program_id, participant_id=participant_id
        )
    return contact


# what the session mails read, loaded for the whole batch: no lookup per event
_SESSION_ROWS: tuple[Preload[Any], ...] = (
    Preload(store.Pair, key=lambda e: (e.program_id, e.pair_id)),
    Preload(store.Contact, keys=lambda e: [(e.program_id, pid) for pid in e.attendee_ids]),
    Preload(store.Delivery, keys=lambda e: _session_deliveries(e)),
)


def _session_deliveries(event: SessionChange) -> list[tuple[str, str]]:
    """The keys of the deliveries a session change queues (one per attendee), for the check
    that none is queued already."""
    return [
        (event.program_id, deliveries.delivery_id(deliveries.idempotency_key(
            program_id=event.program_id, source_event_id=str(event.event_id), recipient_id=pid
        )))
        for pid in event.attendee_ids
    ]  # fmt: skip


# what the pair-formed mails read, loaded for the whole batch (a round forms hundreds at once)
_PAIR_ROWS: tuple[Preload[Any], ...] = (
    Preload(
        store.Contact, keys=lambda e: [(e.program_id, e.mentor_id), (e.program_id, e.mentee_id)]
    ),
    Preload(store.Delivery, keys=notices.pair_formed_deliveries),
)

_PEOPLE = (ParticipantRegistered, ParticipantTimezoneChanged)
# events a batch that composes mails takes at most (a session.scheduled is two mails): the
# sender gets the first of a round's invitations after one such batch, not after the round
MAIL_BATCH = 128

SUBSCRIPTIONS: list[Subscription[Any]] = [
    Subscription(ParticipantRegistered, on_participant_registered),
    Subscription(ParticipantTimezoneChanged, on_timezone_changed, after=(ParticipantRegistered,)),
    Subscription(PairFormed, on_pair_formed, after=_PEOPLE, preload=_PAIR_ROWS, batch=MAIL_BATCH),
    Subscription(
        SessionScheduled,
        on_session_scheduled,
        after=(*_PEOPLE, PairFormed),
        preload=_SESSION_ROWS,
        batch=MAIL_BATCH,
    ),
    Subscription(
        SessionRescheduled,
        on_session_rescheduled,
        after=(*_PEOPLE, SessionScheduled),
        preload=_SESSION_ROWS,
    ),
    Subscription(
        SessionCancelled,
        on_session_cancelled,
        after=(*_PEOPLE, SessionScheduled),
        preload=_SESSION_ROWS,
    ),
    Subscription(PairProposed, notices.on_pair_proposed, after=_PEOPLE),
    Subscription(MenteeUnmatched, notices.on_mentee_unmatched, after=_PEOPLE),
    # after the round's per-mentee reasons: a mentee with one is mailed once, with it
    Subscription(
        MatchingCompleted, notices.on_matching_completed, after=(*_PEOPLE, MenteeUnmatched)
    ),
    Subscription(CheckinDue, notices.on_checkin_due, after=_PEOPLE),
    Subscription(CheckinOverdue, notices.on_checkin_overdue, after=(*_PEOPLE, PairFormed)),
    Subscription(SessionMissed, notices.on_session_missed, after=(*_PEOPLE, PairFormed)),
    Subscription(MilestoneReached, notices.on_milestone_reached, after=(*_PEOPLE, PairFormed)),
    Subscription(PairAtRisk, notices.on_pair_at_risk, after=(*_PEOPLE, PairFormed)),
    Subscription(SessionHeld, digests.on_session_held, after=(*_PEOPLE, PairFormed)),
    Subscription(ParticipantUpdated, on_participant_updated, after=(ParticipantRegistered,)),
    Subscription(CharterAgreed, digests.on_charter_agreed, after=(*_PEOPLE, PairFormed)),
    Subscription(ParticipantLeft, on_participant_left, after=(ParticipantRegistered,)),
]
