"""The mails that are not about a calendar entry: one handler per event, one template pair per
kind (templates/<kind>.{txt,html}, extending notice_base).

Each notification is one per logical thing (the proposal, the check-in and its level, the
milestone), not per event: a copy of an event with another id queues nothing more.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Sequence
from email.utils import parseaddr
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.notifications import deliveries, mime, preferences, store
from services.notifications.deliveries import Attendee, PlannedDelivery, SessionContext
from services.notifications.messages import short_when
from services.notifications.queueing import queue_all, signer_for
from shared.events import (
    CheckinDue,
    CheckinOverdue,
    MatchingCompleted,
    MilestoneReached,
    PairAtRisk,
    PairFormed,
    PairProposed,
    SessionMissed,
)
from shared.events.pairs import MenteeUnmatched
from shared.links import CHECKIN_REPORT, PAIR_RESPONSE, RELATIONSHIP, LinkKind, link_url
from shared.settings import Settings
from shared.unit_of_work import UnitOfWork

log = logging.getLogger("mentorship.notifications.notices")

PROPOSAL_LINK_DAYS = 7  # when the event does not say when the proposal expires
CHECKIN_LINK_DAYS = 30  # a check-in form link holds this long after the check-in was due
# the pair's relationship hub (pairing): as long as pairing lets a coordinator mint one; every
# later mail about the pair carries a fresh one
RELATIONSHIP_LINK_DAYS = 366
COORDINATOR = "coordinator"  # the recipient id of a program's coordinator


def coordinator(settings: Settings, program_id: str) -> Attendee | None:
    """The program's coordinator (MENTORSHIP_COORDINATORS), if configured and writable.

    An entry may end with `; <IANA zone>` ("Ada Lee <ada@example.org>; Europe/Berlin"): the
    coordinator's quiet hours and the times in their mails are in that zone; without one, UTC.
    """
    configured = settings.coordinators.get(program_id)
    if not configured:
        return None
    address_part, zone = coordinator_zone(configured)
    name, address = parseaddr(address_part)
    if not address:
        return None
    return Attendee(COORDINATOR, name or "Program coordinator", address, zone, COORDINATOR)


@functools.lru_cache(maxsize=64)
def coordinator_zone(configured: str) -> tuple[str, str]:
    """A COORDINATORS entry split into its address and its zone (UTC when none is named; a
    name that is no IANA zone is logged once and UTC is used)."""
    head, separator, tail = configured.rpartition(";")
    if not separator:
        return configured, "UTC"
    zone = tail.strip()
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("coordinator %r: %r is no IANA time zone; using UTC", head.strip(), zone)
        return head, "UTC"
    return head, zone


def context(uow: UnitOfWork, program_id: str) -> SessionContext:
    """Sender, program name, the coordinator as Reply-To, now."""
    settings = uow.settings
    coord = coordinator(settings, program_id)
    reply_to = None
    if coord is not None:
        try:
            reply_to = mime.mailbox(coord.name, coord.email)
        except mime.BadAddress:
            log.warning("the coordinator of %s cannot be written as Reply-To", program_id)
    return SessionContext(
        sender=deliveries.sender_address(settings.mail_from, settings.mail_from_name),
        program_name=settings.mail_from_name,
        now=uow.clock.now(),
        reply_to=reply_to,
    )


def _link(uow: UnitOfWork, kind: LinkKind, data: dict[str, Any], expires: dt.datetime) -> str:
    return link_url(uow.settings, signer_for(uow.settings), kind, data, expires)


async def _people(uow: UnitOfWork, program_id: str, ids: Sequence[str]) -> dict[str, Attendee]:
    """These people's contacts: from the batch's preload when it has them all, else one query
    (which says why one is missing)."""
    seen = [uow.peek(store.Contact, (program_id, pid)) for pid in ids]
    if all(row is not None for _, row in seen):
        return {row.participant_id: row.attendee() for _, row in seen if row is not None}
    contacts = await store.contacts_or_raise(
        uow.session, program_id=program_id, participant_ids=ids
    )
    return {c.participant_id: c.attendee() for c in contacts}


def pair_formed_deliveries(event: PairFormed) -> list[tuple[str, str]]:
    """The keys of the two deliveries pair.formed queues, for the check that none is queued."""
    source = deliveries.logical_id("pair.formed", event.program_id, event.pair_id)
    return [
        (event.program_id, deliveries.delivery_id(deliveries.idempotency_key(
            program_id=event.program_id, source_event_id=source, recipient_id=pid
        )))
        for pid in (event.mentor_id, event.mentee_id)
    ]  # fmt: skip


async def _queue(uow: UnitOfWork, program_id: str, planned: list[PlannedDelivery]) -> None:
    await queue_all(program_id, planned, uow)


def _plan(
    uow: UnitOfWork,
    program_id: str,
    source: str,
    recipient: Attendee,
    kind: str,
    subject: str,
    fields: dict[str, object],
) -> PlannedDelivery:
    return deliveries.notice(
        program_id=program_id,
        source_id=source,
        recipient=recipient,
        kind=kind,
        template=kind.replace(".", "_"),
        subject=subject,
        fields=fields,
        context=context(uow, program_id),
        unsubscribe=unsubscribe_link(uow, program_id, recipient, kind),
    )


def relationship_link(uow: UnitOfWork, program_id: str, pair_id: str, participant_id: str) -> str:
    """The person's signed link to their pair's charter, goals and milestones (pairing)."""
    return _link(
        uow,
        RELATIONSHIP,
        {"program_id": program_id, "pair_id": pair_id, "participant_id": participant_id},
        uow.clock.now() + dt.timedelta(days=RELATIONSHIP_LINK_DAYS),
    )


def unsubscribe_link(
    uow: UnitOfWork, program_id: str, recipient: Attendee, kind: str
) -> str | None:
    """The signed one-click unsubscribe URL of a non-essential kind for one person (RFC 8058);
    None for essential kinds and for coordinators (who get no optional mail)."""
    if preferences.is_essential(kind) or recipient.participant_id == COORDINATOR:
        return None
    return _link(
        uow,
        preferences.UNSUBSCRIBE,
        {"program_id": program_id, "participant_id": recipient.participant_id, "kind": kind},
        uow.clock.now() + dt.timedelta(days=preferences.UNSUBSCRIBE_LINK_DAYS),
    )


async def on_pair_proposed(event: PairProposed, uow: UnitOfWork) -> None:
    """Both people hear who was proposed, why, and answer with an accept/decline link."""
    people = await _people(uow, event.program_id, [event.mentor_id, event.mentee_id])
    source = deliveries.logical_id("pair.proposed", event.program_id, event.pair_id)
    expires = getattr(event, "expires_at", None) or (
        uow.clock.now() + dt.timedelta(days=PROPOSAL_LINK_DAYS)
    )
    planned = []
    for pid, other_id, role in (
        (event.mentor_id, event.mentee_id, "mentee"),
        (event.mentee_id, event.mentor_id, "mentor"),
    ):
        other = people[other_id]
        link = _link(
            uow,
            PAIR_RESPONSE,
            {"program_id": event.program_id, "proposal_id": event.pair_id, "participant_id": pid},
            expires,
        )
        planned.append(
            _plan(
                uow,
                event.program_id,
                source,
                people[pid],
                "pair.proposed",
                f"Proposed: {other.name} as your {role}",
                {
                    "headline": f"We propose {other.name} as your {role}.",
                    "reasons": list(event.reasons),
                    "partner_timezone": other.timezone,
                    "respond_link": link,
                    "expires": expires.astimezone(dt.UTC).strftime("%d %B %Y %H:%M UTC"),
                },
            )
        )
    await _queue(uow, event.program_id, planned)


async def on_pair_formed_mail(event: PairFormed, uow: UnitOfWork) -> None:
    """Both people hear that they are a pair, and are asked to agree their charter."""
    people = await _people(uow, event.program_id, [event.mentor_id, event.mentee_id])
    source = deliveries.logical_id("pair.formed", event.program_id, event.pair_id)
    planned = []
    for pid, other_id, role in (
        (event.mentor_id, event.mentee_id, "mentee"),
        (event.mentee_id, event.mentor_id, "mentor"),
    ):
        other = people[other_id]
        planned.append(
            _plan(
                uow,
                event.program_id,
                source,
                people[pid],
                "pair.formed",
                f"You are matched: {other.name} is your {role}",
                {
                    "headline": f"{other.name} is your {role}.",
                    "reasons": list(event.reasons),
                    "partner_timezone": other.timezone,
                    "language": event.language,
                    "relationship_link": relationship_link(
                        uow, event.program_id, event.pair_id, pid
                    ),
                },
            )
        )
    await _queue(uow, event.program_id, planned)


async def on_matching_completed(event: MatchingCompleted, uow: UnitOfWork) -> None:
    """Mentees left unmatched hear why, and that they stay in the next round."""
    if getattr(event, "dry_run", False) or not event.unmatched_mentee_ids:
        return
    people = await _people(uow, event.program_id, list(event.unmatched_mentee_ids))
    # matching.completed names who stays unmatched, not why: the mail says no more
    planned = [_unmatched(uow, event.program_id, event.round_id, p, "") for p in people.values()]
    await _queue(uow, event.program_id, planned)


def _unmatched(
    uow: UnitOfWork, program_id: str, round_id: str, person: Attendee, why: str
) -> PlannedDelivery:
    """The round's one unmatched mail to `person` (one source for the round: one delivery)."""
    return _plan(
        uow,
        program_id,
        deliveries.logical_id("unmatched", program_id, round_id),
        person,
        "pairing.unmatched",
        "No mentor for you in this round yet",
        {"headline": "This matching round found no mentor for you yet.", "why": why},
    )


