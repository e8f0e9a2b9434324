"""How events change insights' read models: lookups that must succeed, counters, health.

The rows a handler reads (pairs, sessions, check-ins, deliveries, participants) are preloaded
for the whole batch by its subscription (`Rows`, `MenteesOfPairs`, shared Preload) and read with
`uow.get`; new ones are added with `add_row` (uow.add), so later events of the batch see them
without a query. Counters are summed per batch in memory (one queued upsert per counter row) and
timeline entries queued with `uow.upsert`: one statement per table per batch.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import weakref
import zlib
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.insights import health
from services.insights.store import (
    AssessmentSum,
    Base,
    CheckinView,
    DailyCounter,
    DeliveryView,
    EquityCounter,
    EventCount,
    PairView,
    ParticipantView,
    ProgramCounter,
    ProgramSettings,
    SessionView,
    TimelineRow,
    timers,
    utc,
)
from services.insights.timeline import Privacy
from shared import timers as durable
from shared.errors import ProgramMismatch, UnknownReference
from shared.events import Event, PairAtRisk
from shared.records import get_or_raise
from shared.unit_of_work import Preload, UnitOfWork

E = TypeVar("E", bound=Event)

CONTACT_TIMER = "pair.contact"
NO_COHORT = ""  # the equity counters of the whole program


class _Counters:
    """The counter rows a unit of work adds to, one queued upsert per row: the later additions
    of a batch add to the row's queued values instead of queueing another row."""

    def __init__(self) -> None:
        self.rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.shard = shard()


_COUNTERS: weakref.WeakKeyDictionary[UnitOfWork, _Counters] = weakref.WeakKeyDictionary()


def _add(
    uow: UnitOfWork, table: type[Base], key: tuple[Any, ...], values: dict[str, Any], column: str
) -> None:
    counters = _COUNTERS.get(uow)
    if counters is None:
        counters = _COUNTERS[uow] = _Counters()
    row = counters.rows.get(key)
    if row is None:
        # queued once, written with the batch's other upserts; later additions go to the
        # queued row's values
        uow.upsert(table, values, add=(column,))
        counters.rows[key] = uow.writes[-1].values
    else:
        row[column] += values[column]


def _shard_of(uow: UnitOfWork) -> int:
    counters = _COUNTERS.get(uow)
    if counters is None:
        counters = _COUNTERS[uow] = _Counters()
    return counters.shard


def month(at: dt.datetime) -> str:
    """YYYY-MM of the instant (strftime costs several times more, once per registration)."""
    return f"{at.year:04d}-{at.month:02d}"


def count_event(uow: UnitOfWork, *, program_id: str, subject: str) -> None:
    """Adds one to the program's count of this event type, when the batch commits."""
    _add(
        uow,
        EventCount,
        (EventCount, program_id, subject),
        {"program_id": program_id, "subject": subject, "count": 1},
        "count",
    )


SHARDS = 32


def shard() -> int:
    """The counter shard of the consumer running now (its task is named after its durable)."""
    task = asyncio.current_task()
    return zlib.crc32((task.get_name() if task else "").encode()) % SHARDS


def add_to(uow: UnitOfWork, program_id: str, metric: str, value: float = 1) -> None:
    """Adds to one of the program's overview numbers."""
    if value:
        _add(
            uow,
            ProgramCounter,
            (ProgramCounter, program_id, metric),
            {"program_id": program_id, "metric": metric, "shard": _shard_of(uow), "value": value},
            "value",
        )


def add_on_day(uow: UnitOfWork, program_id: str, metric: str, day: dt.date, value: int = 1) -> None:
    """Adds to one of the program's numbers of that day."""
    if value:
        _add(
            uow,
            DailyCounter,
            (DailyCounter, program_id, metric, day),
            {
                "program_id": program_id,
                "metric": metric,
                "day": day,
                "shard": _shard_of(uow),
                "value": value,
            },
            "value",
        )


def add_for_groups(uow: UnitOfWork, person: ParticipantView, metric: str, value: float = 1) -> None:
    """Adds to the equity sums of every group the person consented to be counted in."""
    if not value or not person.demographics:
        return
    program_id = person.program_id
    for cohort in {NO_COHORT, person.cohort or NO_COHORT}:
        for attribute, group in person.demographics.items():
            _add(
                uow,
                EquityCounter,
                (EquityCounter, program_id, cohort, attribute, str(group), metric),
                {
                    "program_id": program_id,
                    "cohort": cohort,
                    "attribute": attribute,
                    "group": str(group),
                    "metric": metric,
                    "shard": _shard_of(uow),
                    "value": value,
                },
                "value",
            )


