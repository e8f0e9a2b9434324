"""insights' read models (projections) and API tokens."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, Integer, String, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.outbox import add_delivery_tables


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
    __tablename__ = "participants"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    participant_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    role: Mapped[str] = mapped_column(String(10))
    timezone: Mapped[str] = mapped_column(String(64))


class PairView(Base):
    __tablename__ = "pairs"

    pair_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    program_id: Mapped[str] = mapped_column(String(200), index=True)
    mentor_id: Mapped[str] = mapped_column(String(200))
    mentee_id: Mapped[str] = mapped_column(String(200))
    formed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class SessionView(Base):
    __tablename__ = "sessions"

    session_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    program_id: Mapped[str] = mapped_column(String(200), index=True)
    pair_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    start: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class DeliveryView(Base):
    __tablename__ = "deliveries"

    delivery_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    program_id: Mapped[str] = mapped_column(String(200), index=True)
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


async def count_event(session: AsyncSession, *, program_id: str, subject: str) -> None:
    """Adds one to the program's count of this event type (atomic across replicas)."""
    result = await session.execute(
        update(EventCount)
        .where(EventCount.program_id == program_id, EventCount.subject == subject)
        .values(count=EventCount.count + 1)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        # a concurrent first insert fails this transaction; the redelivery then updates
        session.add(EventCount(program_id=program_id, subject=subject, count=1))


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
            ParticipantView.role == "mentor",
        ),
        "mentees": await _count(
            session,
            ParticipantView,
            ParticipantView.program_id == program_id,
            ParticipantView.role == "mentee",
        ),
        "pairs_formed": await _count(session, PairView, PairView.program_id == program_id),
        "sessions_scheduled": await _count(
            session, SessionView, SessionView.program_id == program_id
        ),
        "emails_sent": await _count(
            session,
            DeliveryView,
            DeliveryView.program_id == program_id,
            DeliveryView.status == "sent",
        ),
        "emails_failed": await _count(
            session,
            DeliveryView,
            DeliveryView.program_id == program_id,
            DeliveryView.status == "failed",
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
