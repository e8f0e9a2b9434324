"""scheduling's tables and queries; every record is keyed by (program_id, id)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, String
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.scheduling.kickoffs import KickoffSession
from shared.outbox import add_delivery_tables
from shared.records import get_or_raise


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
    __table_args__ = (Index("ix_sessions_program_pair", "program_id", "pair_id"),)

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    pair_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))
    start: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    end: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    anchor_timezone: Mapped[str] = mapped_column(String(64))
    # calendars match updates by UID alone, so it is unique across programs
    uid: Mapped[str] = mapped_column(String(300), unique=True)
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    attendee_ids: Mapped[list[str]] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(String(500), nullable=True)


async def get_person(
    session: AsyncSession, *, program_id: str, participant_id: str
) -> Person | None:
    """One participant as scheduling knows them, if it does."""
    return await session.get(Person, (program_id, participant_id))


async def person_or_raise(session: AsyncSession, *, program_id: str, participant_id: str) -> Person:
    """One participant of the program; UnknownReference or ProgramMismatch when not."""
    return await get_or_raise(
        session,
        Person,
        program_id,
        participant_id,
        what=f"participant {participant_id!r}",
        hint="publish participant.registered first",
    )


async def get_session(session: AsyncSession, *, program_id: str, session_id: str) -> Session | None:
    """One planned session of the program, if it exists."""
    return await session.get(Session, (program_id, session_id))


def add_kickoff(session: AsyncSession, *, kickoff: KickoffSession) -> Session:
    """Adds a pair's planned (or unschedulable) kickoff."""
    row = Session(
        program_id=kickoff.program_id,
        session_id=kickoff.session_id,
        pair_id=kickoff.pair_id,
        kind=kickoff.kind.value,
        status=kickoff.status.value,
        start=kickoff.slot.start if kickoff.slot else None,
        end=kickoff.slot.end if kickoff.slot else None,
        anchor_timezone=kickoff.anchor_timezone,
        uid=kickoff.uid,
        sequence=kickoff.sequence,
        attendee_ids=list(kickoff.attendee_ids),
        note=kickoff.note,
    )
    session.add(row)
    return row
