"""pairing's tables and queries; every record is keyed by (program_id, id).

The database keeps the program whole also when two replicas race: a mentee has at most one open
pair (a partial unique index), a mentor's slots are a counter taken by a checked UPDATE in the
round's own transaction, and a (mentor, mentee) pair exists once, so one that ended or was
declined is never formed again. The transaction that loses such a race fails and is retried on
what the winner committed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.pairing.matching import Profile
from services.pairing.profiles import ProfileChange
from services.pairing.rounds import ACTIVE, CLOSED, OPEN, NewPair, RoundOutcome, reason_code
from shared.db import upsert_insert
from shared.errors import UnknownReference
from shared.events.pairs import RoundRules
from shared.outbox import add_delivery_tables
from shared.records import get_or_raise
from shared.timers import add_timer_table
from shared.unit_of_work import UnitOfWork
from shared.worktime import Availability


class Base(DeclarativeBase):
    pass


delivery = add_delivery_tables(Base.metadata)
timers = add_timer_table(Base.metadata)  # proposals' expiry


class Participant(Base):
    __tablename__ = "participants"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    participant_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    role: Mapped[str] = mapped_column(String(10))
    timezone: Mapped[str] = mapped_column(String(64))
    working_hours: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    languages: Mapped[list[str]] = mapped_column(JSON)
    skills_offered: Mapped[list[str]] = mapped_column(JSON)
    skills_sought: Mapped[list[str]] = mapped_column(JSON)
    capacity: Mapped[int] = mapped_column(Integer, default=0)
    department: Mapped[str | None] = mapped_column(String(200), nullable=True)
    manager_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    goals: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    channels: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # preferred
    seniority: Mapped[int | None] = mapped_column(Integer, nullable=True)  # years of experience
    avoid: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # never paired with
    active: Mapped[bool] = mapped_column(default=True)
    registered_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    # a mentor's open pairs, taken with `take_slots` (never more than capacity at that moment)
    active_pairs: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


OPEN_STATUS = text("status IN ('proposed', 'active', 'paused')")


class Pair(Base):
    __tablename__ = "pairs"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    pair_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    round_id: Mapped[str] = mapped_column(String(200))
    mentor_id: Mapped[str] = mapped_column(String(200))
    mentee_id: Mapped[str] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=ACTIVE)
    formed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    reasons: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # a proposal's deadline and each person's answer (accepted, declined) while consent is asked
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    mentor_answer: Mapped[str | None] = mapped_column(String(10), nullable=True)
    mentee_answer: Mapped[str | None] = mapped_column(String(10), nullable=True)
    # the early fit check: each person's first rating of the other (feedback.given), 1-5
    mentor_fit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    mentee_fit: Mapped[int | None] = mapped_column(Integer, nullable=True)

    __table_args__ = (
        UniqueConstraint("program_id", "mentor_id", "mentee_id", name="uq_pairs_once"),
        Index(
            "uq_pairs_open_mentee",
            "program_id",
            "mentee_id",
            unique=True,
            postgresql_where=OPEN_STATUS,
            sqlite_where=OPEN_STATUS,
        ),
    )


class MatchingRound(Base):
    __tablename__ = "matching_rounds"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    round_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    completed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    pairs_formed: Mapped[int] = mapped_column(Integer)
    # the mentees this round left unmatched: the next round serves them first (the waitlist)
    unmatched_mentee_ids: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)


class UnmatchedMentee(Base):
    """A mentee a round left unmatched, and why (for the coordinator)."""

    __tablename__ = "unmatched_mentees"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    round_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    mentee_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    reason: Mapped[str] = mapped_column(String(20))  # mentee.unmatched's reason code
    detail: Mapped[str] = mapped_column(String(500))


class ProgramRules(Base):
    """A program's stored round rules: what a round uses when its request brings none."""

    __tablename__ = "program_rules"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)  # RoundRules, the fields set
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


PAIRS = cast(Table, Pair.__table__)
UNMATCHED = cast(Table, UnmatchedMentee.__table__)
ROUNDS = cast(Table, MatchingRound.__table__)
PROGRAM_RULES = cast(Table, ProgramRules.__table__)


