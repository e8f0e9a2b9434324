"""The reads behind the coordinators' API: each an index range of one program, never a scan."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from services.insights.equity import GroupTotals
from services.insights.overview import AssessmentAverage
from services.insights.schemas import PairRow, SessionRow
from services.insights.store import (
    ApiToken,
    AssessmentSum,
    DailyCounter,
    EquityCounter,
    EventCount,
    PairView,
    ParticipantView,
    ProgramCounter,
    SessionView,
    TimelineRow,
    utc,
)
from services.insights.tokens import Grant


async def counters(session: AsyncSession, *, program_id: str) -> dict[str, float]:
    """The program's overview numbers, by metric."""
    rows = await session.execute(
        select(ProgramCounter.metric, func.sum(ProgramCounter.value))
        .where(ProgramCounter.program_id == program_id)
        .group_by(ProgramCounter.metric)
    )
    return {metric: value for metric, value in rows.all()}


async def daily(
    session: AsyncSession, *, program_id: str, metrics: Sequence[str], since: dt.date
) -> list[tuple[str, dt.date, int]]:
    """The program's numbers per day since `since`, of these metrics."""
    rows = await session.execute(
        select(DailyCounter.metric, DailyCounter.day, func.sum(DailyCounter.value))
        .where(
            DailyCounter.program_id == program_id,
            DailyCounter.metric.in_(metrics),
            DailyCounter.day > since,
        )
        .group_by(DailyCounter.metric, DailyCounter.day)
    )
    return [(metric, day, int(value)) for metric, day, value in rows.all()]


async def events_seen(session: AsyncSession, *, program_id: str) -> dict[str, int]:
    """How many events of each subject the program has seen."""
    rows = await session.execute(
        select(EventCount.subject, EventCount.count).where(EventCount.program_id == program_id)
    )
    return {subject: count for subject, count in rows.all()}


async def assessments(
    session: AsyncSession, *, program_id: str, cohort: str | None = None
) -> list[AssessmentAverage]:
    """Average score per month and dimension, of one cohort or all."""
    query = select(
        AssessmentSum.period, AssessmentSum.dimension, AssessmentSum.total, AssessmentSum.responses
    ).where(AssessmentSum.program_id == program_id)
    if cohort is not None:
        query = query.where(AssessmentSum.cohort == cohort)
    sums: dict[tuple[str, str], tuple[float, int]] = {}
    for period, dimension, row_total, responses in (await session.execute(query)).all():
        total, n = sums.get((period, dimension), (0.0, 0))
        sums[(period, dimension)] = (total + row_total, n + responses)
    return [
        AssessmentAverage(period=p, dimension=d, average=round(t / n, 2), responses=n)
        for (p, d), (t, n) in sorted(sums.items())
        if n
    ]


async def assessment_cells(session: AsyncSession, *, program_id: str) -> list[AssessmentSum]:
    """Every (cohort, month, dimension) sum of the program."""
    query = select(AssessmentSum).where(AssessmentSum.program_id == program_id)
    return list(
        (await session.scalars(query.order_by(AssessmentSum.cohort, AssessmentSum.period))).all()
    )


async def equity_totals(
    session: AsyncSession, *, program_id: str, cohort: str
) -> dict[str, dict[str, GroupTotals]]:
    """attribute -> group -> sums, of one cohort ('' is the whole program)."""
    rows = await session.scalars(
        select(EquityCounter).where(
            EquityCounter.program_id == program_id, EquityCounter.cohort == cohort
        )
    )
    raw: dict[str, dict[str, dict[str, float]]] = {}
    for row in rows.all():
        sums = raw.setdefault(row.attribute, {}).setdefault(row.group, {})
        sums[row.metric] = sums.get(row.metric, 0.0) + row.value  # the shards added up
    return {
        attribute: {
            group: GroupTotals(
                people=int(m.get("people", 0)),
                opportunities={
                    k.removeprefix("opportunities."): int(v)
                    for k, v in m.items()
                    if k.startswith("opportunities.")
                },
                matched=int(m.get("matched", 0)),
                match_score_sum=m.get("match_score_sum", 0.0),
                sessions_held=int(m.get("sessions_held", 0)),
                sessions_missed=int(m.get("sessions_missed", 0)),
            )
            for group, m in groups.items()
        }
        for attribute, groups in raw.items()
    }


async def equity_people(
    session: AsyncSession, *, program_id: str
) -> dict[str, dict[tuple[str, str], int]]:
    """attribute -> (group, cohort) -> people, over every cohort (what suppression decides on)."""
    rows = await session.execute(
        select(
            EquityCounter.attribute,
            EquityCounter.group,
            EquityCounter.cohort,
            func.sum(EquityCounter.value),
        )
        .where(
            EquityCounter.program_id == program_id,
            EquityCounter.metric == "people",
            EquityCounter.cohort != "",
        )
        .group_by(EquityCounter.attribute, EquityCounter.group, EquityCounter.cohort)
    )
    table: dict[str, dict[tuple[str, str], int]] = {}
    for attribute, group, cohort, people in rows.all():
        table.setdefault(attribute, {})[(group, cohort)] = int(people or 0)
    return table


