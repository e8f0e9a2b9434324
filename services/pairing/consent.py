"""Consent: a proposed pair forms once both people accept; a decline or an expired proposal frees
the mentor's slot and re-matches that mentee alone with the best remaining mentor, so every other
pair stays as it is. Off unless the program asks for it (MENTORSHIP_PAIRING_CONSENT_*)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from services.pairing import rounds, store
from shared.events import PairAccepted, PairDeclined, PairEnded, PairFormed, PairProposed, Role
from shared.events.pairs import PairExpired
from shared.settings import Settings
from shared.timers import Arm, Due, TimerHandler, cancel, schedule_many
from shared.unit_of_work import UnitOfWork

PROPOSAL_EXPIRY = "proposal.expiry"
ACCEPTED, DECLINED = "accepted", "declined"


def required(settings: Settings, program_id: str) -> bool:
    """Whether the program's rounds propose pairs instead of forming them at once."""
    return settings.pairing_consent_by_program.get(program_id, settings.pairing_consent_required)


def deadline(settings: Settings, program_id: str, now: dt.datetime) -> dt.datetime | None:
    """Until when a proposal made now waits for answers; None when the program asks no consent."""
    if not required(settings, program_id):
        return None
    return now + dt.timedelta(hours=settings.pairing_proposal_hours)


async def arm_expiry(uow: UnitOfWork, program_id: str, pairs: Iterable[rounds.NewPair]) -> None:
    """One durable timer per proposal, due at its deadline (one statement for a round)."""
    arms = [
        Arm(program_id, PROPOSAL_EXPIRY, pair.pair_id, pair.expires_at)
        for pair in pairs
        if pair.status == rounds.PROPOSED and pair.expires_at is not None
    ]
    await schedule_many(uow.session, store.timers, arms)


@dataclass(frozen=True)
class Reply:
    """What the person who answered is told, with the HTTP status it goes with."""

    status: int
    message: str


ALREADY = {
    rounds.ACTIVE: "You both accepted already: this pair is formed.",
    rounds.PAUSED: "This pair is formed (and paused at the moment).",
    rounds.ENDED: "This pair has ended.",
    rounds.DECLINED: "This proposal was declined; you may receive a new one.",
    rounds.EXPIRED: "This proposal expired before both answers came; you may receive a new one.",
}


async def answer(
    uow: UnitOfWork,
    *,
    program_id: str,
    pair_id: str,
    participant_id: str,
    accept: bool,
    reason: str | None = None,
) -> Reply:
    """Records one person's answer: pair.accepted (both: pair.formed) or pair.declined."""
    pair = await store.pair_for_update(uow.session, program_id=program_id, pair_id=pair_id)
    if pair is None:
        return Reply(404, "This proposal does not exist (any more).")
    role = {pair.mentor_id: "mentor", pair.mentee_id: "mentee"}.get(participant_id)
    if role is None:
        return Reply(403, "This link is for another proposal.")
    given = ACCEPTED if accept else DECLINED
    if pair.status != rounds.PROPOSED:
        if getattr(pair, f"{role}_answer") == given:
            return Reply(200, f"Your answer ({given}) was recorded already. {ALREADY[pair.status]}")
        return Reply(409, ALREADY.get(pair.status, "This proposal is closed."))
    setattr(pair, f"{role}_answer", given)
    now = uow.clock.now()
    if not accept:
        uow.emit(
            PairDeclined(
                program_id=program_id, occurred_at=now, pair_id=pair_id,
                participant_id=participant_id, reason=reason,
            )
        )  # fmt: skip
        await close(uow, pair, rounds.DECLINED)
        return Reply(200, "Thank you: your answer was recorded. We look for another match.")
    uow.emit(
        PairAccepted(
            program_id=program_id, occurred_at=now, pair_id=pair_id, participant_id=participant_id
        )
    )
    if pair.mentor_answer == pair.mentee_answer == ACCEPTED:
        await form(uow, pair)
        return Reply(200, "Thank you: you both accepted. Your first session is being planned.")
    return Reply(200, "Thank you: your answer was recorded. We are waiting for the other person.")


async def form(uow: UnitOfWork, pair: store.Pair) -> None:
    """Both accepted: the pair is active, announced by pair.formed."""
    pair.status = rounds.ACTIVE
    await cancel(
        uow.session, store.timers, program_id=pair.program_id, kind=PROPOSAL_EXPIRY,
        key=pair.pair_id,
    )  # fmt: skip
    uow.emit(
        PairFormed(
            program_id=pair.program_id, occurred_at=uow.clock.now(), pair_id=pair.pair_id,
            round_id=pair.round_id, mentor_id=pair.mentor_id, mentee_id=pair.mentee_id,
            language=pair.language, reasons=list(pair.reasons or []),
        )
    )  # fmt: skip