class Charter(Base):
    """A pair's charter: its current version's terms and the version each person agreed to."""

    __tablename__ = "charters"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    pair_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    terms: Mapped[dict[str, Any]] = mapped_column(JSON)
    mentor_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    mentee_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    agreed_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    agreed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class Goal(Base):
    """A pair's goal and its plan at its latest revision (1: as set)."""

    __tablename__ = "goals"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    goal_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    pair_id: Mapped[str] = mapped_column(String(200), index=True)
    title: Mapped[str] = mapped_column(String(500))
    target_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    milestones: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    set_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    replanned_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Milestone(Base):
    """A milestone a pair reached (planned in a goal or not)."""

    __tablename__ = "milestones"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    milestone_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    pair_id: Mapped[str] = mapped_column(String(200), index=True)
    goal_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    title: Mapped[str] = mapped_column(String(500))
    kind: Mapped[str | None] = mapped_column(String(20), nullable=True)
    visibility: Mapped[str] = mapped_column(String(10))
    evidence: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    source: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reached_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class Opportunity(Base):
    """An opportunity offered to a participant (for the equity view)."""

    __tablename__ = "opportunities"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    opportunity_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    participant_id: Mapped[str] = mapped_column(String(200), index=True)
    pair_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    kind: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(500))
    offered_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    offered_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


def register_participant(
    uow: UnitOfWork, *, program_id: str, participant_id: str, profile: ProfileChange
) -> None:
    """Keeps a registration's profile: an insert-or-update written with the batch's others."""
    uow.upsert(
        Participant,
        {"program_id": program_id, "participant_id": participant_id, **profile},
    )


async def participant_or_raise(
    session: AsyncSession, *, program_id: str, participant_id: str
) -> Participant:
    """A registered participant of the program, else UnknownReference or ProgramMismatch."""
    return await get_or_raise(
        session,
        Participant,
        program_id,
        participant_id,
        what=f"participant {participant_id!r}",
        hint="publish participant.registered first",
    )


def change_profile(row: Participant, change: ProfileChange) -> None:
    """Sets the fields the change names and leaves the others."""
    for name, value in change.items():
        setattr(row, name, value)


async def ensure_has_participants(session: AsyncSession, *, program_id: str) -> None:
    """Raises UnknownReference unless the program has registered anyone (even people who left)."""
    anyone = await session.scalar(
        select(Participant.participant_id).where(Participant.program_id == program_id).limit(1)
    )
    if anyone is None:
        raise UnknownReference(
            f"program {program_id!r} has no registered participants; "
            "publish participant.registered first"
        )


class _Profiles:
    """Builds profiles from rows, sharing equal parts (zone and hours, languages, skills).

    A program's 13,000 people have a few hundred distinct availabilities: built once each
    (not parsed per row), and pickled once each when the round's standing crosses into the
    worker process (pickle writes a shared object once).
    """

    def __init__(self) -> None:
        self._availability: dict[tuple[str, str], Availability] = {}
        self._shared: dict[Any, Any] = {}

    def _one(self, value: Any) -> Any:
        return self._shared.setdefault(value, value)

    def __call__(self, row: Any) -> Profile:
        hours = row.working_hours
        key = (row.timezone, hours if isinstance(hours, str) else json.dumps(hours))
        availability = self._availability.get(key)
        if availability is None:
            parsed = json.loads(hours) if isinstance(hours, str) else hours
            availability = Availability.from_json(row.timezone, parsed)
            self._availability[key] = availability
        return Profile(
            participant_id=row.participant_id,
            availability=availability,
            languages=self._one(tuple(_json(row.languages))),
            skills_offered=self._one(frozenset(s.lower() for s in _json(row.skills_offered))),
            skills_sought=self._one(frozenset(s.lower() for s in _json(row.skills_sought))),
            manager_id=row.manager_id,
            capacity=row.capacity,
            department=row.department,
            goals=self._one(frozenset(g.lower() for g in _json(row.goals) or ())),
            channels=self._one(frozenset(_json(row.channels) or ())),
            seniority=row.seniority,
            avoid=frozenset(_json(row.avoid) or ()),
        )