# what a mentee is told for each reason pairing gives (its `detail` is a coordinator's wording,
# which may name rules or other people; the mentee hears the reason, not the case)
UNMATCHED_WHY = {
    "no_language": "none of this round's mentors shares a language with you.",
    "no_shared_time": "no mentor who shares your language has enough working time overlapping "
    "yours each week.",
    "ruled_out": "the mentors who would fit are ruled out by the program's pairing rules.",
    "capacity": "the mentors who fit you had no room left in this round.",
}


async def on_mentee_unmatched(event: MenteeUnmatched, uow: UnitOfWork) -> None:
    """The mentee hears why this round found no mentor, and that the next round serves them.

    The same delivery as on_matching_completed's for this round and person (one source): the
    mentee gets one mail, with the reason when this event came first (matching.completed waits
    for it).
    """
    people = await _people(uow, event.program_id, [event.participant_id])
    person = people[event.participant_id]
    why = UNMATCHED_WHY[event.reason]
    await _queue(
        uow, event.program_id, [_unmatched(uow, event.program_id, event.round_id, person, why)]
    )


async def on_checkin_due(event: CheckinDue, uow: UnitOfWork) -> None:
    """The participant gets the link to the check-in form."""
    people = await _people(uow, event.program_id, [event.participant_id])
    person = people[event.participant_id]
    link = _link(
        uow,
        CHECKIN_REPORT,
        {
            "program_id": event.program_id,
            "checkin_id": event.checkin_id,
            "participant_id": event.participant_id,
        },
        event.due_at + dt.timedelta(days=CHECKIN_LINK_DAYS),
    )
    source = deliveries.logical_id("checkin.due", event.program_id, event.checkin_id)
    plan = _plan(
        uow,
        event.program_id,
        source,
        person,
        "checkin.due",
        "Your mentorship check-in is due",
        {
            "headline": "It is time for your mentorship check-in.",
            "due": _local(event.due_at, person.timezone),
            "report_link": link,
        },
    )
    await _queue(uow, event.program_id, [plan])


