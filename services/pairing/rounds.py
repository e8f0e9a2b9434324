"""What a matching round forms and announces: who is still to pair, pair ids, rows and events."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from dataclasses import dataclass

from services.pairing.matching import MatchResult, Profile, Proposal, propose_pairs
from shared.events import Event, MatchingCompleted, PairFormed, PairProposed

PROPOSED = "proposed"  # waiting for both people's consent; holds the mentor's slot
ACTIVE = "active"
PAUSED = "paused"
ENDED = "ended"
DECLINED = "declined"
EXPIRED = "expired"  # nobody answered the proposal in time
OPEN = (PROPOSED, ACTIVE, PAUSED)  # a mentee has at most one open pair; each takes a slot
CLOSED = (ENDED, DECLINED, EXPIRED)  # never formed or proposed again
# matching.completed stays bounded: it counts every unmatched mentee and names at most these many
UNMATCHED_SAMPLE = 100


@dataclass(frozen=True)
class Standing:
    """The program as a round finds it; plain data, so it can cross into a worker process."""

    mentors: tuple[Profile, ...]
    mentees: tuple[Profile, ...]
    pairings: tuple[tuple[str, str], ...]  # (mentor_id, mentee_id) of every open pair
    week_of: dt.date
    closed: tuple[tuple[str, str], ...] = ()  # (mentor_id, mentee_id) ended, declined, expired
    waitlisted: tuple[str, ...] = ()  # mentees the last round left unmatched: served first


def match(standing: Standing) -> MatchResult:
    """Proposes mentors for the mentees not paired yet (CPU-heavy: run it in the CPU pool)."""
    paired = {mentee_id for _, mentee_id in standing.pairings}
    return propose_pairs(
        standing.mentors,
        [m for m in standing.mentees if m.participant_id not in paired],
        current_load=Counter(mentor_id for mentor_id, _ in standing.pairings),
        week_of=standing.week_of,
        ended=standing.closed,
        waitlisted=standing.waitlisted,
    )


def pair_id(program_id: str, round_id: str, mentee_id: str) -> str:
    """The pair's id: the same round forms the same id again, and no other program shares it."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{program_id}/{round_id}/{mentee_id}"))


@dataclass(frozen=True)
class NewPair:
    """A pair a round formed or proposed, as it is stored."""

    pair_id: str
    mentor_id: str
    mentee_id: str
    language: str
    status: str
    reasons: tuple[str, ...] = ()
    expires_at: dt.datetime | None = None  # of a proposal


@dataclass(frozen=True)
class RoundOutcome:
    """What a round stores (its record and pairs) and what it emits, in order."""

    program_id: str
    round_id: str
    completed_at: dt.datetime
    pairs: tuple[NewPair, ...]
    events: tuple[Event, ...]
    unmatched_mentee_ids: tuple[str, ...] = ()  # every one, for the next round's waitlist


def announce(
    program_id: str, round_id: str, pair: NewPair, proposal: Proposal, now: dt.datetime
) -> Event:
    """pair.formed for a pair formed at once; pair.proposed (why, until when) for a proposal."""
    if pair.status == PROPOSED:
        return PairProposed(
            program_id=program_id,
            occurred_at=now,
            pair_id=pair.pair_id,
            round_id=round_id,
            mentor_id=pair.mentor_id,
            mentee_id=pair.mentee_id,
            score=proposal.score,
            reasons=list(proposal.reasons),
            language=pair.language,
            expires_at=pair.expires_at,
        )
    return PairFormed(
        program_id=program_id,
        occurred_at=now,
        pair_id=pair.pair_id,
        round_id=round_id,
        mentor_id=pair.mentor_id,
        mentee_id=pair.mentee_id,
        language=pair.language,
        reasons=list(proposal.reasons),
    )


def new_pair(
    pair_id: str, proposal: Proposal, *, proposal_expires_at: dt.datetime | None
) -> NewPair:
    """An active pair, or (when consent is asked) a proposal until `proposal_expires_at`."""
    return NewPair(
        pair_id=pair_id,
        mentor_id=proposal.mentor_id,
        mentee_id=proposal.mentee_id,
        language=proposal.language,
        status=ACTIVE if proposal_expires_at is None else PROPOSED,
        reasons=proposal.reasons,
        expires_at=proposal_expires_at,
    )


def outcome(
    *,
    program_id: str,
    round_id: str,
    result: MatchResult,
    now: dt.datetime,
    proposal_expires_at: dt.datetime | None = None,
    dry_run: bool = False,
) -> RoundOutcome:
    """Each match becomes an active pair announced by pair.formed, or (consent asked) a proposal
    announced by pair.proposed; matching.completed last. A dry run forms and announces no pair."""
    pairs = tuple(
        new_pair(
            pair_id(program_id, round_id, p.mentee_id), p, proposal_expires_at=proposal_expires_at
        )
        for p in result.pairs
    )
    announced = [
        announce(program_id, round_id, pair, proposal, now)
        for pair, proposal in zip(pairs, result.pairs, strict=True)
    ]
    completed = MatchingCompleted(
        program_id=program_id,
        occurred_at=now,
        round_id=round_id,
        pairs_formed=len(pairs),
        unmatched_mentees=len(result.unmatched_mentee_ids),
        unmatched_mentee_ids=result.unmatched_mentee_ids[:UNMATCHED_SAMPLE],
        dry_run=dry_run,
    )
    if dry_run:
        return RoundOutcome(program_id, round_id, now, (), (completed,))
    return RoundOutcome(
        program_id, round_id, now, pairs, (*announced, completed),
        unmatched_mentee_ids=tuple(result.unmatched_mentee_ids),
    )  # fmt: skip
