"""How events change insights' read models: lookups that must succeed, counters, health.

Counters and timeline entries are queued on the unit of work (`uow.upsert`), written once per
batch; rows that later events of the same batch read (pairs, sessions, check-ins) go through
the ORM session, whose identity map shows them to those events.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import zlib
from typing import Any, TypeVar

from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.insights import health
from services.insights.store import (
    AssessmentSum,
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
from shared.unit_of_work import UnitOfWork

CONTACT_TIMER = "pair.contact"
NO_COHORT = ""  # the equity counters of the whole program


def count_event(uow: UnitOfWork, *, program_id: str, subject: str) -> None:
    """Adds one to the program's count of this event type, when the batch commits."""
    uow.upsert(
        EventCount, {"program_id": program_id, "subject": subject, "count": 1}, add=("count",)
    )


SHARDS = 32


def shard() -> int:
    """The counter shard of the consumer running now (its task is named after its durable)."""
    task = asyncio.current_task()
    return zlib.crc32((task.get_name() if task else "").encode()) % SHARDS


def add_to(uow: UnitOfWork, program_id: str, metric: str, value: float = 1) -> None:
    """Adds to one of the program's overview numbers."""
    if value:
        uow.upsert(
            ProgramCounter,
            {"program_id": program_id, "metric": metric, "shard": shard(), "value": value},
            add=("value",),
        )


def add_on_day(uow: UnitOfWork, program_id: str, metric: str, day: dt.date, value: int = 1) -> None:
    """Adds to one of the program's numbers of that day."""
    if value:
        uow.upsert(
            DailyCounter,
            {
                "program_id": program_id,
                "metric": metric,
                "day": day,
                "shard": shard(),
                "value": value,
            },
            add=("value",),
        )


