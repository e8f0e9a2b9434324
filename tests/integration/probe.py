"""A small service used to test the delivery machinery against a real nats-server."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Integer, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.consumer import Subscription
from shared.errors import EventRejected, UnknownReference
from shared.events import (
    OpportunityOffered,
    ParticipantLeft,
    ParticipantRegistered,
    ParticipantUpdated,
)
from shared.outbox import add_delivery_tables
from shared.service import ServiceDefinition
from shared.unit_of_work import UnitOfWork


class Base(DeclarativeBase):
    pass


tables = add_delivery_tables(Base.metadata)


class Effect(Base):
    __tablename__ = "effects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    participant_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))


@dataclass
class Faults:
    """How many times a participant's registration fails before it succeeds."""

    fail_times: dict[str, int] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)


def probe_definition(faults: Faults) -> ServiceDefinition:
    async def on_registered(event: ParticipantRegistered, uow: UnitOfWork) -> None:
        pid = event.participant_id
        faults.attempts[pid] = faults.attempts.get(pid, 0) + 1
        uow.session.add(Effect(participant_id=pid, kind="registered"))
        uow.emit(
            OpportunityOffered(
                program_id=event.program_id,
                occurred_at=uow.clock.now(),
                opportunity_id=f"o-{pid}",
                participant_id=pid,
                kind="welcome",
                title="Welcome",
            )
        )
        await uow.session.flush()
        if faults.attempts[pid] <= faults.fail_times.get(pid, 0):
            raise ConnectionError("simulated transient failure after writing")

    async def on_updated(event: ParticipantUpdated, uow: UnitOfWork) -> None:
        known = await uow.session.scalar(
            select(Effect.id).where(Effect.participant_id == event.participant_id)
        )
        if known is None:
            raise UnknownReference(f"participant {event.participant_id!r} is not registered")
        uow.session.add(Effect(participant_id=event.participant_id, kind="updated"))

    async def on_left(event: ParticipantLeft, uow: UnitOfWork) -> None:
        raise EventRejected("probe never accepts a departure")

    return ServiceDefinition(
        name="probe",
        description="test probe",
        metadata=Base.metadata,
        tables=tables,
        subscriptions=[
            Subscription(ParticipantRegistered, on_registered),
            Subscription(ParticipantUpdated, on_updated),
            Subscription(ParticipantLeft, on_left),
        ],
        emits=[OpportunityOffered],
        migrations=False,
    )
