"""insights' event handlers: every event of the catalogue is projected into the read models.

When X happens, insights does Y: the table is SUBSCRIPTIONS at the end. Handlers of pairs are
in pair_events.py, of sessions and check-ins in session_events.py. `after` barriers make an
event wait for the events it refers to (a pair's sessions wait for its pair.formed).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from services.insights import pair_events as pairs
from services.insights import session_events as sessions
from services.insights import writes
from services.insights.projections import DeliveryStatus, delivery_status
from services.insights.store import DeliveryView, PairView, ParticipantView, RoundView, utc
from shared.consumer import Subscription
from shared.events import (
    CATALOGUE,
    AssessmentSubmitted,
    CharterAgreed,
    CheckinDue,
    CheckinOverdue,
    CheckinSubmitted,
    Event,
    FeedbackGiven,
    GoalSet,
    MatchingCompleted,
    MilestoneReached,
    NotificationFailed,
    NotificationSent,
    OpportunityOffered,
    PairAtRisk,
    PairDeclined,
    PairEnded,
    PairExpired,
    PairFormed,
    PairPaused,
    PairProposed,
    PairResumed,
    ParticipantLeft,
    ParticipantRegistered,
    ParticipantTimezoneChanged,
    SessionCancelled,
    SessionHeld,
    SessionMissed,
    SessionRescheduled,
    SessionResponded,
    SessionScheduled,
    SessionUnschedulable,
)
from shared.timers import Due
from shared.unit_of_work import UnitOfWork

WAITING = "waiting for the next matching round"


async def on_any_event(event: Event, uow: UnitOfWork) -> None:
    """Counts the event under its program and type."""
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)


def _consented(event: ParticipantRegistered) -> dict[str, Any] | None:
    # a registration may say outright that consent was withdrawn (an optional newer field)
    if vars(event).get("demographics_consent", True) is False or not event.demographics:
        return None
    return dict(sorted(event.demographics.items()))


async def on_participant_registered(event: ParticipantRegistered, uow: UnitOfWork) -> None:
    """Counts the participant under its role and consented groups (a re-registration moves
    them)."""
    key = (event.program_id, event.participant_id)
    person = await uow.get(ParticipantView, key)
    role, demographics = event.role.value, _consented(event)
    if person is None:  # the usual case: written with the batch's one upsert statement
        values = {
            "program_id": event.program_id,
            "participant_id": event.participant_id,
            "role": role,
            "timezone": event.timezone,
            "display_name": event.display_name,
            "cohort": vars(event).get("cohort") or writes.month(event.occurred_at),
            "matched": False,
            "active": True,
            "registered_at": event.occurred_at,
            "unmatched_reason": WAITING if role == "mentee" else None,
            "demographics": demographics,
        }
        # later registrations of the batch see it, and what they change is what is written
        person = uow.upsert_row(ParticipantView, values)
        writes.add_to(uow, event.program_id, f"participants.{role}")
        writes.add_for_groups(uow, person, "people")
    else:
        if person.active and person.role != role:
            writes.add_to(uow, event.program_id, f"participants.{person.role}", -1)
            writes.add_to(uow, event.program_id, f"participants.{role}", 1)
        if person.demographics != demographics:
            writes.add_for_groups(uow, person, "people", -1)
            person.demographics = demographics
            writes.add_for_groups(uow, person, "people", 1)
        person.role, person.timezone = role, event.timezone
        person.display_name = event.display_name
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)


async def on_timezone_changed(event: ParticipantTimezoneChanged, uow: UnitOfWork) -> None:
    """Keeps the zone spread current."""
    person = await writes.participant_or_raise(
        uow, program_id=event.program_id, participant_id=event.participant_id
    )
    person.timezone = event.new_timezone
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)


async def on_participant_left(event: ParticipantLeft, uow: UnitOfWork) -> None:
    """The participant no longer counts among the program's people."""
    person = await writes.participant_or_raise(
        uow, program_id=event.program_id, participant_id=event.participant_id
    )
    if person.active:
        person.active = False
        writes.add_to(uow, event.program_id, f"participants.{person.role}", -1)
        writes.add_to(uow, event.program_id, "participants.left")
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)


