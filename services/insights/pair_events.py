"""Handlers of what happens to pairs: proposals, decisions, charters, goals, milestones,
feedback, opportunities and assessments."""

from __future__ import annotations

import datetime as dt

from services.insights import writes
from services.insights.equity import opportunity_kind
from services.insights.health import Health
from services.insights.projections import PairState, pair_state
from services.insights.store import PairView, ParticipantView, utc
from shared.events import (
    AssessmentSubmitted,
    CharterAgreed,
    Event,
    FeedbackGiven,
    GoalSet,
    MilestoneReached,
    OpportunityOffered,
    PairDeclined,
    PairEnded,
    PairExpired,
    PairFormed,
    PairPaused,
    PairProposed,
    PairResumed,
)
from shared.unit_of_work import UnitOfWork


def move_state(uow: UnitOfWork, pair: PairView, reported: PairState, at: dt.datetime) -> bool:
    """Applies a reported state in an order-independent way; True if the state changed."""
    before = PairState(pair.state)
    after = pair_state(before, utc(pair.state_at) if pair.state_at else None, reported, at)
    if pair.state_at is None or at > utc(pair.state_at):
        pair.state_at = at
    if after is before:
        return False
    writes.add_to(uow, pair.program_id, f"pairs.state.{before.value}", -1)
    writes.add_to(uow, pair.program_id, f"pairs.state.{after.value}", 1)
    pair.state = after
    return True


_ZERO_COUNTS = (
    "sessions_planned",
    "sessions_held",
    "sessions_missed",
    "no_shows_mentor",
    "no_shows_mentee",
    "checkins_due",
    "checkins_submitted",
    "open_overdue_checkins",
    "feedback_from_mentor",
    "feedback_from_mentee",
    "fit_rating_count",
    "milestones",
    "risk_score",
    "at_risk_crossings",
)


async def _pair(
    uow: UnitOfWork, event: Event, pair_id: str, mentor_id: str, mentee_id: str
) -> PairView:
    """The pair, created (as proposed) when this is the first insights hears of it."""
    pair = await writes.find_pair(uow, program_id=event.program_id, pair_id=pair_id)
    if pair is None:
        pair = PairView(
            program_id=event.program_id,
            pair_id=pair_id,
            mentor_id=mentor_id,
            mentee_id=mentee_id,
            formed_at=event.occurred_at,
            state=PairState.PROPOSED,
            health=Health.INACTIVE,
            reasons=[],
            quality_counted=False,
            fit_rating_sum=0.0,
            **dict.fromkeys(_ZERO_COUNTS, 0),
        )
        writes.add_row(uow, pair)
        writes.add_to(uow, event.program_id, f"pairs.state.{PairState.PROPOSED.value}", 1)
        writes.add_to(uow, event.program_id, f"pairs.health.{Health.INACTIVE.value}", 1)
    return pair


async def _count_match_quality(uow: UnitOfWork, pair: PairView) -> None:
    """Once a formed pair's proposal score is known, it counts for the mentee's groups."""
    if pair.quality_counted or pair.proposal_score is None or pair.state == PairState.PROPOSED:
        return
    mentee = await writes.participant(uow, pair.program_id, pair.mentee_id)
    if mentee is not None:
        writes.add_for_groups(uow, mentee, "matched", 1)
        writes.add_for_groups(uow, mentee, "match_score_sum", pair.proposal_score)
    pair.quality_counted = True


async def on_pair_proposed(event: PairProposed, uow: UnitOfWork) -> None:
    """Keeps the proposal's score: match quality per group."""
    pair = await _pair(uow, event, event.pair_id, event.mentor_id, event.mentee_id)
    pair.proposal_score = event.score
    writes.add_entry(uow, event, event.pair_id, "proposed", f"proposed (score {event.score:.2f})")
    await _count_match_quality(uow, pair)
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)


async def on_pair_formed(event: PairFormed, uow: UnitOfWork) -> None:
    """The pair is formed: its mentee is matched, its health is watched from now on."""
    pair = await _pair(uow, event, event.pair_id, event.mentor_id, event.mentee_id)
    if pair.state == PairState.PROPOSED:
        pair.formed_at = event.occurred_at
    if move_state(uow, pair, PairState.FORMED, event.occurred_at):
        mentee = await writes.participant_or_raise(
            uow, program_id=event.program_id, participant_id=event.mentee_id
        )
        if not mentee.matched:
            mentee.matched, mentee.unmatched_reason = True, None
            writes.add_to(uow, event.program_id, "mentees.matched", 1)
        writes.add_entry(uow, event, event.pair_id, "formed", "pair formed")
        await _count_match_quality(uow, pair)
        await writes.arm_contact_check(uow, pair)
    await writes.refresh_health(uow, pair, at=event.occurred_at)
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)


async def on_pair_declined(event: PairDeclined, uow: UnitOfWork) -> None:
    """A declined proposal is the mentee's reason to be unmatched, until a pair forms."""
    pair = await writes.pair_or_raise(uow, program_id=event.program_id, pair_id=event.pair_id)
    move_state(uow, pair, PairState.DECLINED, event.occurred_at)
    mentee = await writes.participant(uow, event.program_id, pair.mentee_id)
    who = "the mentor" if event.participant_id == pair.mentor_id else "the mentee"
    reason = f"proposal declined by {who}" + (f": {event.reason}" if event.reason else "")
    if mentee is not None and not mentee.matched:
        _set_unmatched_reason(mentee, reason, event.occurred_at)
    writes.add_entry(
        uow, event, event.pair_id, "declined", f"declined by {who}", content=event.reason
    )
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)