def add_entry(
    uow: UnitOfWork,
    event: Event,
    pair_id: str,
    kind: str,
    summary: str,
    *,
    scores: dict[str, Any] | None = None,
    content: str | None = None,
    at: dt.datetime | None = None,
) -> None:
    """Adds the event to the pair's timeline (once: keyed by the event id)."""
    uow.upsert(
        TimelineRow,
        {
            "program_id": event.program_id,
            "pair_id": pair_id,
            "at": at or event.occurred_at,
            "event_id": str(event.event_id),
            "kind": kind,
            "summary": summary,
            "scores": scores,
            "content": content or None,
        },
    )


# --- rows the handlers read: preloaded for the whole batch (Subscription.preload) --------------

View = TypeVar("View", PairView, SessionView, DeliveryView, CheckinView, ParticipantView)

# ids unique on their own (minted from program-scoped ids); a preload finds them in any program,
# so an event naming another program's record is refused without a query of its own
_UNIQUE_ID = {PairView: "pair_id", SessionView: "session_id", DeliveryView: "delivery_id"}
_LOOKED_UP = "insights_looked_up"  # session.info: (model, program, id) found, or locked, already


def _looked_up(session: AsyncSession) -> set[tuple[Any, ...]]:
    keys: set[tuple[Any, ...]] = session.info.setdefault(_LOOKED_UP, set())
    return keys


def _for_update(session: AsyncSession, query: Any) -> Any:
    # SQLite has one writer anyway (and no FOR UPDATE)
    return query.with_for_update() if session.get_bind().dialect.name == "postgresql" else query


@dataclass(frozen=True)
class Rows(Preload[E]):
    """The rows of a model with a unique id that a batch's events name, in one query per 500.

    With `lock`, they are locked FOR UPDATE on PostgreSQL in id order (so two consumers locking
    pairs never wait on each other in a cycle) until the batch commits. A row of another program
    is found under the event's key too: the handler refuses it (ProgramMismatch).
    """

    lock: bool = False

    async def load(self, session: AsyncSession, events: list[E]) -> dict[tuple[Any, ...], Any]:
        model = self.model
        column = getattr(model, _UNIQUE_ID[model])  # type: ignore[index]
        keys = sorted({self.key(event) for event in events})
        by_id: dict[str, Any] = {}
        ids = sorted({key[1] for key in keys})
        for start in range(0, len(ids), 500):
            query = select(model).where(column.in_(ids[start : start + 500])).order_by(column)
            if self.lock:
                query = _for_update(session, query)
            for row in await session.scalars(query):
                by_id[getattr(row, column.key)] = row
        _looked_up(session).update((model, *key) for key in keys)
        return {key: by_id.get(key[1]) for key in keys}


@dataclass(frozen=True)
class MenteesOfPairs(Preload[E]):
    """The mentees of the pairs a batch's events name (equity counts their sessions)."""

    async def load(self, session: AsyncSession, events: list[E]) -> dict[tuple[Any, ...], Any]:
        # by pair id alone (unique): a row-value IN list beside a join makes PostgreSQL compare
        # every pair with every term; a pair of another program is refused by its handler
        ids = sorted({self.key(event)[1] for event in events})
        found: dict[tuple[Any, ...], Any] = {}
        for start in range(0, len(ids), 500):
            query = (
                select(ParticipantView)
                .join(
                    PairView,
                    (PairView.program_id == ParticipantView.program_id)
                    & (PairView.mentee_id == ParticipantView.participant_id),
                )
                .where(PairView.pair_id.in_(ids[start : start + 500]))
            )
            for row in await session.scalars(query):
                found[(row.program_id, row.participant_id)] = row
        return found


def participants(key: Any) -> Preload[Any]:
    """The participants `key(event)` names, as (program_id, participant_id)."""
    return Preload(ParticipantView, key)


def pairs(*, lock: bool = True) -> Rows[Any]:
    """The pairs the events name (locked: see find_pair)."""
    return Rows(PairView, lambda e: (e.program_id, e.pair_id), lock=lock)


def sessions_named() -> Rows[Any]:
    return Rows(SessionView, lambda e: (e.program_id, e.session_id))


def deliveries_named() -> Rows[Any]:
    # sent and failed reports of one delivery come on two subjects
    return Rows(DeliveryView, lambda e: (e.program_id, e.delivery_id), lock=True)