async def on_matching_completed(event: MatchingCompleted, uow: UnitOfWork) -> None:
    """Records the round, and why the mentees it left unmatched are unmatched."""
    if event.dry_run:  # a preview formed nothing; the real round may reuse its round id
        return
    if await uow.session.get(RoundView, (event.program_id, event.round_id)) is None:
        uow.session.add(
            RoundView(
                program_id=event.program_id,
                round_id=event.round_id,
                pairs_formed=event.pairs_formed,
                unmatched_mentees=event.unmatched_mentees,
                completed_at=event.occurred_at,
            )
        )
        writes.add_to(uow, event.program_id, "matching.rounds")
    # pairing may say why, per mentee (an optional newer field); else the round's fact
    reasons: dict[str, str] = dict(getattr(event, "unmatched_reasons", None) or {})
    named = sorted({*event.unmatched_mentee_ids, *reasons})
    people: dict[str, ParticipantView] = {}
    with uow.session.no_autoflush:  # the round's mentees in one query per 500
        for start in range(0, len(named), 500):
            query = select(ParticipantView).where(
                ParticipantView.program_id == event.program_id,
                ParticipantView.participant_id.in_(named[start : start + 500]),
            )
            people |= {p.participant_id: p for p in await uow.session.scalars(query)}
    for mentee_id in named:
        person = people.get(mentee_id)
        if person is None or person.matched:
            continue
        reason = reasons.get(mentee_id) or f"no suitable mentor in matching round {event.round_id}"
        if person.unmatched_at is None or event.occurred_at >= utc(person.unmatched_at):
            person.unmatched_reason, person.unmatched_at = reason, event.occurred_at
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)


async def _on_delivery_reported(
    event: NotificationSent | NotificationFailed, uow: UnitOfWork, reported: DeliveryStatus
) -> None:
    """Applies one report of a delivery's outcome."""
    row = await writes.find_delivery(
        uow, program_id=event.program_id, delivery_id=event.delivery_id
    )
    before = DeliveryStatus(row.status) if row else None
    status = delivery_status(before, reported)
    if row is None:
        writes.add_row(
            uow,
            DeliveryView(program_id=event.program_id, delivery_id=event.delivery_id, status=status),
        )
    else:
        row.status = status
    if status is not before:
        if before is not None:
            writes.add_to(uow, event.program_id, f"emails.{before.value}", -1)
        writes.add_to(uow, event.program_id, f"emails.{status.value}", 1)
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)


async def on_notification_sent(event: NotificationSent, uow: UnitOfWork) -> None:
    """Counts the email as sent."""
    await _on_delivery_reported(event, uow, DeliveryStatus.SENT)


async def on_notification_failed(event: NotificationFailed, uow: UnitOfWork) -> None:
    """Counts the email as failed, unless it was sent."""
    await _on_delivery_reported(event, uow, DeliveryStatus.FAILED)


async def on_contact_deadline(due: Due, uow: UnitOfWork) -> None:
    """A pair heard nothing of for too long is scored again (it may now be at risk)."""
    pair = await writes.find_pair(uow, program_id=due.program_id, pair_id=due.key)
    if pair is not None:
        await writes.refresh_health(uow, pair, at=due.due_at)


_REGISTERED = (ParticipantRegistered,)
_FORMED = (PairFormed,)
_PLANNED = (PairFormed, SessionScheduled)
_DUE = (PairFormed, CheckinDue)

# what each handler reads, loaded for the whole batch (writes.py): no lookup per event
_PERSON = (writes.participants(lambda e: (e.program_id, e.participant_id)),)
_MENTEE = writes.participants(lambda e: (e.program_id, e.mentee_id))
_PAIR = (writes.pairs(),)
_SESSION = (writes.pairs(), writes.sessions_named())
_OUTCOME = (*_SESSION, writes.mentees_of_pairs())
_CHECKIN = (writes.pairs(), writes.checkins_named())
_DELIVERY = (writes.deliveries_named(),)

