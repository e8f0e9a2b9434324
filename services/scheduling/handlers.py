"""scheduling's event handlers: when X happens, do Y."""

from __future__ import annotations

import logging
from typing import Any

from services.scheduling import invitations, kickoffs, store
from shared.consumer import Subscription
from shared.events import PairFormed, ParticipantRegistered, ParticipantTimezoneChanged
from shared.unit_of_work import UnitOfWork
from shared.worktime import Availability

log = logging.getLogger("mentorship.scheduling")


def _attendee(person: store.Person) -> kickoffs.Attendee:
    availability = Availability.from_json(person.timezone, person.working_hours)
    return kickoffs.Attendee(person.participant_id, person.email, person.display_name, availability)


async def on_participant_registered(event: ParticipantRegistered, uow: UnitOfWork) -> None:
    """Keeps the person's zone, working hours and address (a re-registration replaces them)."""
    # on the hot path of a cohort import: one insert-or-update for the whole batch
    uow.upsert(
        store.Person,
        {
            "program_id": event.program_id,
            "participant_id": event.participant_id,
            "email": str(event.email),
            "display_name": event.display_name,
            "timezone": event.timezone,
            "working_hours": [h.to_json() for h in event.working_hours],
        },
    )


async def on_timezone_changed(event: ParticipantTimezoneChanged, uow: UnitOfWork) -> None:
    """Sessions planned from now on use the new zone (re-planning comes with the series work)."""
    person = await store.person_or_raise(
        uow.session, program_id=event.program_id, participant_id=event.participant_id
    )
    person.timezone = event.new_timezone
    if event.working_hours is not None:
        person.working_hours = [h.to_json() for h in event.working_hours]


async def on_pair_formed(event: PairFormed, uow: UnitOfWork) -> None:
    """Plans the kickoff inside both people's working hours and sends the invitation."""
    program, session = event.program_id, uow.session
    session_id = kickoffs.kickoff_session_id(program, event.pair_id)
    if await store.get_session(session, program_id=program, session_id=session_id):
        return  # the pair's kickoff is planned already: a repeated pair.formed changes nothing
    mentor = await store.person_or_raise(
        session, program_id=program, participant_id=event.mentor_id
    )
    mentee = await store.person_or_raise(
        session, program_id=program, participant_id=event.mentee_id
    )
    settings = uow.settings
    kickoff = kickoffs.plan_kickoff_session(
        event,
        _attendee(mentor),
        _attendee(mentee),
        organizer=invitations.Person(settings.mail_from, settings.mail_from_name),
        now=uow.clock.now(),
        lead_days=settings.kickoff_lead_days,
    )
    store.add_kickoff(session, kickoff=kickoff)
    if kickoff.scheduled is None:
        log.warning("pair %s of %s: %s", event.pair_id, program, kickoff.note)
    else:
        uow.emit(kickoff.scheduled)


SUBSCRIPTIONS: list[Subscription[Any]] = [
    Subscription(ParticipantRegistered, on_participant_registered),
    Subscription(ParticipantTimezoneChanged, on_timezone_changed, after=(ParticipantRegistered,)),
    Subscription(
        PairFormed, on_pair_formed, after=(ParticipantRegistered, ParticipantTimezoneChanged)
    ),
]