def add_for_groups(uow: UnitOfWork, person: ParticipantView, metric: str, value: float = 1) -> None:
    """Adds to the equity sums of every group the person consented to be counted in."""
    if not value or not person.demographics:
        return
    for cohort in {NO_COHORT, person.cohort or NO_COHORT}:
        for attribute, group in person.demographics.items():
            uow.upsert(
                EquityCounter,
                {
                    "program_id": person.program_id,
                    "cohort": cohort,
                    "attribute": attribute,
                    "group": str(group),
                    "metric": metric,
                    "shard": shard(),
                    "value": value,
                },
                add=("value",),
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


async def participant_or_raise(
    session: AsyncSession, *, program_id: str, participant_id: str
) -> ParticipantView:
    """The program's participant; UnknownReference if never registered, ProgramMismatch if
    registered only in another program."""
    found = await get_row(session, ParticipantView, program_id, participant_id)
    if found is not None:
        return found
    return await get_or_raise(
        session,
        ParticipantView,
        program_id,
        participant_id,
        what=f"participant {participant_id!r}",
        hint="publish participant.registered first",
    )


View = TypeVar("View", PairView, SessionView, DeliveryView, CheckinView, ParticipantView)

# ids unique on their own (minted from program-scoped ids); other rows are keyed by program too
_UNIQUE_ID = {PairView: "pair_id", SessionView: "session_id", DeliveryView: "delivery_id"}
_SECOND_KEY = {CheckinView: "checkin_id", ParticipantView: "participant_id"}

# A batch reads the rows it changes again and again (a pair's every event): each is looked up in
# the database once per transaction, kept here with the rows the batch added, and found here
# afterwards without a query, and without the autoflush a query would cause.


def _rows(session: AsyncSession) -> dict[tuple[str, str], Any]:
    rows: dict[tuple[str, str], Any] = session.info.setdefault("insights_rows", {})
    return rows


def _key(row: Any) -> tuple[str, str]:
    model = type(row)
    if model in _UNIQUE_ID:
        return (model.__name__, getattr(row, _UNIQUE_ID[model]))
    return (model.__name__, f"{row.program_id}/{getattr(row, _SECOND_KEY[model])}")


def _known(session: AsyncSession, key: tuple[str, str]) -> Any:
    row = _rows(session).get(key)
    if row is None or row not in session or inspect(row).expired_attributes:
        return None  # not seen in this transaction, or rolled back with a savepoint
    return row


def remember(session: AsyncSession, row: Any) -> None:
    """Adds a new row to the session, findable by later events of the batch."""
    session.add(row)
    _rows(session)[_key(row)] = row


async def get_row(
    session: AsyncSession, model: type[View], program_id: str, key: str
) -> View | None:
    """The row of (program_id, key), from this transaction's rows or the database."""
    found: View | None = _known(session, (model.__name__, f"{program_id}/{key}"))
    if found is None:
        with session.no_autoflush:
            found = await session.get(model, (program_id, key))
        if found is not None:
            _rows(session)[_key(found)] = found
    return found


async def _of_program(
    session: AsyncSession,
    model: type[View],
    key: str,
    *,
    program_id: str,
    what: str,
    lock: bool = False,
) -> View | None:
    """The row with this id if it is the program's, None if no program has it yet."""
    row: View | None = _known(session, (model.__name__, key))
    if row is None:
        # first lookup in this transaction (a lock is then held until it ends)
        query = select(model).where(getattr(model, _UNIQUE_ID[model]) == key)
        with session.no_autoflush:
            row = await session.scalar(query.with_for_update() if lock else query)
        if row is not None:
            _rows(session)[_key(row)] = row
    if row is not None and row.program_id != program_id:
        raise ProgramMismatch(
            f"{what} belongs to another program, not to {program_id!r}; the event is never "
            "applied: fix its program_id and replay it"
        )
    return row


async def find_pair(session: AsyncSession, *, program_id: str, pair_id: str) -> PairView | None:
    """The program's pair, locked until the batch commits (FOR UPDATE on PostgreSQL), or None if
    insights has not seen it; ProgramMismatch if another program's.

    Events of one pair arrive on several subjects, applied by concurrent consumers: the pair's
    lock makes them apply one after the other, each reading what the other wrote (the pair's
    sessions and check-ins are changed only under it). SQLite has one writer anyway.
    """
    return await _of_program(
        session,
        PairView,
        pair_id,
        program_id=program_id,
        what=f"pair {pair_id!r}",
        lock=True,
    )


async def pair_or_raise(session: AsyncSession, *, program_id: str, pair_id: str) -> PairView:
    """The program's pair; UnknownReference (retried) until its pair.formed is projected."""
    pair = await find_pair(session, program_id=program_id, pair_id=pair_id)
    if pair is None:
        raise UnknownReference(
            f"pair {pair_id!r} of program {program_id!r} is unknown here; publish pair.formed first"
        )
    return pair


async def find_session(
    session: AsyncSession, *, program_id: str, session_id: str
) -> SessionView | None:
    """The program's planned session, or None; ProgramMismatch if another program's."""
    return await _of_program(
        session,
        SessionView,
        session_id,
        program_id=program_id,
        what=f"session {session_id!r}",
    )


async def session_or_raise(
    session: AsyncSession, *, program_id: str, session_id: str
) -> SessionView:
    """The program's session; UnknownReference until its session.scheduled is projected."""
    row = await find_session(session, program_id=program_id, session_id=session_id)
    if row is None:
        raise UnknownReference(
            f"session {session_id!r} of program {program_id!r} is unknown here; publish "
            "session.scheduled first"
        )
    return row


async def find_delivery(
    session: AsyncSession, *, program_id: str, delivery_id: str
) -> DeliveryView | None:
    """The program's delivery, or None; ProgramMismatch if another program's."""
    return await _of_program(
        session,
        DeliveryView,
        delivery_id,
        program_id=program_id,
        what=f"delivery {delivery_id!r}",
        lock=True,  # sent and failed reports of one delivery come on two subjects
    )


async def find_checkin(
    session: AsyncSession, *, program_id: str, checkin_id: str
) -> CheckinView | None:
    """The program's check-in, or None if insights has not seen it."""
    return await get_row(session, CheckinView, program_id, checkin_id)


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
    uow.upsert(
        timers,
        {
            "program_id": pair.program_id,
            "kind": CONTACT_TIMER,
            "key": pair.pair_id,
            "due_at": health.contact_deadline(facts_of(pair), thresholds),
            "status": durable.PENDING,
            "payload": {},
            "attempts": 0,
            "leased_until": None,
            "lease_token": None,
            "last_error": None,
            "finished_at": None,
        },
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
