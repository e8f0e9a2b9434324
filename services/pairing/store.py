"""pairing's tables and queries."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.outbox import add_delivery_tables


class Base(DeclarativeBase):
    pass


delivery = add_delivery_tables(Base.metadata)


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
    active: Mapped[bool] = mapped_column(default=True)
    registered_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class Pair(Base):
    __tablename__ = "pairs"

    pair_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    program_id: Mapped[str] = mapped_column(String(200), index=True)
    round_id: Mapped[str] = mapped_column(String(200))
    mentor_id: Mapped[str] = mapped_column(String(200))
    mentee_id: Mapped[str] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="active")
    formed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class MatchingRound(Base):
    __tablename__ = "matching_rounds"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    round_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    completed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    pairs_formed: Mapped[int] = mapped_column(Integer)


async def get_participant(
    session: AsyncSession, *, program_id: str, participant_id: str
) -> Participant | None:
    """One participant of a program."""
    return await session.get(Participant, (program_id, participant_id))


async def active_participants(
    session: AsyncSession, *, program_id: str, role: str
) -> list[Participant]:
    """The program's active participants of one role, in registration order."""
    rows = await session.scalars(
        select(Participant)
        .where(
            Participant.program_id == program_id,
            Participant.role == role,
            Participant.active.is_(True),
        )
        .order_by(Participant.registered_at, Participant.participant_id)
    )
    return list(rows)


async def active_pairs(session: AsyncSession, *, program_id: str) -> list[Pair]:
    """The program's pairs that are not ended."""
    rows = await session.scalars(
        select(Pair).where(Pair.program_id == program_id, Pair.status != "ended")
    )
    return list(rows)


async def get_round(
    session: AsyncSession, *, program_id: str, round_id: str
) -> MatchingRound | None:
    """A completed matching round, if it ran already."""
    return await session.get(MatchingRound, (program_id, round_id))


async def count_participants(session: AsyncSession, *, program_id: str) -> int:
    """How many participants the program has."""
    result = await session.execute(
        select(func.count()).select_from(Participant).where(Participant.program_id == program_id)
    )
    return int(result.scalar_one())