async def on_checkin_overdue(event: CheckinOverdue, uow: UnitOfWork) -> None:
    """The escalation ladder, each level once: 1 the participant, 2 the participant and the
    mentor, 3 the coordinator."""
    level = event.escalation_level
    if level < 1:
        return
    pair = await store.get_pair(uow.session, program_id=event.program_id, pair_id=event.pair_id)
    mentee = (await _people(uow, event.program_id, [event.participant_id]))[event.participant_id]
    recipients: list[Attendee] = []
    if level in (1, 2):
        recipients.append(mentee)
    if level == 2 and pair is not None and pair.mentor_id != event.participant_id:
        mentor = await store.get_contact(
            uow.session, program_id=event.program_id, participant_id=pair.mentor_id
        )
        if mentor is not None:
            recipients.append(mentor.attendee())
    if level >= 3:
        coord = coordinator(uow.settings, event.program_id)
        if coord is None:
            log.warning(
                "check-in %s overdue at level 3 but %s has no coordinator configured",
                event.checkin_id,
                event.program_id,
            )
            return
        recipients.append(coord)
    link = _link(
        uow,
        CHECKIN_REPORT,
        {
            "program_id": event.program_id,
            "checkin_id": event.checkin_id,
            "participant_id": event.participant_id,
        },
        event.due_at + dt.timedelta(days=CHECKIN_LINK_DAYS),
    )
    source = deliveries.logical_id(
        "checkin.overdue", event.program_id, event.checkin_id, str(level)
    )
    planned = []
    for person in recipients:
        about_self = person.participant_id == event.participant_id
        planned.append(
            _plan(
                uow,
                event.program_id,
                source,
                person,
                "checkin.overdue",
                "Your check-in is overdue"
                if about_self
                else f"{mentee.name}'s check-in is overdue",
                {
                    "headline": "Your mentorship check-in is overdue."
                    if about_self
                    else f"{mentee.name}'s mentorship check-in is overdue.",
                    "due": _local(event.due_at, person.timezone),
                    "level": level,
                    "report_link": link if about_self else "",
                    "for_coordinator": person.participant_id == COORDINATOR,
                },
            )
        )
    await _queue(uow, event.program_id, planned)