def _json(value: Any) -> Any:
    """A JSON column's value: parsed already (ORM, JSON type), or its text (raw columns)."""
    return json.loads(value) if isinstance(value, str) else value


def profile(row: Participant) -> Profile:
    """The matching profile of a participant's row."""
    return _Profiles()(row)


PROFILE_COLUMNS = (
    Participant.participant_id,
    Participant.timezone,
    # as stored (JSON text): equal hours are parsed once per program, not once per row
    type_coerce(Participant.working_hours, Text).label("working_hours"),
    Participant.languages,
    Participant.skills_offered,
    Participant.skills_sought,
    Participant.manager_id,
    Participant.capacity,
    Participant.department,
    Participant.goals,
    Participant.channels,
    Participant.seniority,
    Participant.avoid,
)


async def active_profiles(
    session: AsyncSession, *, program_id: str, role: str
) -> tuple[Profile, ...]:
    """The matching profiles of the program's active participants of one role, oldest first.

    Columns, not ORM objects: a round reads every profile of the program."""
    rows = await session.execute(
        select(*PROFILE_COLUMNS)
        .where(
            Participant.program_id == program_id,
            Participant.role == role,
            Participant.active.is_(True),
        )
        .order_by(Participant.registered_at, Participant.participant_id)
    )
    build = _Profiles()
    return tuple(build(row) for row in rows)


async def pairings(
    session: AsyncSession, *, program_id: str, statuses: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    """(mentor_id, mentee_id) of the program's pairs in these statuses."""
    rows = await session.execute(
        select(Pair.mentor_id, Pair.mentee_id)
        .where(Pair.program_id == program_id, Pair.status.in_(statuses))
        .order_by(Pair.mentee_id, Pair.mentor_id)
    )
    return tuple((mentor_id, mentee_id) for mentor_id, mentee_id in rows)


async def active_pairings(session: AsyncSession, *, program_id: str) -> tuple[tuple[str, str], ...]:
    """(mentor_id, mentee_id) of the program's open pairs (proposed, active or paused)."""
    return await pairings(session, program_id=program_id, statuses=OPEN)


async def closed_pairings(session: AsyncSession, *, program_id: str) -> tuple[tuple[str, str], ...]:
    """(mentor_id, mentee_id) of the program's pairs that ended, were declined or expired."""
    return await pairings(session, program_id=program_id, statuses=CLOSED)


class SlotTaken(Exception):
    """A mentor's free slot went to another transaction meanwhile (retried on the new state)."""


async def take_slots(session: AsyncSession, *, program_id: str, mentor_ids: list[str]) -> None:
    """Counts new open pairs against their mentors' capacity, or raises SlotTaken."""
    await change_slots(session, program_id=program_id, take=mentor_ids)


async def free_slot(session: AsyncSession, *, program_id: str, mentor_id: str) -> None:
    """Gives a closed pair's slot back to its mentor."""
    await change_slots(session, program_id=program_id, free=[mentor_id])


SLOT_CHUNK = 1000  # mentors per statement (well inside SQLite's and PostgreSQL's limits)


async def change_slots(
    session: AsyncSession,
    *,
    program_id: str,
    take: Sequence[str] = (),
    free: Sequence[str] = (),
) -> None:
    """Takes a slot per mentor in `take` (checked: SlotTaken when none is left) and gives one
    back per mentor in `free`.

    A checked UPDATE per chunk of mentors with the same change (a round of 3,300 mentors: a
    handful of statements, not one per mentor). On PostgreSQL the mentors' rows are first
    locked in one order of ids (`SELECT ... ORDER BY ... FOR UPDATE`), so two transactions never
    deadlock; a concurrent one waits for the rows and its UPDATE then re-checks against the
    committed count, so two transactions never both take the last slot.
    """
    deltas = Counter(take)
    deltas.subtract(Counter(free))
    by_delta: dict[int, list[str]] = {}
    for mentor_id, delta in sorted(deltas.items()):
        if delta:
            by_delta.setdefault(delta, []).append(mentor_id)
    mentors = sorted(m for ids in by_delta.values() for m in ids)
    if len(mentors) > 1 and session.get_bind().dialect.name == "postgresql":
        for chunk in _chunks(mentors):
            await session.execute(
                select(Participant.participant_id)
                .where(Participant.program_id == program_id, Participant.participant_id.in_(chunk))
                .order_by(Participant.participant_id)
                .with_for_update()
            )
    for delta, ids in sorted(by_delta.items()):
        room = (
            Participant.active_pairs + delta <= Participant.capacity
            if delta > 0
            else Participant.active_pairs + delta >= 0
        )
        full: list[str] = []
        for chunk in _chunks(ids):
            changed = await session.scalars(
                update(Participant)
                .where(
                    Participant.program_id == program_id,
                    Participant.participant_id.in_(chunk),
                    room,
                )
                .values(active_pairs=Participant.active_pairs + delta)
                .returning(Participant.participant_id)
                .execution_options(synchronize_session=False)
            )
            if delta > 0:
                full += sorted(set(chunk) - set(changed))
        if full:  # the transaction rolls back: no slot is taken
            more = f" and {len(full) - 1} more" if len(full) > 1 else ""
            raise SlotTaken(
                f"mentor {full[0]!r}{more} of program {program_id!r} has no {delta} free "
                "slot(s) left; the round is retried on the pairs formed meanwhile"
            )


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[i : i + SLOT_CHUNK] for i in range(0, len(ids), SLOT_CHUNK)]


