"""insights' read models (projections) and API tokens, every record keyed by (program_id, id)."""

from __future__ import annotations

import datetime as dt
from typing import TypeVar

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Integer,
    String,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.insights.projections import DeliveryStatus
from shared.errors import ProgramMismatch
from shared.events import Role
from shared.outbox import add_delivery_tables
from shared.records import get_or_raise
from shared.unit_of_work import UnitOfWork


class Base(DeclarativeBase):
    pass


delivery = add_delivery_tables(Base.metadata)


class EventCount(Base):
    """How many events of each type a program has seen."""

    __tablename__ = "event_counts"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    subject: Mapped[str] = mapped_column(String(200), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class ParticipantView(Base):
    """A participant's role and zone; participant ids are the program's own (HR ids)."""

    __tablename__ = "participants"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    participant_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    role: Mapped[str] = mapped_column(String(10))
    timezone: Mapped[str] = mapped_column(String(64))


# pair, session and delivery ids are minted by the services from program-scoped ids, so one id
# names one record in one program: unique on its own, it is found (or refused) in one lookup


class PairView(Base):
    __tablename__ = "pairs"
    __table_args__ = (UniqueConstraint("pair_id", name="uq_pairs_pair_id"),)

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    pair_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    mentor_id: Mapped[str] = mapped_column(String(200))
    mentee_id: Mapped[str] = mapped_column(String(200))
    formed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class SessionView(Base):
    __tablename__ = "sessions"
    __table_args__ = (UniqueConstraint("session_id", name="uq_sessions_session_id"),)

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    pair_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    start: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class DeliveryView(Base):
    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("delivery_id", name="uq_deliveries_delivery_id"),)

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    status: Mapped[str] = mapped_column(String(20))


class RoundView(Base):
    __tablename__ = "matching_rounds"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    round_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    pairs_formed: Mapped[int] = mapped_column(Integer)
    unmatched_mentees: Mapped[int] = mapped_column(Integer)
    completed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class ApiToken(Base):
    """A coordinator's bearer token, stored as its SHA-256 digest, scoped to one program."""

    __tablename__ = "api_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    program_id: Mapped[str] = mapped_column(String(200), index=True)
    label: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


# Every event reaches insights: its count, and a registration's participant, are pure writes
# queued on the unit of work, so a batch writes them in one statement per table (counts of one
# program and subject summed first) instead of a lookup and a write per event.


def count_event(uow: UnitOfWork, *, program_id: str, subject: str) -> None:
    """Adds one to the program's count of this event type, when the batch commits."""
    uow.upsert(
        EventCount, {"program_id": program_id, "subject": subject, "count": 1}, add=("count",)
    )


def register_participant(
    uow: UnitOfWork, *, program_id: str, participant_id: str, role: str, timezone: str
) -> None:
    """Stores the participant's role and zone (a re-registration replaces them), when the batch
    commits."""
    uow.upsert(
        ParticipantView,
        {
            "program_id": program_id,
            "participant_id": participant_id,
            "role": role,
            "timezone": timezone,
        },
    )


async def participant_or_raise(
    session: AsyncSession, *, program_id: str, participant_id: str
) -> ParticipantView:
    """The program's participant; UnknownReference if never registered, ProgramMismatch if
    registered only in another program."""
    return await get_or_raise(
        session,
        ParticipantView,
        program_id,
        participant_id,
        what=f"participant {participant_id!r}",
        hint="publish participant.registered first",
    )


View = TypeVar("View", PairView, SessionView, DeliveryView)


async def _of_program(
    session: AsyncSession,
    model: type[View],
    same_id: ColumnElement[bool],
    *,
    program_id: str,
    what: str,
) -> View | None:
    """The row with this id if it is the program's, None if no program has it yet."""
    row = await session.scalar(select(model).where(same_id))
    if row is not None and row.program_id != program_id:
        raise ProgramMismatch(
            f"{what} belongs to another program, not to {program_id!r}; the event is never "
            "applied: fix its program_id and replay it"
        )
    return row


async def find_pair(session: AsyncSession, *, program_id: str, pair_id: str) -> PairView | None:
    """The program's pair, or None if insights has not seen it; ProgramMismatch if another
    program's."""
    return await _of_program(
        session,
        PairView,
        PairView.pair_id == pair_id,
        program_id=program_id,
        what=f"pair {pair_id!r}",
    )


def add_pair(
    session: AsyncSession,
    *,
    program_id: str,
    pair_id: str,
    mentor_id: str,
    mentee_id: str,
    formed_at: dt.datetime,
) -> None:
    """Stores a newly formed pair."""
    session.add(
        PairView(
            program_id=program_id,
            pair_id=pair_id,
            mentor_id=mentor_id,
            mentee_id=mentee_id,
            formed_at=formed_at,
        )
    )