async def on_session_missed(event: SessionMissed, uow: UnitOfWork) -> None:
    """Both people of the pair hear the session was recorded as missed, and what to do."""
    pair = await store.pair_or_raise(
        uow.session, program_id=event.program_id, pair_id=event.pair_id
    )
    people = await _people(uow, event.program_id, [pair.mentor_id, pair.mentee_id])
    source = deliveries.logical_id("session.missed", event.program_id, event.session_id)
    planned = [
        _plan(
            uow,
            event.program_id,
            source,
            person,
            "session.missed",
            "Your mentorship session was missed",
            {
                "headline": "Nobody confirmed your last mentorship session, so it is recorded "
                "as missed.",
                "reason": event.reason or "",
                "relationship_link": relationship_link(
                    uow, event.program_id, event.pair_id, person.participant_id
                ),
            },
        )
        for person in people.values()
    ]
    await _queue(uow, event.program_id, planned)


async def on_milestone_reached(event: MilestoneReached, uow: UnitOfWork) -> None:
    """The pair celebrates the milestone, and each is asked for feedback on the way there; a
    public milestone also goes in the program's weekly wins digest (private: the pair only)."""
    pair = await store.pair_or_raise(
        uow.session, program_id=event.program_id, pair_id=event.pair_id
    )
    people = await _people(uow, event.program_id, [pair.mentor_id, pair.mentee_id])
    public = getattr(event, "visibility", "private") == "public"
    if public:
        week, due = preferences.wins_week(uow.clock.now())
        uow.upsert(
            store.Win,
            {
                "program_id": event.program_id,
                "week": week,
                "milestone_id": event.milestone_id,
                "title": event.title,
                "names": " and ".join(p.name for p in people.values()),
                "reached_at": event.occurred_at,
            },
        )
        uow.upsert(
            store.timers,
            store.send_timer_row(program_id=event.program_id, delivery_id="", due_at=due)
            | {"kind": preferences.WINS, "key": week, "payload": {"week": week}},
        )
    celebrate = deliveries.logical_id("milestone", event.program_id, event.milestone_id)
    feedback = deliveries.logical_id("feedback", event.program_id, event.milestone_id)
    planned = []
    for person in people.values():
        planned.append(
            _plan(
                uow,
                event.program_id,
                celebrate,
                person,
                "milestone.reached",
                f"Milestone reached: {event.title}",
                {
                    "headline": "Your pair reached a milestone.",
                    "title": event.title,
                    "public": public,
                    "relationship_link": relationship_link(
                        uow, event.program_id, event.pair_id, person.participant_id
                    ),
                },
            )
        )
        planned.append(
            _plan(
                uow,
                event.program_id,
                feedback,
                person,
                "feedback.request",
                f"How is it going? Feedback after {event.title}",
                {"headline": "How is your mentorship going?", "title": event.title},
            )
        )
    await _queue(uow, event.program_id, planned)


async def on_pair_at_risk(event: PairAtRisk, uow: UnitOfWork) -> None:
    """The coordinator hears which pair is at risk and why."""
    coord = coordinator(uow.settings, event.program_id)
    if coord is None:
        return
    pair = await store.get_pair(uow.session, program_id=event.program_id, pair_id=event.pair_id)
    names = ""
    if pair is not None:
        people = await _people(uow, event.program_id, [pair.mentor_id, pair.mentee_id])
        names = " and ".join(p.name for p in people.values())
    plan = _plan(
        uow,
        event.program_id,
        str(event.event_id),
        coord,
        "pair.at_risk",
        f"Pair at risk: {names or event.pair_id}",
        {
            "headline": f"The pair {names or event.pair_id} may need your help.",
            "reasons": list(event.reasons),
            "score": f"{event.score:.2f}",
        },
    )
    await _queue(uow, event.program_id, [plan])


def _local(at: dt.datetime, timezone: str) -> str:
    return short_when(at, timezone)
