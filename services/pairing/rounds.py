"""What a matching round forms and announces: who is still to pair, pair ids, rows and events."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import TypeVar

from pydantic import ValidationError

from services.pairing.matching import (
    MatchResult,
    Objective,
    Profile,
    Proposal,
    Rules,
    Unmatched,
    propose_pairs,
)
from shared.events import Event, MatchingCompleted, PairFormed, PairProposed
from shared.events.pairs import (
    MenteeUnmatched,
    RoundRules,
    RoundWeights,
    RulesSource,
    UnmatchedReason,
)

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
T = TypeVar("T")


@dataclass(frozen=True)
class Standing:
    """The program as a round finds it; plain data, so it can cross into a worker process."""

    mentors: tuple[Profile, ...]
    mentees: tuple[Profile, ...]
    pairings: tuple[tuple[str, str], ...]  # (mentor_id, mentee_id) of every open pair
    week_of: dt.date
    closed: tuple[tuple[str, str], ...] = ()  # (mentor_id, mentee_id) ended, declined, expired
    waitlisted: tuple[str, ...] = ()  # mentees the last round left unmatched: served first
    rules: Rules = field(default_factory=Rules)


def rules_of(asked: RoundRules | None) -> Rules:
    """The matcher's rules for a round: what the request sets, the defaults for the rest."""
    if asked is None:
        return Rules()
    base = Rules()
    w = asked.weights
    weights = (
        base.weights
        if w is None
        else replace(base.weights, **{k: v for k, v in w.model_dump().items() if v is not None})
    )
    return Rules(
        objective=base.objective if asked.objective is None else Objective(asked.objective),
        weights=weights,
        min_weekly_minutes=_or(asked.min_weekly_minutes, base.min_weekly_minutes),
        min_stretch_minutes=_or(asked.min_stretch_minutes, base.min_stretch_minutes),
        hours_target_minutes=base.hours_target_minutes,
        separate_departments=_or(asked.separate_departments, base.separate_departments),
        seniority_gap=_or(asked.seniority_gap, base.seniority_gap),
    )


def _or(value: T | None, default: T) -> T:
    return default if value is None else value


def chosen_rules(asked: RoundRules | None, stored: RoundRules | None) -> tuple[Rules, RulesSource]:
    """A round's rules and where they come from: the request's when it brings any (they replace
    the program's whole; what they leave unset is the default), else the program's stored
    rules, else the defaults."""
    if asked is not None:
        return rules_of(asked), "request"
    if stored is not None:
        return rules_of(stored), "program"
    return Rules(), "default"


def rule_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """Why rules do not validate, in a coordinator's words: (the rule, e.g. weights.skills, or
    '' for the whole; what is wrong and what to write instead)."""
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        kind, message = error["type"], error["msg"].removeprefix("Value error, ")
        if kind == "extra_forbidden":
            known = RoundWeights if where.startswith("weights.") else RoundRules
            message = f"not a rule here; use one of: {', '.join(known.model_fields)}"
        elif kind == "json_invalid":
            said = error.get("ctx", {}).get("error", message)
            message = f"not JSON ({said}); write one JSON object of rules"
        elif kind in ("model_type", "dict_type", "model_attributes_type"):
            message = 'write a JSON object of rules, e.g. {"min_weekly_minutes": 90}'
        elif "input" in error:
            message = f"{message} (got {json.dumps(error['input'], default=str)})"
        problems.append((where, message))
    return problems


def as_round_rules(rules: Rules) -> RoundRules:
    """The matcher's rules with every field set, in the shape a coordinator reads and writes."""
    w = rules.weights
    return RoundRules(
        objective=rules.objective.value,
        min_weekly_minutes=rules.min_weekly_minutes,
        min_stretch_minutes=rules.min_stretch_minutes,
        separate_departments=rules.separate_departments,
        seniority_gap=rules.seniority_gap,
        weights=RoundWeights.model_validate(asdict(w)),
    )


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
        rules=standing.rules,
    )


