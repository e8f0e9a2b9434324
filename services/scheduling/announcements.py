"""What scheduling tells the world: session events carrying their iTIP calendar objects.

Pure: built from a meeting (one UID: a single session or a series) and its occurrences as
stored, so a first invitation, an update and a cancellation always describe the same meeting.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from services.scheduling import invitations, kinds
from shared.events import (
    Role,
    SessionCancelled,
    SessionKind,
    SessionRescheduled,
    SessionScheduled,
    SessionUnschedulable,
)
from shared.events.sessions import SessionAttendee


@dataclass(frozen=True)
class Person:
    """An attendee as invitations name them."""

    participant_id: str
    email: str
    display_name: str
    timezone: str
    role: Role


@dataclass(frozen=True)
class Occurrence:
    """One stored occurrence: its rule time (None for a single session) and when it is."""

    session_id: str
    recurrence_id: dt.datetime | None
    start: dt.datetime | None
    end: dt.datetime | None
    scheduled: bool
    status_kept: bool = False  # held or missed: it stays in calendars, unlike a cancellation


@dataclass(frozen=True)
class Meeting:
    """What one UID stands for, as stored."""

    program_id: str
    meeting_id: str
    pair_id: str
    kind: SessionKind
    uid: str
    sequence: int
    timezone: str
    minutes: int
    rrule: str | None
    first_start: dt.datetime | None  # the rule's first start (UTC)
    people: tuple[Person, ...]
    organizer: invitations.Person
    video_url: str | None = None


def _attendees(meeting: Meeting) -> list[SessionAttendee]:
    return list(_attendees_of(meeting.people))


@functools.lru_cache(maxsize=1024)
def _attendees_of(people: tuple[Person, ...]) -> tuple[SessionAttendee, ...]:
    # built once per set of people (frozen, so shared): a zone change sends 27 events for one
    # meeting's people, and validating the attendees was an eighth of building each event
    return tuple(
        SessionAttendee(
            participant_id=p.participant_id,
            email=p.email,
            display_name=p.display_name,
            timezone=p.timezone,
            role=p.role,
        )
        for p in people
    )


def _summary(meeting: Meeting) -> str:
    names = " & ".join(p.display_name for p in meeting.people)
    return f"{kinds.profile(meeting.kind).title}: {names}"


def _invitation(meeting: Meeting, start: dt.datetime, end: dt.datetime, now: dt.datetime,
                **extra: object) -> invitations.Invitation:  # fmt: skip
    return invitations.Invitation(
        uid=meeting.uid,
        sequence=meeting.sequence,
        start=start,
        end=end,
        anchor_timezone=meeting.timezone,
        summary=_summary(meeting),
        description=kinds.profile(meeting.kind).agenda,
        organizer=meeting.organizer,
        attendees=[
            invitations.Person(p.email, p.display_name, "REQ-PARTICIPANT") for p in meeting.people
        ],
        stamp=now,
        url=meeting.video_url,
        **extra,  # type: ignore[arg-type]
    )


def _instance(o: Occurrence) -> invitations.Instance:
    assert o.recurrence_id is not None and o.start is not None and o.end is not None
    return invitations.Instance(o.recurrence_id, o.start, o.end)


def full_request(meeting: Meeting, occurrences: Sequence[Occurrence], now: dt.datetime) -> str:
    """The whole meeting as METHOD:REQUEST: a single session, or the series with its moves."""
    if meeting.rrule is None:
        [single] = occurrences
        assert single.start is not None and single.end is not None
        return invitations.request(_invitation(meeting, single.start, single.end, now))
    assert meeting.first_start is not None
    length = dt.timedelta(minutes=meeting.minutes)
    moved = [_instance(o) for o in occurrences if o.scheduled and o.start != o.recurrence_id]
    skipped = [o.recurrence_id for o in occurrences if not o.scheduled and o.recurrence_id]
    invite = _invitation(
        meeting, meeting.first_start, meeting.first_start + length, now,
        rrule=meeting.rrule, exdates=skipped, overrides=moved,
    )  # fmt: skip
    return invitations.request(invite)


def feed_entry(
    meeting: Meeting, occurrences: Sequence[Occurrence], now: dt.datetime
) -> tuple[invitations.Invitation, str] | None:
    """The meeting as a feed shows it: moved occurrences, cancelled ones excluded."""
    timed = [o for o in occurrences if o.start is not None and o.end is not None]
    if meeting.rrule is None:
        if not timed:
            return None
        single = timed[0]
        status = "CONFIRMED" if single.scheduled or single.status_kept else "CANCELLED"
        return _invitation(meeting, single.start, single.end, now), status  # type: ignore[arg-type]
    assert meeting.first_start is not None
    kept = [o for o in occurrences if o.scheduled or o.status_kept]
    moved = [_instance(o) for o in kept if o.start is not None and o.start != o.recurrence_id]
    skipped = [o.recurrence_id for o in occurrences if o not in kept and o.recurrence_id]
    length = dt.timedelta(minutes=meeting.minutes)
    invite = _invitation(
        meeting, meeting.first_start, meeting.first_start + length, now,
        rrule=meeting.rrule, exdates=skipped, overrides=moved,
    )  # fmt: skip
    return invite, "CONFIRMED"


def scheduled(
    meeting: Meeting, occurrences: Sequence[Occurrence], now: dt.datetime
) -> SessionScheduled | None:
    """session.scheduled for a new meeting, or None when none of it can happen."""
    happening = [o for o in occurrences if o.scheduled and o.start and o.end]
    if not happening:
        return None
    first = happening[0]
    assert first.start is not None and first.end is not None
    return SessionScheduled(
        program_id=meeting.program_id,
        occurred_at=now,
        session_id=first.session_id if meeting.rrule is None else meeting.meeting_id,
        pair_id=meeting.pair_id,
        kind=meeting.kind,
        start=first.start,
        end=first.end,
        anchor_timezone=meeting.timezone,
        attendee_ids=[p.participant_id for p in meeting.people],
        uid=meeting.uid,
        sequence=meeting.sequence,
        ical=full_request(meeting, occurrences, now),
        series_id=None if meeting.rrule is None else meeting.meeting_id,
        rrule=meeting.rrule,
        agenda=kinds.profile(meeting.kind).agenda,
        video_url=meeting.video_url,
        attendees=_attendees(meeting),
    )


def rescheduled(
    meeting: Meeting, occurrence: Occurrence, *, previous_start: dt.datetime, reason: str,
    now: dt.datetime,
) -> SessionRescheduled:  # fmt: skip
    """session.rescheduled for one occurrence moved (meeting.sequence already raised)."""
    assert occurrence.start is not None and occurrence.end is not None
    if meeting.rrule is None:
        ical = invitations.request(_invitation(meeting, occurrence.start, occurrence.end, now))
    else:
        invite = _invitation(meeting, occurrence.start, occurrence.end, now)
        ical = invitations.request_instances(invite, [_instance(occurrence)])
    return SessionRescheduled(
        program_id=meeting.program_id,
        occurred_at=now,
        session_id=occurrence.session_id,
        pair_id=meeting.pair_id,
        previous_start=previous_start,
        start=occurrence.start,
        end=occurrence.end,
        attendee_ids=[p.participant_id for p in meeting.people],
        uid=meeting.uid,
        sequence=meeting.sequence,
        ical=ical,
        reason=reason,
        kind=meeting.kind,
        series_id=None if meeting.rrule is None else meeting.meeting_id,
        recurrence_id=occurrence.recurrence_id,
        anchor_timezone=meeting.timezone,
        agenda=kinds.profile(meeting.kind).agenda,
        video_url=meeting.video_url,
        attendees=_attendees(meeting),
    )


def cancelled(
    meeting: Meeting, occurrences: Sequence[Occurrence], *, reason: str, now: dt.datetime
) -> SessionCancelled:
    """session.cancelled for some occurrences (or the single session), sequence raised."""
    series = meeting.rrule is not None
    timed = [o for o in occurrences if o.start is not None and o.end is not None]
    if series:
        invite = _invitation(meeting, timed[0].start, timed[0].end, now)  # type: ignore[arg-type]
        ical = invitations.cancel(invite, [_instance(o) for o in timed])
    else:
        [single] = timed
        ical = invitations.cancel(_invitation(meeting, single.start, single.end, now))  # type: ignore[arg-type]
    return SessionCancelled(
        program_id=meeting.program_id,
        occurred_at=now,
        session_id=meeting.meeting_id if series else timed[0].session_id,
        pair_id=meeting.pair_id,
        attendee_ids=[p.participant_id for p in meeting.people],
        uid=meeting.uid,
        sequence=meeting.sequence,
        ical=ical,
        reason=reason,
        kind=meeting.kind,
        series_id=meeting.meeting_id if series else None,
        recurrence_ids=[o.recurrence_id for o in timed if o.recurrence_id] if series else [],
        session_ids=[o.session_id for o in timed],
        starts=[o.start for o in timed if o.start],
        attendees=_attendees(meeting),
    )


def unschedulable(
    program_id: str,
    pair_id: str,
    kind: SessionKind,
    *,
    reason: str,
    attendee_ids: Sequence[str],
    now: dt.datetime,
    occurrence: Occurrence | None = None,
) -> SessionUnschedulable:
    """session.unschedulable: the pair (or one occurrence) has no slot, and why."""
    return SessionUnschedulable(
        program_id=program_id,
        occurred_at=now,
        pair_id=pair_id,
        kind=kind,
        reason=reason[:1000],
        session_id=None if occurrence is None else occurrence.session_id,
        recurrence_id=None if occurrence is None else occurrence.recurrence_id,
        attendee_ids=list(attendee_ids),
    )
