"""scheduling's tables and queries."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.outbox import add_delivery_tables


class Base(DeclarativeBase):
    pass


delivery = add_delivery_tables(Base.metadata)


class Person(Base):
    """What scheduling knows of a participant: where, when, and how to invite them."""

    __tablename__ = "people"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    participant_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    display_name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    working_hours: Mapped[list[dict[str, Any]]] = mapped_column(JSON)


class Session(Base):
    """One planned meeting of a pair."""

    __tablename__ = "sessions"

    session_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    program_id: Mapped[str] = mapped_column(String(200), index=True)
    pair_id: Mapped[str] = mapped_column(String(200), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))
    start: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    end: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    anchor_timezone: Mapped[str] = mapped_column(String(64))
    uid: Mapped[str] = mapped_column(String(300), unique=True)
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    attendee_ids: Mapped[list[str]] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(String(500), nullable=True)


async def get_person(
    session: AsyncSession, *, program_id: str, participant_id: str
) -> Person | None:
    """One participant as scheduling knows them."""
    return await session.get(Person, (program_id, participant_id))


async def get_session(session: AsyncSession, *, session_id: str) -> Session | None:
    """One planned session."""
    return await session.get(Session, session_id)
