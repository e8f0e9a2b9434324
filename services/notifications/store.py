"""notifications' tables and queries: contacts, deliveries (the email outbox) and their timers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence

from sqlalchemy import JSON, DateTime, Integer, LargeBinary, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.notifications.deliveries import SEND, Attendee, PlannedDelivery
from shared.outbox import add_delivery_tables
from shared.records import get_or_raise
from shared.timers import add_timer_table


class Base(DeclarativeBase):
    pass


delivery_tables = add_delivery_tables(Base.metadata)
timers = add_timer_table(Base.metadata)


class Contact(Base):
    """How to reach a participant."""

    __tablename__ = "contacts"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    participant_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    display_name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    role: Mapped[str | None] = mapped_column(String(20), nullable=True)

    def attendee(self) -> Attendee:
        """The contact as the domain sees it."""
        return Attendee(
            self.participant_id, self.display_name, self.email, self.timezone, self.role
        )


class Pair(Base):
    """A formed pair, as its mails speak of it: who mentors whom and why they were matched."""

    __tablename__ = "pairs"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    pair_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    mentor_id: Mapped[str] = mapped_column(String(200))
    mentee_id: Mapped[str] = mapped_column(String(200))
    reasons: Mapped[list[str]] = mapped_column(JSON)


class Delivery(Base):
    """One email to one recipient; the idempotency key makes it one per logical notification.

    Its sends (and their retries) are timer items of kind deliveries.SEND keyed by delivery_id.
    """

    __tablename__ = "deliveries"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(500), unique=True)
    recipient_id: Mapped[str] = mapped_column(String(200))
    recipient_email: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(60))
    source_event_id: Mapped[str] = mapped_column(String(36))
    message_id: Mapped[str] = mapped_column(String(300))
    message: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(20), index=True)  # pending, sent, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    traceparent: Mapped[str | None] = mapped_column(String(100), nullable=True)


async def get_contact(
    session: AsyncSession, *, program_id: str, participant_id: str
) -> Contact | None:
    """One participant's contact data, if known."""
    return await session.get(Contact, (program_id, participant_id))


async def contact_or_raise(
    session: AsyncSession, *, program_id: str, participant_id: str
) -> Contact:
    """One participant's contact data, or UnknownReference / ProgramMismatch saying why not."""
    return await get_or_raise(
        session,
        Contact,
        program_id,
        participant_id,
        what=f"participant {participant_id!r}",
        hint="publish participant.registered first",
    )


async def contacts_or_raise(
    session: AsyncSession, *, program_id: str, participant_ids: Sequence[str]
) -> list[Contact]:
    """The contact data of each participant, in order (one query); raises for the first missing."""
    found = {
        c.participant_id: c
        for c in await session.scalars(
            select(Contact).where(
                Contact.program_id == program_id, Contact.participant_id.in_(list(participant_ids))
            )
        )
    }
    for pid in participant_ids:
        if pid not in found:  # says why: unknown here, or another program's
            await contact_or_raise(session, program_id=program_id, participant_id=pid)
    return [found[pid] for pid in participant_ids]


async def queued_keys(session: AsyncSession, *, keys: Collection[str]) -> set[str]:
    """Which of these idempotency keys already have a delivery (one query)."""
    if not keys:
        return set()
    found = await session.scalars(
        select(Delivery.idempotency_key).where(Delivery.idempotency_key.in_(list(keys)))
    )
    return set(found)


async def get_pair(session: AsyncSession, *, program_id: str, pair_id: str) -> Pair | None:
    """A formed pair, if notifications heard of it."""
    return await session.get(Pair, (program_id, pair_id))


async def pair_or_raise(session: AsyncSession, *, program_id: str, pair_id: str) -> Pair:
    """A formed pair, or UnknownReference / ProgramMismatch saying why not."""
    return await get_or_raise(
        session,
        Pair,
        program_id,
        pair_id,
        what=f"pair {pair_id!r}",
        hint="publish pair.formed first",
    )


def add_delivery(
    session: AsyncSession,
    *,
    program_id: str,
    planned: PlannedDelivery,
    message: bytes,
    traceparent: str | None,
    status: str = "pending",
    error: str | None = None,
) -> Delivery:
    """Stores a planned delivery, pending with its MIME bytes (or failed, with the reason)."""
    delivery = Delivery(
        program_id=program_id,
        delivery_id=planned.delivery_id,
        idempotency_key=planned.idempotency_key,
        recipient_id=planned.recipient_id,
        recipient_email=planned.recipient_email,
        kind=planned.kind,
        source_event_id=planned.source_event_id,
        message_id=planned.message_id,
        message=message,
        status=status,
        attempts=0 if status == "pending" else 1,
        last_error=error,
        traceparent=traceparent,
    )
    session.add(delivery)
    return delivery


def delivery_row(
    *,
    program_id: str,
    planned: PlannedDelivery,
    message: bytes,
    traceparent: str | None,
) -> dict[str, object]:
    """A pending delivery as a row for the unit of work's batched writes."""
    return {
        "program_id": program_id,
        "delivery_id": planned.delivery_id,
        "idempotency_key": planned.idempotency_key,
        "recipient_id": planned.recipient_id,
        "recipient_email": planned.recipient_email,
        "kind": planned.kind,
        "source_event_id": planned.source_event_id,
        "message_id": planned.message_id,
        "message": message,
        "status": "pending",
        "attempts": 0,
        "sent_at": None,
        "last_error": None,
        "traceparent": traceparent,
    }


def send_timer_row(*, program_id: str, delivery_id: str, due_at: dt.datetime) -> dict[str, object]:
    """A delivery's send timer, armed for due_at, as a row for the batched writes."""
    return {
        "program_id": program_id,
        "kind": SEND,
        "key": delivery_id,
        "due_at": due_at.astimezone(dt.UTC),
        "status": "pending",
        "payload": {},
        "attempts": 0,
        "leased_until": None,
        "lease_token": None,
        "last_error": None,
        "finished_at": None,
    }


async def delivery_or_raise(
    session: AsyncSession, *, program_id: str, delivery_id: str
) -> Delivery:
    """One delivery, or UnknownReference / ProgramMismatch saying why not."""
    return await get_or_raise(
        session,
        Delivery,
        program_id,
        delivery_id,
        what=f"delivery {delivery_id!r}",
        hint="a send timer names a delivery that was never stored; cancel the timer",
    )


class CalendarEntry(Base):
    """An iCalendar UID this service sent invitations for: what a calendar reply answers."""

    __tablename__ = "calendar_entries"

    uid: Mapped[str] = mapped_column(String(300), primary_key=True)
    program_id: Mapped[str] = mapped_column(String(200))
    session_id: Mapped[str] = mapped_column(String(200))
    pair_id: Mapped[str] = mapped_column(String(200))
    attendee_ids: Mapped[list[str]] = mapped_column(JSON)