def checkins_named() -> Preload[Any]:
    return Preload(CheckinView, lambda e: (e.program_id, e.checkin_id))


def mentees_of_pairs() -> MenteesOfPairs[Any]:
    return MenteesOfPairs(ParticipantView, lambda e: (e.program_id, e.pair_id))


async def participant_or_raise(
    uow: UnitOfWork, *, program_id: str, participant_id: str
) -> ParticipantView:
    """The program's participant; UnknownReference if never registered, ProgramMismatch if
    registered only in another program."""
    found = await uow.get(ParticipantView, (program_id, participant_id))
    if found is not None:
        return found
    return await get_or_raise(
        uow.session,
        ParticipantView,
        program_id,
        participant_id,
        what=f"participant {participant_id!r}",
        hint="publish participant.registered first",
    )


async def participant(
    uow: UnitOfWork, program_id: str, participant_id: str
) -> ParticipantView | None:
    """The program's participant, or None."""
    return await uow.get(ParticipantView, (program_id, participant_id))


async def _of_program(
    uow: UnitOfWork,
    model: type[View],
    key: str,
    *,
    program_id: str,
    what: str,
    lock: bool = False,
) -> View | None:
    """The row with this id if it is the program's, None if no program has it yet."""
    row: View | None
    looked_up = _looked_up(uow.session)
    if (model, program_id, key) in looked_up:  # preloaded (and locked), or added, in this batch
        row = await uow.get(model, (program_id, key))
    else:  # an event applied on its own (a batch that failed is applied event by event)
        query = select(model).where(getattr(model, _UNIQUE_ID[model]) == key)
        with uow.session.no_autoflush:
            row = await uow.session.scalar(_for_update(uow.session, query) if lock else query)
        looked_up.add((model, program_id, key))
    if row is not None and row.program_id != program_id:
        raise ProgramMismatch(
            f"{what} belongs to another program, not to {program_id!r}; the event is never "
            "applied: fix its program_id and replay it"
        )
    return row


def add_row(uow: UnitOfWork, row: PairView | SessionView | DeliveryView | CheckinView) -> None:
    """A new row, seen by the batch's later events."""
    uow.add(row)
    _looked_up(uow.session).add((type(row), *_key_of(row)))


def _key_of(row: Any) -> tuple[str, str]:
    if isinstance(row, CheckinView):
        return (row.program_id, row.checkin_id)
    return (row.program_id, getattr(row, _UNIQUE_ID[type(row)]))


async def find_pair(uow: UnitOfWork, *, program_id: str, pair_id: str) -> PairView | None:
    """The program's pair, locked until the batch commits (FOR UPDATE on PostgreSQL), or None if
    insights has not seen it; ProgramMismatch if another program's.

    Events of one pair arrive on several subjects, applied by concurrent consumers: the pair's
    lock makes them apply one after the other, each reading what the other wrote (the pair's
    sessions and check-ins are changed only under it). SQLite has one writer anyway.
    """
    return await _of_program(
        uow, PairView, pair_id, program_id=program_id, what=f"pair {pair_id!r}", lock=True
    )


async def pair_or_raise(uow: UnitOfWork, *, program_id: str, pair_id: str) -> PairView:
    """The program's pair; UnknownReference (retried) until its pair.formed is projected."""
    pair = await find_pair(uow, program_id=program_id, pair_id=pair_id)
    if pair is None:
        raise UnknownReference(
            f"pair {pair_id!r} of program {program_id!r} is unknown here; publish pair.formed first"
        )
    return pair


async def find_session(uow: UnitOfWork, *, program_id: str, session_id: str) -> SessionView | None:
    """The program's planned session, or None; ProgramMismatch if another program's."""
    return await _of_program(
        uow, SessionView, session_id, program_id=program_id, what=f"session {session_id!r}"
    )


async def session_or_raise(uow: UnitOfWork, *, program_id: str, session_id: str) -> SessionView:
    """The program's session; UnknownReference until its session.scheduled is projected."""
    row = await find_session(uow, program_id=program_id, session_id=session_id)
    if row is None:
        raise UnknownReference(
            f"session {session_id!r} of program {program_id!r} is unknown here; publish "
            "session.scheduled first"
        )
    return row


async def find_delivery(
    uow: UnitOfWork, *, program_id: str, delivery_id: str
) -> DeliveryView | None:
    """The program's delivery, or None; ProgramMismatch if another program's."""
    return await _of_program(
        uow,
        DeliveryView,
        delivery_id,
        program_id=program_id,
        what=f"delivery {delivery_id!r}",
        lock=True,  # sent and failed reports of one delivery come on two subjects
    )