async def get_round(
    session: AsyncSession, *, program_id: str, round_id: str
) -> MatchingRound | None:
    """A completed matching round, if it ran already."""
    return await session.get(MatchingRound, (program_id, round_id))


async def add_round(session: AsyncSession, outcome: RoundOutcome) -> None:
    """Stores a completed round and the pairs it formed, their mentors' slots taken.

    Core INSERTs, executed at once (several rows per statement), not ORM objects flushed later:
    a mentee paired by a concurrent round fails here, on the open-pair index.
    """
    await take_slots(
        session,
        program_id=outcome.program_id,
        mentor_ids=[pair.mentor_id for pair in outcome.pairs],
    )
    rows = [
        _pair_row(outcome.program_id, outcome.round_id, pair, outcome.completed_at)
        for pair in outcome.pairs
    ]
    if rows:
        await session.execute(insert(PAIRS), rows)
    waiting = [
        {
            "program_id": outcome.program_id,
            "round_id": outcome.round_id,
            "mentee_id": u.mentee_id,
            "reason": reason_code(u.reason),
            "detail": u.reason[:500],
        }
        for u in outcome.unmatched
    ]
    if waiting:
        await session.execute(insert(UNMATCHED), waiting)
    await session.execute(
        insert(ROUNDS),
        [
            {
                "program_id": outcome.program_id,
                "round_id": outcome.round_id,
                "completed_at": outcome.completed_at,
                "pairs_formed": len(outcome.pairs),
                "unmatched_mentee_ids": list(outcome.unmatched_mentee_ids),
            }
        ],
    )


def _pair_row(program_id: str, round_id: str, pair: NewPair, now: dt.datetime) -> dict[str, Any]:
    return {
        "program_id": program_id,
        "pair_id": pair.pair_id,
        "round_id": round_id,
        "mentor_id": pair.mentor_id,
        "mentee_id": pair.mentee_id,
        "language": pair.language,
        "status": pair.status,
        "formed_at": now,
        "reasons": list(pair.reasons),
        "expires_at": pair.expires_at,
    }