async def close(uow: UnitOfWork, pair: store.Pair, status: str) -> None:
    """The proposal is declined or expired: its slot is free and its mentee re-matched."""
    pair.status = status
    await cancel(
        uow.session, store.timers, program_id=pair.program_id, kind=PROPOSAL_EXPIRY,
        key=pair.pair_id,
    )  # fmt: skip
    await rematch(uow, pair)  # gives the slot back too, with the new pair's in one lock order


async def end(uow: UnitOfWork, pair: store.Pair) -> None:
    """The pair ended (pair.ended): its slot is free; a proposal's expiry is disarmed."""
    pair.status = rounds.ENDED
    await cancel(
        uow.session, store.timers, program_id=pair.program_id, kind=PROPOSAL_EXPIRY,
        key=pair.pair_id,
    )  # fmt: skip
    await store.free_slot(uow.session, program_id=pair.program_id, mentor_id=pair.mentor_id)


FIT_THRESHOLD = 2  # a first rating of the other at or below this fails the early fit check


async def rate_fit(uow: UnitOfWork, pair: store.Pair, *, rater: str, rating: int) -> None:
    """Keeps each person's first rating of the other; once both rated, a poor fit ends the pair
    (pair.ended) and re-matches the mentee, as a decline would."""
    role = {pair.mentor_id: "mentor", pair.mentee_id: "mentee"}.get(rater)
    if role is None or getattr(pair, f"{role}_fit") is not None or pair.status not in rounds.OPEN:
        return  # not one of the two, rated already, or the pair is closed
    setattr(pair, f"{role}_fit", rating)
    if pair.mentor_fit is None or pair.mentee_fit is None:
        return
    if min(pair.mentor_fit, pair.mentee_fit) > FIT_THRESHOLD:
        return
    uow.emit(
        PairEnded(
            program_id=pair.program_id, occurred_at=uow.clock.now(), pair_id=pair.pair_id,
            reason=f"early fit check: rated {pair.mentor_fit} by the mentor and "
            f"{pair.mentee_fit} by the mentee",
        )
    )  # fmt: skip
    pair.status = rounds.ENDED
    await rematch(uow, pair)


def rematch_id(closed: store.Pair) -> str:
    """The re-match of a closed proposal has one id: a retry proposes the same pair again."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{closed.program_id}/{closed.pair_id}/rematch"))


async def rematch(uow: UnitOfWork, closed: store.Pair) -> None:
    """Gives the closed pair's slot back and proposes its mentee to the best mentor with a free
    slot, if any.

    Only this mentee is matched, against the mentors' remaining capacity: no other pair moves.
    With nobody left, the mentee waits for the next round.
    """
    session, program = uow.session, closed.program_id
    row = await store.participant(session, program_id=program, participant_id=closed.mentee_id)
    if row is None or not row.active:
        await store.free_slot(session, program_id=program, mentor_id=closed.mentor_id)
        return
    await session.flush()  # the closed pair counts as closed below
    standing = rounds.Standing(
        mentors=await store.active_profiles(session, program_id=program, role=Role.MENTOR),
        mentees=(store.profile(row),),
        pairings=await store.active_pairings(session, program_id=program),
        week_of=uow.clock.now().date(),
        closed=await store.closed_pairings(session, program_id=program),
    )
    result = await uow.cpu.run(rounds.match, standing)
    if not result.pairs:
        await store.free_slot(session, program_id=program, mentor_id=closed.mentor_id)
        return
    [proposal] = result.pairs
    now = uow.clock.now()
    expires = deadline(uow.settings, program, now)  # None: formed at once, without consent
    pair = rounds.new_pair(rematch_id(closed), proposal, proposal_expires_at=expires)
    await store.change_slots(
        session, program_id=program, take=[pair.mentor_id], free=[closed.mentor_id]
    )
    store.add_pair(session, program_id=program, round_id=closed.round_id, pair=pair, now=now)
    await arm_expiry(uow, program, [pair])
    announced = rounds.announce(program, closed.round_id, pair, proposal, now)
    if isinstance(announced, PairProposed):
        announced = announced.model_copy(update={"replaces_pair_id": closed.pair_id})
    uow.emit(announced)


async def on_proposal_expired(item: Due, uow: UnitOfWork) -> None:
    """Nobody (or only one) accepted in time: pair.expired naming the silent ones, then
    re-match."""
    pair = await store.pair_for_update(uow.session, program_id=item.program_id, pair_id=item.key)
    if pair is None or pair.status != rounds.PROPOSED:
        return  # answered meanwhile
    answers = ((pair.mentor_id, pair.mentor_answer), (pair.mentee_id, pair.mentee_answer))
    uow.emit(
        PairExpired(
            program_id=pair.program_id, occurred_at=uow.clock.now(), pair_id=pair.pair_id,
            mentor_id=pair.mentor_id, mentee_id=pair.mentee_id,
            silent=[person for person, given in answers if given != ACCEPTED],
            reason=f"no answer within {uow.settings.pairing_proposal_hours:g} hours",
        )
    )  # fmt: skip
    await close(uow, pair, rounds.EXPIRED)


TIMERS = {PROPOSAL_EXPIRY: TimerHandler(done=on_proposal_expired)}
