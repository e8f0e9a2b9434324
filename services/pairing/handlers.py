"""pairing's event handlers: when X happens, do Y."""

from __future__ import annotations

import uuid
from typing import Any

from services.pairing import store
from services.pairing.matching import Profile, propose_pairs
from shared.consumer import Subscription, UnknownReference
from shared.events import (
    MatchingCompleted,
    MatchingRequested,
    PairFormed,
    ParticipantLeft,
    ParticipantRegistered,
    ParticipantTimezoneChanged,
    ParticipantUpdated,
    Role,
)
from shared.outbox import UnitOfWork
from shared.worktime import Availability


def _profile(row: store.Participant) -> Profile:
    return Profile(
        participant_id=row.participant_id,
        availability=Availability.from_json(row.timezone, row.working_hours),
        languages=tuple(row.languages),
        skills_offered=frozenset(s.lower() for s in row.skills_offered),
        skills_sought=frozenset(s.lower() for s in row.skills_sought),
        manager_id=row.manager_id,
        capacity=row.capacity,
    )


async def on_participant_registered(event: ParticipantRegistered, uow: UnitOfWork) -> None:
    """Keeps the matching profile (a re-registration replaces it)."""
    row = await store.get_participant(
        uow.session, program_id=event.program_id, participant_id=event.participant_id
    )
    if row is None:
        row = store.Participant(program_id=event.program_id, participant_id=event.participant_id)
        uow.session.add(row)
    row.role = event.role.value
    row.timezone = event.timezone
    row.working_hours = [h.model_dump(mode="json") for h in event.working_hours]
    row.languages = list(event.languages)
    row.skills_offered = list(event.skills_offered)
    row.skills_sought = list(event.skills_sought)
    row.capacity = event.capacity or 0
    row.department = event.department
    row.manager_id = event.manager_id
    row.active = True
    row.registered_at = event.occurred_at


async def _known(uow: UnitOfWork, program_id: str, participant_id: str) -> store.Participant:
    row = await store.get_participant(
        uow.session, program_id=program_id, participant_id=participant_id
    )
    if row is None:
        raise UnknownReference(
            f"participant {participant_id!r} of program {program_id!r} was never registered; "
            "publish participant.registered first"
        )
    return row


async def on_participant_updated(event: ParticipantUpdated, uow: UnitOfWork) -> None:
    """Applies the changed profile fields."""
    row = await _known(uow, event.program_id, event.participant_id)
    for name in ("languages", "skills_offered", "skills_sought", "department", "manager_id"):
        value = getattr(event, name)
        if value is not None:
            setattr(row, name, list(value) if isinstance(value, list) else value)
    if event.capacity is not None:
        row.capacity = event.capacity


async def on_timezone_changed(event: ParticipantTimezoneChanged, uow: UnitOfWork) -> None:
    """Matches from now on use the new zone (and hours)."""
    row = await _known(uow, event.program_id, event.participant_id)
    row.timezone = event.new_timezone
    if event.working_hours is not None:
        row.working_hours = [h.model_dump(mode="json") for h in event.working_hours]


async def on_participant_left(event: ParticipantLeft, uow: UnitOfWork) -> None:
    """A participant who left is not matched again."""
    row = await _known(uow, event.program_id, event.participant_id)
    row.active = False


async def on_matching_requested(event: MatchingRequested, uow: UnitOfWork) -> None:
    """Pairs the program's unpaired mentees and announces each pair and the round's outcome."""
    session, program = uow.session, event.program_id
    if await store.get_round(session, program_id=program, round_id=event.round_id):
        return  # the round ran already; a second request for it changes nothing
    if await store.count_participants(session, program_id=program) == 0:
        raise UnknownReference(f"program {program!r} has no registered participants")
    pairs = await store.active_pairs(session, program_id=program)
    paired = {p.mentee_id for p in pairs}
    load: dict[str, int] = {}
    for p in pairs:
        load[p.mentor_id] = load.get(p.mentor_id, 0) + 1
    mentors = await store.active_participants(session, program_id=program, role=Role.MENTOR)
    mentees = await store.active_participants(session, program_id=program, role=Role.MENTEE)
    result = propose_pairs(
        [_profile(m) for m in mentors],
        [_profile(m) for m in mentees if m.participant_id not in paired],
        current_load=load,
        week_of=uow.clock.now().date(),
    )
    for proposal in result.pairs:
        pair_id = str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"{program}/{event.round_id}/{proposal.mentee_id}")
        )
        session.add(
            store.Pair(
                pair_id=pair_id,
                program_id=program,
                round_id=event.round_id,
                mentor_id=proposal.mentor_id,
                mentee_id=proposal.mentee_id,
                language=proposal.language,
                status="active",
                formed_at=uow.clock.now(),
            )
        )
        uow.emit(
            PairFormed(
                program_id=program,
                occurred_at=uow.clock.now(),
                pair_id=pair_id,
                round_id=event.round_id,
                mentor_id=proposal.mentor_id,
                mentee_id=proposal.mentee_id,
                language=proposal.language,
                reasons=list(proposal.reasons),
            )
        )
    session.add(
        store.MatchingRound(
            program_id=program,
            round_id=event.round_id,
            completed_at=uow.clock.now(),
            pairs_formed=len(result.pairs),
        )
    )
    uow.emit(
        MatchingCompleted(
            program_id=program,
            occurred_at=uow.clock.now(),
            round_id=event.round_id,
            pairs_formed=len(result.pairs),
            unmatched_mentees=len(result.unmatched_mentee_ids),
            unmatched_mentee_ids=result.unmatched_mentee_ids[:100],
        )
    )


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
    Subscription(MatchingRequested, on_matching_requested, after=PROFILE_EVENTS),
]