async def waitlist(session: AsyncSession, *, program_id: str) -> tuple[str, ...]:
    """The mentees the program's last round (not a dry run: those are not stored) left unmatched
    and who are still active without an open pair: the next round serves them first."""
    last = await session.scalar(
        select(MatchingRound)
        .where(MatchingRound.program_id == program_id)
        .order_by(MatchingRound.completed_at.desc(), MatchingRound.round_id.desc())
        .limit(1)
    )
    if last is None or not last.unmatched_mentee_ids:
        return ()
    waiting = set(last.unmatched_mentee_ids)
    paired = {mentee for _, mentee in await active_pairings(session, program_id=program_id)}
    active = await session.scalars(
        select(Participant.participant_id).where(
            Participant.program_id == program_id,
            Participant.active.is_(True),
            Participant.role == "mentee",
        )
    )
    return tuple(sorted(p for p in active if p in waiting and p not in paired))


async def pair_for_update(session: AsyncSession, *, program_id: str, pair_id: str) -> Pair | None:
    """A pair, locked until the transaction ends (two answers to one proposal apply in turn)."""
    pair: Pair | None = await session.scalar(
        select(Pair)
        .where(Pair.program_id == program_id, Pair.pair_id == pair_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return pair


async def participant(
    session: AsyncSession, *, program_id: str, participant_id: str
) -> Participant | None:
    """A participant of the program, or None."""
    return await session.get(Participant, (program_id, participant_id))


def add_pair(
    session: AsyncSession, *, program_id: str, round_id: str, pair: NewPair, now: dt.datetime
) -> None:
    """Stores one new pair (a re-match); its mentor's slot is taken by the caller."""
    session.add(
        Pair(
            program_id=program_id,
            pair_id=pair.pair_id,
            round_id=round_id,
            mentor_id=pair.mentor_id,
            mentee_id=pair.mentee_id,
            language=pair.language,
            status=pair.status,
            formed_at=now,
            reasons=list(pair.reasons),
            expires_at=pair.expires_at,
        )
    )


async def pair_or_raise(session: AsyncSession, *, program_id: str, pair_id: str) -> Pair:
    """A pair of the program, else UnknownReference or ProgramMismatch."""
    return await get_or_raise(
        session,
        Pair,
        program_id,
        pair_id,
        what=f"pair {pair_id!r}",
        hint="pairing forms pairs in matching rounds; publish matching.requested first",
    )


async def unmatched_of_last_round(
    session: AsyncSession, *, program_id: str
) -> tuple[str | None, list[UnmatchedMentee]]:
    """The program's last stored round and the mentees it left unmatched, with why."""
    last = await session.scalar(
        select(MatchingRound.round_id)
        .where(MatchingRound.program_id == program_id)
        .order_by(MatchingRound.completed_at.desc(), MatchingRound.round_id.desc())
        .limit(1)
    )
    if last is None:
        return None, []
    rows = await session.scalars(
        select(UnmatchedMentee)
        .where(UnmatchedMentee.program_id == program_id, UnmatchedMentee.round_id == last)
        .order_by(UnmatchedMentee.mentee_id)
    )
    return last, list(rows)


async def program_rules(session: AsyncSession, *, program_id: str) -> ProgramRules | None:
    """The program's stored round rules, or None (rounds use the defaults)."""
    return await session.get(ProgramRules, program_id, populate_existing=True)


def rules_of_row(row: ProgramRules | None) -> RoundRules | None:
    """The stored rules as the round and the coordinator see them."""
    return None if row is None else RoundRules.model_validate(row.rules)


async def store_program_rules(
    session: AsyncSession, *, program_id: str, rules: RoundRules, now: dt.datetime
) -> None:
    """Stores the program's round rules, replacing what it had (two coordinators at once: the
    last write wins, no error)."""
    values = {
        "program_id": program_id,
        "rules": rules.model_dump(mode="json", exclude_none=True),
        "updated_at": now,
    }
    statement = upsert_insert(session)(PROGRAM_RULES).values(values)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["program_id"],
            set_={"rules": statement.excluded.rules, "updated_at": statement.excluded.updated_at},
        )
    )


async def forget_program_rules(session: AsyncSession, *, program_id: str) -> None:
    """Removes the program's stored rules: rounds use the defaults again."""
    await session.execute(PROGRAM_RULES.delete().where(PROGRAM_RULES.c.program_id == program_id))