_PROJECTED: list[Subscription[Any]] = [
    Subscription(ParticipantRegistered, on_participant_registered, preload=_PERSON),
    # the registration published before a zone change is applied first (another subject)
    Subscription(
        ParticipantTimezoneChanged, on_timezone_changed, after=_REGISTERED, preload=_PERSON
    ),
    Subscription(ParticipantLeft, on_participant_left, after=_REGISTERED, preload=_PERSON),
    Subscription(MatchingCompleted, on_matching_completed, after=(*_REGISTERED, PairFormed)),
    Subscription(
        PairProposed, pairs.on_pair_proposed, after=_REGISTERED, preload=(*_PAIR, _MENTEE)
    ),
    Subscription(
        PairFormed,
        pairs.on_pair_formed,
        after=(*_REGISTERED, PairProposed),
        preload=(*_PAIR, _MENTEE),
    ),
    Subscription(
        PairDeclined,
        pairs.on_pair_declined,
        after=(PairProposed,),
        preload=(*_PAIR, writes.mentees_of_pairs()),
    ),
    Subscription(
        PairExpired,
        pairs.on_pair_expired,
        after=(PairProposed,),
        preload=(*_PAIR, writes.mentees_of_pairs()),
    ),
    Subscription(PairPaused, pairs.on_pair_paused, after=_FORMED, preload=_PAIR),
    Subscription(PairResumed, pairs.on_pair_resumed, after=(PairFormed, PairPaused), preload=_PAIR),
    Subscription(PairEnded, pairs.on_pair_ended, after=_FORMED, preload=_PAIR),
    Subscription(CharterAgreed, pairs.on_charter_agreed, after=_FORMED, preload=_PAIR),
    Subscription(GoalSet, pairs.on_goal_set, after=_FORMED, preload=_PAIR),
    Subscription(MilestoneReached, pairs.on_milestone_reached, after=_FORMED, preload=_PAIR),
    Subscription(
        OpportunityOffered, pairs.on_opportunity_offered, after=_REGISTERED, preload=_PERSON
    ),
    Subscription(FeedbackGiven, pairs.on_feedback_given, after=_FORMED, preload=_PAIR),
    Subscription(
        AssessmentSubmitted, pairs.on_assessment_submitted, after=_REGISTERED, preload=_PERSON
    ),
    Subscription(SessionScheduled, sessions.on_session_scheduled, after=_FORMED, preload=_SESSION),
    Subscription(
        SessionRescheduled, sessions.on_session_rescheduled, after=_PLANNED, preload=_SESSION
    ),
    Subscription(SessionCancelled, sessions.on_session_cancelled, after=_PLANNED, preload=_OUTCOME),
    Subscription(SessionResponded, sessions.on_session_responded, after=_FORMED, preload=_PAIR),
    Subscription(
        SessionUnschedulable, sessions.on_session_unschedulable, after=_FORMED, preload=_PAIR
    ),
    Subscription(SessionHeld, sessions.on_session_held, after=_PLANNED, preload=_OUTCOME),
    Subscription(SessionMissed, sessions.on_session_missed, after=_PLANNED, preload=_OUTCOME),
    Subscription(CheckinDue, sessions.on_checkin_due, after=_FORMED, preload=_CHECKIN),
    Subscription(CheckinSubmitted, sessions.on_checkin_submitted, after=_DUE, preload=_CHECKIN),
    Subscription(CheckinOverdue, sessions.on_checkin_overdue, after=_DUE, preload=_CHECKIN),
    Subscription(NotificationSent, on_notification_sent, preload=_DELIVERY),
    Subscription(NotificationFailed, on_notification_failed, preload=_DELIVERY),
]

_BY_EVENT = {subscription.event: subscription for subscription in _PROJECTED}

# the events that move a pair's facts (their batches load pairs): a contact deadline is judged
# once insights has consumed every one the stream held when the deadline's timer was claimed
PAIR_FACTS = tuple(
    s.event
    for s in _PROJECTED
    if any(getattr(preload, "model", None) is PairView for preload in s.preload)
)

# one subscription per catalogue event but insights' own pair.at_risk, in catalogue order (the
# AsyncAPI document follows it)
SUBSCRIPTIONS: list[Subscription[Any]] = [
    _BY_EVENT.get(event) or Subscription(event, on_any_event)
    for event in CATALOGUE
    if event is not PairAtRisk
]