async def on_pair_expired(event: PairExpired, uow: UnitOfWork) -> None:
    """A proposal not accepted in time closes: the mentee's reason to be unmatched says who
    did not answer, until a pair forms."""
    pair = await writes.pair_or_raise(uow, program_id=event.program_id, pair_id=event.pair_id)
    move_state(uow, pair, PairState.EXPIRED, event.occurred_at)
    roles = {pair.mentor_id: "the mentor", pair.mentee_id: "the mentee"}
    silent = [roles[p] for p in (pair.mentor_id, pair.mentee_id) if p in event.silent]
    summary = (
        f"proposal expired: {' and '.join(silent)} did not accept in time"
        if silent
        else "proposal expired before both accepted"
    )
    mentee = await writes.participant(uow, event.program_id, pair.mentee_id)
    if mentee is not None and not mentee.matched:
        _set_unmatched_reason(mentee, summary, event.occurred_at)
    writes.add_entry(uow, event, event.pair_id, "expired", summary, content=event.reason)
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)


def _set_unmatched_reason(person: ParticipantView, reason: str, at: dt.datetime) -> None:
    if person.unmatched_at is None or at >= utc(person.unmatched_at):
        person.unmatched_reason, person.unmatched_at = reason, at


async def _decision(
    event: PairPaused | PairResumed | PairEnded,
    uow: UnitOfWork,
    state: PairState,
    summary: str,
    reason: str | None,
) -> None:
    pair = await writes.pair_or_raise(uow, program_id=event.program_id, pair_id=event.pair_id)
    move_state(uow, pair, state, event.occurred_at)
    await writes.refresh_health(uow, pair, at=event.occurred_at)
    writes.add_entry(uow, event, event.pair_id, state.value, summary, content=reason)
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)


async def on_pair_paused(event: PairPaused, uow: UnitOfWork) -> None:
    """The pair pauses: not scored meanwhile."""
    until = f" until {event.until.isoformat()}" if event.until else ""
    await _decision(event, uow, PairState.PAUSED, f"paused{until}", event.reason)


async def on_pair_resumed(event: PairResumed, uow: UnitOfWork) -> None:
    """The pair resumes: scored again."""
    await _decision(event, uow, PairState.FORMED, "resumed", None)


async def on_pair_ended(event: PairEnded, uow: UnitOfWork) -> None:
    """The pair ends: final."""
    await _decision(event, uow, PairState.ENDED, "ended", event.reason)


async def on_charter_agreed(event: CharterAgreed, uow: UnitOfWork) -> None:
    """The charter goes on the timeline."""
    await writes.pair_or_raise(uow, program_id=event.program_id, pair_id=event.pair_id)
    summary = f"charter: every {event.cadence_days} days, {event.session_minutes} min"
    writes.add_entry(uow, event, event.pair_id, "charter", summary, content=event.norms)
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)


async def on_goal_set(event: GoalSet, uow: UnitOfWork) -> None:
    """The goal goes on the timeline (its title is the pair's own words)."""
    await writes.pair_or_raise(uow, program_id=event.program_id, pair_id=event.pair_id)
    writes.add_entry(uow, event, event.pair_id, "goal", "goal set", content=event.title)
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)


async def on_milestone_reached(event: MilestoneReached, uow: UnitOfWork) -> None:
    """Counts the milestone for the pair and the program."""
    pair = await writes.pair_or_raise(uow, program_id=event.program_id, pair_id=event.pair_id)
    pair.milestones += 1
    writes.add_to(uow, event.program_id, "milestones")
    source = f" (from {event.source})" if event.source else ""
    writes.add_entry(
        uow, event, event.pair_id, "milestone", f"milestone reached{source}", content=event.title
    )
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)


async def on_opportunity_offered(event: OpportunityOffered, uow: UnitOfWork) -> None:
    """Counts the opportunity for the person's groups (equity)."""
    person = await writes.participant_or_raise(
        uow, program_id=event.program_id, participant_id=event.participant_id
    )
    kind = opportunity_kind(event.kind)
    writes.add_to(uow, event.program_id, f"opportunities.{kind}")
    writes.add_for_groups(uow, person, f"opportunities.{kind}")
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)


async def on_feedback_given(event: FeedbackGiven, uow: UnitOfWork) -> None:
    """Feedback each way, and the fit rating it carries."""
    pair = await writes.pair_or_raise(uow, program_id=event.program_id, pair_id=event.pair_id)
    if event.from_id == pair.mentor_id:
        pair.feedback_from_mentor += 1
        direction = "mentor_to_mentee"
    else:
        pair.feedback_from_mentee += 1
        direction = "mentee_to_mentor"
    pair.fit_rating_sum += event.rating
    pair.fit_rating_count += 1
    pair.last_contact_at = (
        max(utc(pair.last_contact_at), event.occurred_at)
        if pair.last_contact_at
        else event.occurred_at
    )
    writes.add_to(uow, event.program_id, f"feedback.{direction}")
    writes.add_entry(
        uow,
        event,
        event.pair_id,
        "feedback",
        f"feedback {direction.replace('_', ' ')}",
        scores={"rating": event.rating},
        content=event.comment,
    )
    await writes.refresh_health(uow, pair, at=event.occurred_at)
    await writes.arm_contact_check(uow, pair)
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)


async def on_assessment_submitted(event: AssessmentSubmitted, uow: UnitOfWork) -> None:
    """Adds the scores to the cohort's month (relevance, impact, satisfaction, fairness...)."""
    person = await writes.participant_or_raise(
        uow, program_id=event.program_id, participant_id=event.participant_id
    )
    writes.add_assessment(
        uow,
        program_id=event.program_id,
        cohort=person.cohort or writes.NO_COHORT,
        period=writes.month(event.occurred_at),
        scores=event.scores,
    )
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)
