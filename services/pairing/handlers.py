"""pairing's event handlers: when X happens, do Y."""

from __future__ import annotations

import logging
from typing import Any

from services.pairing import consent, profiles, relations, rounds, store
from shared.consumer import Subscription
from shared.events import (
    CharterAgreed,
    FeedbackGiven,
    GoalReplanned,
    GoalSet,
    MatchingRequested,
    MilestoneReached,
    OpportunityOffered,
    PairEnded,
    PairPaused,
    PairResumed,
    ParticipantLeft,
    ParticipantRegistered,
    ParticipantTimezoneChanged,
    ParticipantUpdated,
    Role,
)
from shared.unit_of_work import UnitOfWork

log = logging.getLogger("mentorship.pairing.rounds")


async def on_participant_registered(event: ParticipantRegistered, uow: UnitOfWork) -> None:
    """Keeps the matching profile (a re-registration replaces it)."""
    store.register_participant(
        uow,
        program_id=event.program_id,
        participant_id=event.participant_id,
        profile=profiles.registered(event),
    )


async def on_participant_updated(event: ParticipantUpdated, uow: UnitOfWork) -> None:
    """Applies the changed profile fields."""
    row = await store.participant_or_raise(
        uow.session, program_id=event.program_id, participant_id=event.participant_id
    )
    store.change_profile(row, profiles.updated(event))


async def on_timezone_changed(event: ParticipantTimezoneChanged, uow: UnitOfWork) -> None:
    """Matches from now on use the new zone (and hours)."""
    row = await store.participant_or_raise(
        uow.session, program_id=event.program_id, participant_id=event.participant_id
    )
    store.change_profile(row, profiles.timezone_changed(event))


async def on_participant_left(event: ParticipantLeft, uow: UnitOfWork) -> None:
    """A participant who left is not matched again."""
    row = await store.participant_or_raise(
        uow.session, program_id=event.program_id, participant_id=event.participant_id
    )
    store.change_profile(row, profiles.left(event))


async def on_matching_requested(event: MatchingRequested, uow: UnitOfWork) -> None:
    """Pairs (or, with consent, proposes) the program's unpaired mentees and announces each pair
    and the round's outcome; a dry run announces only the outcome and keeps nothing. The rules
    are the request's, else the program's stored ones, else the defaults (matching.completed's
    rules_source says which).

    Logs one line per round with the seconds of each phase (`timeline {...}`, JSON)."""
    timeline = rounds.Timeline()
    session, program = uow.session, event.program_id
    if await store.get_round(session, program_id=program, round_id=event.round_id):
        return  # the round ran already; a second request for it changes nothing
    await store.ensure_has_participants(session, program_id=program)
    stored = store.rules_of_row(await store.program_rules(session, program_id=program))
    rules, source = rounds.chosen_rules(event.rules, stored)
    standing = rounds.Standing(
        mentors=await store.active_profiles(session, program_id=program, role=Role.MENTOR),
        mentees=await store.active_profiles(session, program_id=program, role=Role.MENTEE),
        pairings=await store.active_pairings(session, program_id=program),
        week_of=uow.clock.now().date(),
        closed=await store.closed_pairings(session, program_id=program),
        waitlisted=await store.waitlist(session, program_id=program),
        rules=rules,
    )
    timeline.mark("load")
    # matching is CPU-bound: in the pool, the loop keeps acking, relaying and answering health
    result, solving = await uow.cpu.run(rounds.timed_match, standing)
    timeline.mark("pool")
    timeline.add("match", solving)
    now = uow.clock.now()
    outcome = rounds.outcome(
        program_id=program, round_id=event.round_id, result=result, now=now,
        proposal_expires_at=consent.deadline(uow.settings, program, now), dry_run=event.dry_run,
        rules_source=source,
    )  # fmt: skip
    timeline.mark("events")
    if not event.dry_run:
        await store.add_round(session, outcome)  # a mentee paired by a concurrent round fails
        timeline.mark("store")
        await consent.arm_expiry(uow, program, outcome.pairs)
        timeline.mark("timers")
    for announced in outcome.events:
        uow.emit(announced)
    timeline.mark("emit")
    log.info(
        "round %s of %s: %d pairs, %d unmatched%s, %s rules; timeline %s",
        event.round_id, program, len(result.pairs), len(result.unmatched_mentee_ids),
        " (dry run)" if event.dry_run else "", source, timeline.json(),
    )  # fmt: skip
    if (unproven := rounds.unproven(result)) is not None:
        log.warning("round %s of %s %s", event.round_id, program, unproven)


