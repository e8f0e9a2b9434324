"""notifications' tables and queries: contacts, deliveries (the email outbox) and their timers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import JSON, DateTime, Integer, LargeBinary, String, Text, func, select
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
    # what the pair chose for between sessions (charter.agreed touchpoint): a reading, a prompt
    touchpoint: Mapped[str | None] = mapped_column(Text, nullable=True)


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
    # pending, sent, failed; unsubscribed: not sent, the recipient refused the kind
    status: Mapped[str] = mapped_column(String(20), index=True)
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
    status: str = "pending",
    error: str | None = None,
) -> dict[str, object]:
    """A delivery (pending, or not sent with the reason) as a row for the batched writes."""
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
        "status": status,
        "attempts": 0,
        "sent_at": None,
        "last_error": error,
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


class Preference(Base):
    """A person's choice for low-urgency mail: immediate, or one daily digest."""

    __tablename__ = "preferences"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    participant_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    frequency: Mapped[str] = mapped_column(String(20))  # immediate, daily
    # the local hour of their daily digest; None: the deployment's DIGEST_HOUR (default 9)
    digest_hour: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class Unsubscription(Base):
    """A kind of non-essential mail (or '*': all of them) a person no longer receives."""

    __tablename__ = "unsubscriptions"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    participant_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(60), primary_key=True)
    unsubscribed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    # BY_PERSON (their link or the preferences page) or LEFT (participant.left); NULL: recorded
    # before revision 0008, either
    source: Mapped[str | None] = mapped_column(String(20), nullable=True)


BY_PERSON, LEFT = "person", "left"  # why an unsubscription was recorded


class HeldItem(Base):
    """A low-urgency notification waiting for its recipient's digest (their choice, or their
    daily cap reached); one per logical notification and recipient, like a delivery."""

    __tablename__ = "held_items"

    idempotency_key: Mapped[str] = mapped_column(String(500), primary_key=True)
    program_id: Mapped[str] = mapped_column(String(200), index=True)
    participant_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(60))
    subject: Mapped[str] = mapped_column(Text)
    headline: Mapped[str] = mapped_column(Text)
    link: Mapped[str] = mapped_column(Text)
    held_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    digest_window: Mapped[str] = mapped_column(String(20))  # the recipient's local date
    status: Mapped[str] = mapped_column(String(20))  # held, digested, unsubscribed


class DailyCount(Base):
    """Non-essential mails queued for a person on one local day (the frequency cap)."""

    __tablename__ = "daily_counts"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    participant_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    sent: Mapped[int] = mapped_column(Integer)


class Win(Base):
    """A public milestone, for its program's weekly wins digest."""

    __tablename__ = "wins"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    week: Mapped[str] = mapped_column(String(10), primary_key=True)
    milestone_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    names: Mapped[str] = mapped_column(Text)
    reached_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class AssessmentAnswer(Base):
    """That a person answered a quarter's program assessment (the scores go to insights)."""

    __tablename__ = "assessment_answers"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    participant_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    quarter: Mapped[str] = mapped_column(String(10), primary_key=True)
    answered_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


async def refused_kinds(
    session: AsyncSession, *, program_id: str, participant_ids: Collection[str]
) -> dict[str, set[str]]:
    """The kinds each of these people unsubscribed from (one query)."""
    refused: dict[str, set[str]] = {}
    for chunk in _chunks(participant_ids):
        rows = await session.execute(
            select(Unsubscription.participant_id, Unsubscription.kind).where(
                Unsubscription.program_id == program_id,
                Unsubscription.participant_id.in_(chunk),
            )
        )
        for pid, kind in rows:
            refused.setdefault(pid, set()).add(kind)
    return refused


def _chunks(ids: Collection[str], size: int = 1000) -> list[list[str]]:
    """IN lists of at most `size` (SQLite limits the parameters of one statement)."""
    items = sorted(ids)
    return [items[i : i + size] for i in range(0, len(items), size)]


@dataclass(frozen=True)
class Choice:
    """What a person chose for low-urgency mail: how often, and at which local hour."""

    frequency: str
    digest_hour: int | None


async def choices(
    session: AsyncSession, *, program_id: str, participant_ids: Collection[str]
) -> dict[str, Choice]:
    """Each person's frequency and digest hour, where they chose one (one query)."""
    chosen: dict[str, Choice] = {}
    for chunk in _chunks(participant_ids):
        rows = await session.execute(
            select(Preference.participant_id, Preference.frequency, Preference.digest_hour).where(
                Preference.program_id == program_id, Preference.participant_id.in_(chunk)
            )
        )
        chosen.update({pid: Choice(frequency, hour) for pid, frequency, hour in rows})
    return chosen


async def unsubscribe_counts(session: AsyncSession) -> dict[str, int]:
    """What /readyz counts of the unsubscriptions people chose (not those of people who left):
    how many (person, kind) refusals, and how many people made one (two small queries)."""
    chosen = select(Unsubscription.program_id, Unsubscription.participant_id).where(
        Unsubscription.source == BY_PERSON
    )
    refusals = await session.scalar(select(func.count()).select_from(chosen.subquery()))
    people = await session.scalar(select(func.count()).select_from(chosen.distinct().subquery()))
    return {"unsubscribes": refusals or 0, "unsubscribed_people": people or 0}


async def held_keys(session: AsyncSession, *, keys: Collection[str]) -> set[str]:
    """Which of these idempotency keys wait in (or went out with) a digest (one query)."""
    found: set[str] = set()
    for chunk in _chunks(keys):
        found.update(
            await session.scalars(
                select(HeldItem.idempotency_key).where(HeldItem.idempotency_key.in_(chunk))
            )
        )
    return found


async def program_contacts(session: AsyncSession, *, program_id: str) -> list[Contact]:
    """Everyone notifications can reach in a program, in a stable order."""
    return list(
        await session.scalars(
            select(Contact).where(Contact.program_id == program_id).order_by(Contact.participant_id)
        )
    )


async def daily_counts(
    session: AsyncSession,
    *,
    program_id: str,
    participant_ids: Collection[str],
    days: Collection[str],
) -> dict[tuple[str, str], DailyCount]:
    """The cap counters of these people on these local days, by (person, day) (one query)."""
    found: dict[tuple[str, str], DailyCount] = {}
    if not days:
        return found
    for chunk in _chunks(participant_ids):
        rows = await session.scalars(
            select(DailyCount).where(
                DailyCount.program_id == program_id,
                DailyCount.participant_id.in_(chunk),
                DailyCount.day.in_(list(days)),
            )
        )
        found.update({(row.participant_id, row.day): row for row in rows})
    return found