@dataclass(frozen=True)
class Keyset:
    """A list's order (the columns of the index it is read from) and its keyset condition."""

    columns: tuple[Any, ...]
    descending: bool

    def ordered(self, query: Select[Any], after: tuple[Any, ...] | None) -> Select[Any]:
        """The query in this order, from the row after `after` (a previous page's last key)."""
        if after is not None:
            key = tuple_(*self.columns)
            bound = tuple_(*(literal(v, c.type) for v, c in zip(after, self.columns, strict=True)))
            query = query.where(key < bound if self.descending else key > bound)
        return query.order_by(*(c.desc() if self.descending else c for c in self.columns))


PAIRS = Keyset((PairView.risk_score, PairView.pair_id), descending=True)
UNMATCHED = Keyset((ParticipantView.participant_id,), descending=False)
SESSIONS = Keyset((SessionView.start, SessionView.session_id), descending=True)
TIMELINE = Keyset((TimelineRow.at, TimelineRow.event_id), descending=False)

_PAIR_COLUMNS = [PairView.__table__.c[name] for name in PairRow.model_fields]
_UNMATCHED_COLUMNS = [
    ParticipantView.__table__.c[name]
    for name in ("participant_id", "display_name", "timezone", "cohort", "unmatched_reason")
]
_SESSION_COLUMNS = [SessionView.__table__.c[name] for name in SessionRow.model_fields]
_TIMELINE_COLUMNS = [
    TimelineRow.__table__.c[name]
    for name in ("at", "event_id", "kind", "summary", "scores", "content")
]


async def _rows(session: AsyncSession, query: Select[Any], limit: int, offset: int) -> list[Any]:
    if offset:
        query = query.offset(offset)
    return list((await session.execute(query.limit(limit))).all())


async def pairs(
    session: AsyncSession,
    *,
    program_id: str,
    health: str | None,
    limit: int,
    offset: int = 0,
    after: tuple[Any, ...] | None = None,
) -> list[Any]:
    """The program's pairs, riskiest first (ix_pairs_risk / ix_pairs_health_risk, read
    backwards from the key after `after`)."""
    query = select(*_PAIR_COLUMNS).where(PairView.program_id == program_id)
    if health is not None:
        query = query.where(PairView.health == health)
    return await _rows(session, PAIRS.ordered(query, after), limit, offset)


async def unmatched_mentees(
    session: AsyncSession,
    *,
    program_id: str,
    limit: int,
    offset: int = 0,
    after: tuple[Any, ...] | None = None,
) -> list[Any]:
    """Active mentees without a pair, by id (ix_participants_unmatched)."""
    query = select(*_UNMATCHED_COLUMNS).where(
        ParticipantView.program_id == program_id,
        ParticipantView.role == "mentee",
        ParticipantView.matched.is_(False),
        ParticipantView.active.is_(True),
    )
    return await _rows(session, UNMATCHED.ordered(query, after), limit, offset)


async def sessions(
    session: AsyncSession,
    *,
    program_id: str,
    status: str | None,
    limit: int,
    offset: int = 0,
    after: tuple[Any, ...] | None = None,
) -> list[Any]:
    """The program's sessions, latest start first (ix_sessions_program_start, or
    ix_sessions_status_start for one status)."""
    query = select(*_SESSION_COLUMNS).where(SessionView.program_id == program_id)
    if status is not None:
        query = query.where(SessionView.status == status)
    return await _rows(session, SESSIONS.ordered(query, after), limit, offset)


async def timeline(
    session: AsyncSession,
    *,
    program_id: str,
    pair_id: str,
    limit: int,
    offset: int = 0,
    after: tuple[Any, ...] | None = None,
) -> list[Any]:
    """The pair's timeline, oldest first (the table's primary key)."""
    query = select(*_TIMELINE_COLUMNS).where(
        TimelineRow.program_id == program_id, TimelineRow.pair_id == pair_id
    )
    return await _rows(session, TIMELINE.ordered(query, after), limit, offset)


async def pair(session: AsyncSession, *, program_id: str, pair_id: str) -> PairView | None:
    """One pair of the program."""
    return await session.get(PairView, (program_id, pair_id))


async def grant(session: AsyncSession, *, token_hash: str) -> Grant | None:
    """What a token allows, or None for an unknown token."""
    row = await session.get(ApiToken, token_hash)
    if row is None:
        return None
    return Grant(
        program_id=row.program_id,
        expires_at=utc(row.expires_at) if row.expires_at else None,
        revoked_at=utc(row.revoked_at) if row.revoked_at else None,
    )


def as_dict(row: Any, columns: Sequence[str]) -> dict[str, Any]:
    """The named columns of a row."""
    return {name: getattr(row, name) for name in columns}