def timed_match(standing: Standing) -> tuple[MatchResult, float]:
    """`match` for a round, and the seconds it took inside the worker (the rest of the pool
    call is moving the standing in and the result out).

    The result comes back without what a round does not keep (each pair's runner-ups, score
    components and shared windows; its reasons and score name them): at 10,000 pairs that was
    4 MB and about 0.6 s of pickling, against 2.4 MB and 0.05 s.
    """
    started = time.perf_counter()
    result = match(standing)
    seconds = time.perf_counter() - started
    lean = [replace(p, components=(), alternatives=(), shared=()) for p in result.pairs]
    return replace(result, pairs=lean), seconds


def unproven(result: MatchResult) -> str | None:
    """What to say when the matcher stopped before proving its pairs optimal (None: proven)."""
    proof = result.certificate
    if proof is None or proof.primal >= proof.bound:
        return None
    return (
        f"is not proven optimal: the matcher stopped after {proof.iterations} iterations "
        f"(objective {proof.primal}, bound {proof.bound}, gap {proof.gap:.4%}); the pairs "
        "stand, but please report the program's shape (sizes, zones, skills) as a matcher issue"
    )


@dataclass
class Timeline:
    """Seconds per phase of one round, in order: the round's log line says where time goes."""

    started_at: float = field(default_factory=time.time)  # wall clock, for other processes
    phases: dict[str, float] = field(default_factory=dict)
    _last: float = field(default_factory=time.perf_counter, repr=False)

    def mark(self, phase: str) -> None:
        """The phase that just ended; its seconds are from the previous mark."""
        now = time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self._last
        self._last = now

    def add(self, phase: str, seconds: float) -> None:
        """A phase measured elsewhere (inside the worker, say), not moving the last mark."""
        self.phases[phase] = self.phases.get(phase, 0.0) + seconds

    def json(self) -> str:
        """The timeline as one JSON object (started_at, ended_at wall clock; phases)."""
        return json.dumps(
            {
                "started_at": round(self.started_at, 4),
                "ended_at": round(time.time(), 4),
                "phases": {name: round(seconds, 4) for name, seconds in self.phases.items()},
            }
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
    unmatched: tuple[Unmatched, ...] = ()  # each with why, kept for the coordinator


# the matcher's reasons (explain.py) start with what kind they are
REASON_CODES: tuple[tuple[str, UnmatchedReason], ...] = (
    ("no mentor shares a language", "no_language"),
    ("no shared time", "no_shared_time"),
    ("every mentor who fits is ruled out", "ruled_out"),
)


def reason_code(detail: str) -> UnmatchedReason:
    """The kind of reason a matcher's explanation gives (capacity when it names no other)."""
    for start, code in REASON_CODES:
        if detail.startswith(start):
            return code
    return "capacity"


def unmatched_event(
    program_id: str, round_id: str, unmatched: Unmatched, now: dt.datetime
) -> MenteeUnmatched:
    """mentee.unmatched: who this round could not pair, and why."""
    return MenteeUnmatched(
        program_id=program_id,
        occurred_at=now,
        round_id=round_id,
        participant_id=unmatched.mentee_id,
        reason=reason_code(unmatched.reason),
        detail=unmatched.reason[:500],
    )


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
    rules_source: RulesSource | None = None,
) -> RoundOutcome:
    """Each match becomes an active pair announced by pair.formed, or (consent asked) a proposal
    announced by pair.proposed; each unmatched mentee with why (mentee.unmatched);
    matching.completed last. A dry run forms and announces no pair and no unmatched mentee."""
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
        rules_source=rules_source,
    )
    if dry_run:
        return RoundOutcome(program_id, round_id, now, (), (completed,))
    unmatched = tuple(sorted(result.unmatched, key=lambda u: u.mentee_id))
    waiting = [unmatched_event(program_id, round_id, u, now) for u in unmatched]
    return RoundOutcome(
        program_id, round_id, now, pairs, (*announced, *waiting, completed),
        unmatched_mentee_ids=tuple(result.unmatched_mentee_ids), unmatched=unmatched,
    )  # fmt: skip