async def on_pair_paused(event: PairPaused, uow: UnitOfWork) -> None:
    """A paused pair keeps its mentor's slot and its mentee (it is still open)."""
    pair = await store.pair_or_raise(
        uow.session, program_id=event.program_id, pair_id=event.pair_id
    )
    if pair.status == rounds.ACTIVE:
        pair.status = rounds.PAUSED


async def on_pair_resumed(event: PairResumed, uow: UnitOfWork) -> None:
    """The paused pair is active again."""
    pair = await store.pair_or_raise(
        uow.session, program_id=event.program_id, pair_id=event.pair_id
    )
    if pair.status == rounds.PAUSED:
        pair.status = rounds.ACTIVE


async def on_pair_ended(event: PairEnded, uow: UnitOfWork) -> None:
    """An ended pair frees its mentor's slot and its mentee for the next round; never again."""
    pair = await store.pair_or_raise(
        uow.session, program_id=event.program_id, pair_id=event.pair_id
    )
    if pair.status in rounds.OPEN:
        await consent.end(uow, pair)


async def on_feedback_given(event: FeedbackGiven, uow: UnitOfWork) -> None:
    """The early fit check: both people's first ratings of each other; a poor fit re-matches."""
    pair = await store.pair_for_update(
        uow.session, program_id=event.program_id, pair_id=event.pair_id
    )
    if pair is not None:  # feedback about a pair pairing never formed is not pairing's
        await consent.rate_fit(uow, pair, rater=event.from_id, rating=event.rating)


def by_program(event: MatchingRequested) -> str:
    """Rounds of one program apply one after another: each sees the pairs the last one formed."""
    return event.program_id


PROFILE_EVENTS = (
    ParticipantRegistered,
    ParticipantUpdated,
    ParticipantTimezoneChanged,
    ParticipantLeft,
)

SUBSCRIPTIONS: list[Subscription[Any]] = [
    Subscription(ParticipantRegistered, on_participant_registered),
    Subscription(ParticipantUpdated, on_participant_updated, after=(ParticipantRegistered,)),
    Subscription(ParticipantTimezoneChanged, on_timezone_changed, after=(ParticipantRegistered,)),
    Subscription(ParticipantLeft, on_participant_left, after=(ParticipantRegistered,)),
    Subscription(MatchingRequested, on_matching_requested, after=PROFILE_EVENTS, key=by_program),
    Subscription(PairPaused, on_pair_paused),
    Subscription(PairResumed, on_pair_resumed, after=(PairPaused,)),
    Subscription(PairEnded, on_pair_ended, after=(PairPaused, PairResumed)),
    Subscription(FeedbackGiven, on_feedback_given, after=(PairEnded,)),
    # the relationship's records, also from outside systems (pairing's own come back unchanged)
    Subscription(CharterAgreed, relations.on_charter_agreed),
    Subscription(GoalSet, relations.on_goal_set),
    Subscription(GoalReplanned, relations.on_goal_replanned, after=(GoalSet,)),
    Subscription(MilestoneReached, relations.on_milestone_reached, after=(GoalSet,)),
    Subscription(
        OpportunityOffered, relations.on_opportunity_offered, after=(ParticipantRegistered,)
    ),
]