async def find_checkin(uow: UnitOfWork, *, program_id: str, checkin_id: str) -> CheckinView | None:
    """The program's check-in, or None if insights has not seen it."""
    return await uow.get(CheckinView, (program_id, checkin_id))


async def program_settings(
    session: AsyncSession, program_id: str
) -> tuple[Privacy, health.Thresholds]:
    """The program's privacy level and thresholds (the defaults until a coordinator sets them)."""
    cache: dict[str, tuple[Privacy, health.Thresholds]] = session.info.setdefault(
        "insights_settings", {}
    )
    if program_id not in cache:  # once per transaction (a batch): settings change rarely
        row = await session.get(ProgramSettings, program_id)
        cache[program_id] = (
            (Privacy.COUNTS, health.Thresholds())
            if row is None
            else (Privacy(row.privacy), health.Thresholds.model_validate(row.thresholds))
        )
    return cache[program_id]


def facts_of(pair: PairView) -> health.PairFacts:
    """The pair's row as health sees it."""
    return health.PairFacts(
        formed_at=utc(pair.formed_at),
        sessions_held=pair.sessions_held,
        sessions_missed=pair.sessions_missed,
        checkins_due=pair.checkins_due,
        checkins_submitted=pair.checkins_submitted,
        open_overdue_checkins=pair.open_overdue_checkins,
        overdue_streak=len(pair.overdue_streak or ()),
        last_contact_at=utc(pair.last_contact_at) if pair.last_contact_at else None,
        no_shows_mentor=pair.no_shows_mentor,
        no_shows_mentee=pair.no_shows_mentee,
        feedback_from_mentor=pair.feedback_from_mentor,
        feedback_from_mentee=pair.feedback_from_mentee,
        fit_rating_sum=pair.fit_rating_sum,
        fit_rating_count=pair.fit_rating_count,
        active=pair.state == "formed",
    )


async def refresh_health(uow: UnitOfWork, pair: PairView, *, at: dt.datetime) -> None:
    """Scores the pair as of `at` (the latest event's instant, so replays score alike); emits
    pair.at_risk when it crosses into risk, and moves the pair's counters between bands."""
    _, thresholds = await program_settings(uow.session, pair.program_id)
    if pair.scored_at is not None and utc(pair.scored_at) > at:
        at = utc(pair.scored_at)  # an older event arriving late does not turn the clock back
    pair.scored_at = at
    verdict = health.assess(facts_of(pair), thresholds, at)
    before = health.Health(pair.health)
    if verdict.health is not before:
        add_to(uow, pair.program_id, f"pairs.health.{before.value}", -1)
        add_to(uow, pair.program_id, f"pairs.health.{verdict.health.value}", 1)
    pair.risk_score, pair.health, pair.reasons = (
        verdict.score,
        verdict.health,
        list(verdict.reasons),
    )
    if health.crossed_into_risk(before, verdict.health):
        pair.at_risk_crossings += 1
        uow.emit(
            PairAtRisk(
                # the same crossing has the same id, so a rebuild's emission is a duplicate
                event_id=health.crossing_id(pair.program_id, pair.pair_id, pair.at_risk_crossings),
                occurred_at=at,
                program_id=pair.program_id,
                pair_id=pair.pair_id,
                reasons=list(verdict.reasons),
                score=float(verdict.score),
            )
        )


async def arm_contact_check(uow: UnitOfWork, pair: PairView) -> None:
    """Re-scores the pair when, hearing nothing more, it would have had no contact too long.

    The timer is armed as shared.timers.schedule arms it, but written with the batch (one
    statement for all the batch's pairs; the last deadline of a pair wins).
    """
    _, thresholds = await program_settings(uow.session, pair.program_id)
    due = health.contact_deadline(facts_of(pair), thresholds)
    uow.upsert(
        timers, durable.armed_row(durable.Arm(pair.program_id, CONTACT_TIMER, pair.pair_id, due))
    )


def add_assessment(
    uow: UnitOfWork, *, program_id: str, cohort: str, period: str, scores: dict[str, float]
) -> None:
    """Adds one response's scores to the cohort's sums of that month."""
    for dimension, score in scores.items():
        uow.upsert(
            AssessmentSum,
            {
                "program_id": program_id,
                "cohort": cohort,
                "period": period,
                "dimension": dimension[:80],
                "total": float(score),
                "responses": 1,
            },
            add=("total", "responses"),
        )
