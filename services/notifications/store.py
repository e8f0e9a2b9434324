"""notifications' tables and queries."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, Integer, LargeBinary, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.outbox import add_delivery_tables


class Base(DeclarativeBase):
    pass


delivery_tables = add_delivery_tables(Base.metadata)


class Contact(Base):
    """How to reach a participant."""

    __tablename__ = "contacts"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    participant_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    display_name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))


class Delivery(Base):
    """One email to one recipient; the idempotency key makes it one per logical notification."""

    __tablename__ = "deliveries"

    delivery_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(300), unique=True)
    program_id: Mapped[str] = mapped_column(String(200), index=True)
    recipient_id: Mapped[str] = mapped_column(String(200))
    recipient_email: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(60))
    source_event_id: Mapped[str] = mapped_column(String(36))
    message_id: Mapped[str] = mapped_column(String(300))
    message: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(20), index=True)  # pending, sent, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    traceparent: Mapped[str | None] = mapped_column(String(100), nullable=True)


async def get_contact(
    session: AsyncSession, *, program_id: str, participant_id: str
) -> Contact | None:
    """One participant's contact data."""
    return await session.get(Contact, (program_id, participant_id))


async def delivery_exists(session: AsyncSession, *, idempotency_key: str) -> bool:
    """Whether this logical notification was already queued for this recipient."""
    found = await session.scalar(
        select(Delivery.delivery_id).where(Delivery.idempotency_key == idempotency_key)
    )
    return found is not None


async def due_deliveries(session: AsyncSession, *, now: dt.datetime, limit: int) -> list[Delivery]:
    """Pending deliveries whose next attempt is due, oldest first."""
    rows = await session.scalars(
        select(Delivery)
        .where(Delivery.status == "pending", Delivery.next_attempt_at <= now)
        .order_by(Delivery.next_attempt_at, Delivery.delivery_id)
        .limit(limit)
    )
    return list(rows)