async def find_session(
    session: AsyncSession, *, program_id: str, session_id: str
) -> SessionView | None:
    """The program's planned session, or None if insights has not seen it; ProgramMismatch if
    another program's."""
    return await _of_program(
        session,
        SessionView,
        SessionView.session_id == session_id,
        program_id=program_id,
        what=f"session {session_id!r}",
    )


def add_session(
    session: AsyncSession,
    *,
    program_id: str,
    session_id: str,
    pair_id: str,
    kind: str,
    start: dt.datetime,
) -> None:
    """Stores a newly planned session."""
    session.add(
        SessionView(
            program_id=program_id, session_id=session_id, pair_id=pair_id, kind=kind, start=start
        )
    )


async def find_delivery(
    session: AsyncSession, *, program_id: str, delivery_id: str
) -> DeliveryView | None:
    """The program's delivery, or None if insights has not seen it; ProgramMismatch if another
    program's."""
    return await _of_program(
        session,
        DeliveryView,
        DeliveryView.delivery_id == delivery_id,
        program_id=program_id,
        what=f"delivery {delivery_id!r}",
    )


def add_delivery(
    session: AsyncSession, *, program_id: str, delivery_id: str, status: DeliveryStatus
) -> None:
    """Stores a delivery first heard of."""
    session.add(DeliveryView(program_id=program_id, delivery_id=delivery_id, status=status))


async def record_round(
    session: AsyncSession,
    *,
    program_id: str,
    round_id: str,
    pairs_formed: int,
    unmatched_mentees: int,
    completed_at: dt.datetime,
) -> None:
    """Stores a matching round's outcome unless it is recorded already (round ids are the
    program's own)."""
    if await session.get(RoundView, (program_id, round_id)) is None:
        session.add(
            RoundView(
                program_id=program_id,
                round_id=round_id,
                pairs_formed=pairs_formed,
                unmatched_mentees=unmatched_mentees,
                completed_at=completed_at,
            )
        )


async def _count(session: AsyncSession, model: type[Base], *conditions: object) -> int:
    result = await session.execute(select(func.count()).select_from(model).where(*conditions))  # type: ignore[arg-type]
    return int(result.scalar_one())


async def overview_counts(session: AsyncSession, *, program_id: str) -> dict[str, int]:
    """The raw numbers behind a program's overview."""
    latest_round = await session.scalar(
        select(RoundView)
        .where(RoundView.program_id == program_id)
        .order_by(RoundView.completed_at.desc())
        .limit(1)
    )
    return {
        "mentors": await _count(
            session,
            ParticipantView,
            ParticipantView.program_id == program_id,
            ParticipantView.role == Role.MENTOR,
        ),
        "mentees": await _count(
            session,
            ParticipantView,
            ParticipantView.program_id == program_id,
            ParticipantView.role == Role.MENTEE,
        ),
        "pairs_formed": await _count(session, PairView, PairView.program_id == program_id),
        "sessions_scheduled": await _count(
            session, SessionView, SessionView.program_id == program_id
        ),
        "emails_sent": await _count(
            session,
            DeliveryView,
            DeliveryView.program_id == program_id,
            DeliveryView.status == DeliveryStatus.SENT,
        ),
        "emails_failed": await _count(
            session,
            DeliveryView,
            DeliveryView.program_id == program_id,
            DeliveryView.status == DeliveryStatus.FAILED,
        ),
        "unmatched_mentees": latest_round.unmatched_mentees if latest_round else 0,
        "matching_rounds": await _count(session, RoundView, RoundView.program_id == program_id),
        "timezones": int(
            await session.scalar(
                select(func.count(func.distinct(ParticipantView.timezone))).where(
                    ParticipantView.program_id == program_id
                )
            )
            or 0
        ),
    }


async def events_seen(session: AsyncSession, *, program_id: str) -> dict[str, int]:
    """How many events of each subject the program has seen."""
    rows = await session.execute(
        select(EventCount.subject, EventCount.count).where(EventCount.program_id == program_id)
    )
    return {subject: count for subject, count in rows.all()}


async def token_program(session: AsyncSession, *, token_hash: str) -> str | None:
    """The program a token is scoped to, or None for an unknown token."""
    row = await session.get(ApiToken, token_hash)
    return row.program_id if row else None


async def ensure_token(
    session: AsyncSession, *, token_hash: str, program_id: str, label: str, created_at: dt.datetime
) -> None:
    """Stores a configured token's digest unless it is there already."""
    row = await session.get(ApiToken, token_hash)
    if row is None:
        await add_token(
            session,
            token_hash=token_hash,
            program_id=program_id,
            label=label,
            created_at=created_at,
        )
    else:
        row.program_id = program_id


async def add_token(
    session: AsyncSession, *, token_hash: str, program_id: str, label: str, created_at: dt.datetime
) -> None:
    """Stores a new token's digest."""
    session.add(
        ApiToken(token_hash=token_hash, program_id=program_id, label=label, created_at=created_at)
    )
