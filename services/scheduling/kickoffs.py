"""A newly formed pair's kickoff: its ids, whether and when it happens, and its invitation.

Pure decisions: the handler loads both people, calls `plan_kickoff_session`, stores the session
it returns and emits its SessionScheduled, if there is one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from enum import StrEnum

from services.scheduling import invitations
from services.scheduling.planning import HORIZON_DAYS, plan_kickoff
from shared.events import PairFormed, SessionKind, SessionScheduled
from shared.worktime import Availability, Interval

# ids of sessions are uuid5 names in this namespace, so every replica derives the same id
SESSIONS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:mentorship:scheduling:sessions")

SUMMARY = "Mentorship kickoff: {mentor} & {mentee}"
DESCRIPTION = (
    "Your first mentorship session: get to know each other, share what you hope "
    "to get out of the program, and agree how and how often you will meet."
)
NO_SLOT_NOTE = f"no shared working hour in the next {HORIZON_DAYS} days"


class SessionStatus(StrEnum):
    """Where a planned session stands (issue 7 adds held, missed, cancelled ...)."""

    SCHEDULED = "scheduled"
    UNSCHEDULABLE = "unschedulable"  # no slot inside both people's working hours


@dataclasses.dataclass(frozen=True)
class Attendee:
    """A participant as the kickoff needs them: who, where to invite, when they work."""

    participant_id: str
    email: str
    display_name: str
    availability: Availability


@dataclasses.dataclass(frozen=True)
class KickoffSession:
    """The kickoff to store, and the event that announces it (None when it has no slot)."""

    program_id: str
    session_id: str
    pair_id: str
    kind: SessionKind
    status: SessionStatus
    slot: Interval | None
    anchor_timezone: str
    uid: str
    sequence: int
    attendee_ids: tuple[str, ...]
    note: str | None
    scheduled: SessionScheduled | None


def kickoff_session_id(program_id: str, pair_id: str) -> str:
    """The id of a pair's kickoff, unique across programs (pair ids are unique only in one)."""
    # a JSON list keeps ("a/b", "c") and ("a", "b/c") apart, which a joined string would not
    return str(uuid.uuid5(SESSIONS, json.dumps([program_id, pair_id, SessionKind.KICKOFF.value])))


def plan_kickoff_session(
    event: PairFormed,
    mentor: Attendee,
    mentee: Attendee,
    *,
    organizer: invitations.Person,
    now: dt.datetime,
    lead_days: int,
) -> KickoffSession:
    """The pair's kickoff in both people's working hours, written in the mentor's zone."""
    session_id = kickoff_session_id(event.program_id, event.pair_id)
    slot = plan_kickoff(mentor.availability, mentee.availability, now=now, lead_days=lead_days)
    kickoff = KickoffSession(
        program_id=event.program_id,
        session_id=session_id,
        pair_id=event.pair_id,
        kind=SessionKind.KICKOFF,
        status=SessionStatus.UNSCHEDULABLE if slot is None else SessionStatus.SCHEDULED,
        slot=slot,
        anchor_timezone=mentor.availability.timezone,
        uid=f"{session_id}@mentorship",  # unique across programs, since the session id is
        sequence=0,
        attendee_ids=(mentor.participant_id, mentee.participant_id),
        note=NO_SLOT_NOTE if slot is None else None,
        scheduled=None,
    )
    if slot is None:
        return kickoff
    announced = _announcement(kickoff, slot, mentor, mentee, organizer=organizer, now=now)
    return dataclasses.replace(kickoff, scheduled=announced)


def _announcement(
    kickoff: KickoffSession,
    slot: Interval,
    mentor: Attendee,
    mentee: Attendee,
    *,
    organizer: invitations.Person,
    now: dt.datetime,
) -> SessionScheduled:
    """The session.scheduled of a kickoff with a slot, carrying its METHOD:REQUEST invitation."""
    invite = invitations.Invitation(
        uid=kickoff.uid,
        sequence=kickoff.sequence,
        start=slot.start,
        end=slot.end,
        anchor_timezone=kickoff.anchor_timezone,
        summary=SUMMARY.format(mentor=mentor.display_name, mentee=mentee.display_name),
        description=DESCRIPTION,
        organizer=organizer,
        attendees=[invitations.Person(p.email, p.display_name) for p in (mentor, mentee)],
        stamp=now,
    )
    return SessionScheduled(
        program_id=kickoff.program_id,
        occurred_at=now,
        session_id=kickoff.session_id,
        pair_id=kickoff.pair_id,
        kind=kickoff.kind,
        start=slot.start,
        end=slot.end,
        anchor_timezone=kickoff.anchor_timezone,
        attendee_ids=list(kickoff.attendee_ids),
        uid=kickoff.uid,
        sequence=kickoff.sequence,
        ical=invitations.request(invite),
    )
