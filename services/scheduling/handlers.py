"""scheduling's event handlers: when X happens, do Y."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from services.scheduling import invitations, store
from services.scheduling.planning import plan_kickoff
from shared.consumer import Subscription, UnknownReference
from shared.events import (
    PairFormed,
    ParticipantRegistered,
    ParticipantTimezoneChanged,
    SessionKind,
    SessionScheduled,
)
from shared.outbox import UnitOfWork
from shared.settings import Settings
from shared.worktime import Availability

log = logging.getLogger("mentorship.scheduling")


def _availability(person: store.Person) -> Availability:
    return Availability.from_json(person.timezone, person.working_hours)


async def on_participant_registered(event: ParticipantRegistered, uow: UnitOfWork) -> None:
    """Keeps the person's zone, working hours and address (a re-registration replaces them)."""
    person = await store.get_person(
        uow.session, program_id=event.program_id, participant_id=event.participant_id
    )
    if person is None:
        person = store.Person(program_id=event.program_id, participant_id=event.participant_id)
        uow.session.add(person)
    person.email = str(event.email)
    person.display_name = event.display_name
    person.timezone = event.timezone
    person.working_hours = [h.model_dump(mode="json") for h in event.working_hours]


async def on_timezone_changed(event: ParticipantTimezoneChanged, uow: UnitOfWork) -> None:
    """Sessions planned from now on use the new zone (re-planning comes with the series work)."""
    person = await _person(uow, event.program_id, event.participant_id)
    person.timezone = event.new_timezone
    if event.working_hours is not None:
        person.working_hours = [h.model_dump(mode="json") for h in event.working_hours]


async def _person(uow: UnitOfWork, program_id: str, participant_id: str) -> store.Person:
    person = await store.get_person(
        uow.session, program_id=program_id, participant_id=participant_id
    )
    if person is None:
        raise UnknownReference(
            f"participant {participant_id!r} of program {program_id!r} is unknown to scheduling; "
            "publish participant.registered first"
        )
    return person


def make_on_pair_formed(settings: Settings) -> Callable[[PairFormed, UnitOfWork], Awaitable[None]]:
    """The pair.formed handler, with the program's settings (sender, lead time)."""

    async def on_pair_formed(event: PairFormed, uow: UnitOfWork) -> None:
        """Plans the kickoff inside both people's working hours and sends the invitation."""
        mentor = await _person(uow, event.program_id, event.mentor_id)
        mentee = await _person(uow, event.program_id, event.mentee_id)
        session_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{event.pair_id}/kickoff"))
        if await store.get_session(uow.session, session_id=session_id):
            return
        slot = plan_kickoff(
            _availability(mentor),
            _availability(mentee),
            now=uow.clock.now(),
            lead_days=settings.kickoff_lead_days,
        )
        row = store.Session(
            session_id=session_id,
            program_id=event.program_id,
            pair_id=event.pair_id,
            kind=SessionKind.KICKOFF.value,
            anchor_timezone=mentor.timezone,
            uid=f"{session_id}@mentorship",
            sequence=0,
            attendee_ids=[mentor.participant_id, mentee.participant_id],
        )
        uow.session.add(row)
        if slot is None:
            row.status = "unschedulable"
            row.note = "no shared working hour in the next four weeks"
            log.warning("pair %s: no kickoff slot in both people's working hours", event.pair_id)
            return
        row.status, row.start, row.end = "scheduled", slot.start, slot.end
        ical = invitations.request(
            invitations.Invitation(
                uid=row.uid,
                sequence=0,
                start=slot.start,
                end=slot.end,
                anchor_timezone=mentor.timezone,
                summary=f"Mentorship kickoff: {mentor.display_name} & {mentee.display_name}",
                description=(
                    "Your first mentorship session: get to know each other, share what you hope "
                    "to get out of the program, and agree how and how often you will meet."
                ),
                organizer=invitations.Person(settings.mail_from, settings.mail_from_name),
                attendees=[
                    invitations.Person(mentor.email, mentor.display_name),
                    invitations.Person(mentee.email, mentee.display_name),
                ],
                stamp=uow.clock.now(),
            )
        )
        uow.emit(
            SessionScheduled(
                program_id=event.program_id,
                occurred_at=uow.clock.now(),
                session_id=session_id,
                pair_id=event.pair_id,
                kind=SessionKind.KICKOFF,
                start=slot.start,
                end=slot.end,
                anchor_timezone=mentor.timezone,
                attendee_ids=row.attendee_ids,
                uid=row.uid,
                sequence=0,
                ical=ical,
            )
        )

    return on_pair_formed


def subscriptions(settings: Settings) -> list[Subscription[Any]]:
    """What scheduling reacts to."""
    return [
        Subscription(ParticipantRegistered, on_participant_registered),
        Subscription(
            ParticipantTimezoneChanged, on_timezone_changed, after=(ParticipantRegistered,)
        ),
        Subscription(
            PairFormed,
            make_on_pair_formed(settings),
            after=(ParticipantRegistered, ParticipantTimezoneChanged),
        ),
    ]
