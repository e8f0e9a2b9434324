"""scheduling's tables and queries; every record is keyed by (program_id, id)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, String, cast, null, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.outbox import add_delivery_tables
from shared.records import get_or_raise
from shared.timers import add_timer_table
from shared.worktime import Interval


class Base(DeclarativeBase):
    pass


delivery = add_delivery_tables(Base.metadata)
timers = add_timer_table(Base.metadata)


def utc(value: dt.datetime) -> dt.datetime:
    """An instant read back from the database (SQLite hands it back naive) as aware UTC."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Person(Base):
    """What scheduling knows of a participant: where, when, and how to invite them."""

    __tablename__ = "people"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    participant_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    display_name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    working_hours: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    role: Mapped[str | None] = mapped_column(String(20), nullable=True)
    # how many sessions were put at the edge of this person's working day (fairness)
    edge_burden: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Meeting(Base):
    """What one calendar UID stands for: a single session (kickoff) or a recurring series."""

    __tablename__ = "meetings"
    __table_args__ = (Index("ix_meetings_program_pair", "program_id", "pair_id"),)

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    meeting_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    pair_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    uid: Mapped[str] = mapped_column(String(300), unique=True)
    sequence: Mapped[int] = mapped_column(Integer, default=0)  # raised on every object sent
    timezone: Mapped[str] = mapped_column(String(64))
    minutes: Mapped[int] = mapped_column(Integer)
    rrule: Mapped[str | None] = mapped_column(String(200), nullable=True)
    first_start: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    mentor_id: Mapped[str] = mapped_column(String(200))
    mentee_id: Mapped[str] = mapped_column(String(200))


class Session(Base):
    """One occurrence a pair meets at (a kickoff, or one of a series)."""

    __tablename__ = "sessions"
    __table_args__ = (
        Index("ix_sessions_program_pair", "program_id", "pair_id"),
        Index("ix_sessions_program_mentor", "program_id", "mentor_id", "start"),
        Index("ix_sessions_program_mentee", "program_id", "mentee_id", "start"),
    )

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    pair_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))
    start: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    end: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    anchor_timezone: Mapped[str] = mapped_column(String(64))
    uid: Mapped[str] = mapped_column(String(300))  # the meeting's: occurrences share it
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    attendee_ids: Mapped[list[str]] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(String(500), nullable=True)
    meeting_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    recurrence_id: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    mentor_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    mentee_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # participant id -> whether they were there, as confirmed (held, missed)
    attendance: Mapped[dict[str, bool] | None] = mapped_column(JSON, nullable=True)


class Checkin(Base):
    """One check-in a mentee owes: when it was due, whether it came, how far it escalated."""

    __tablename__ = "checkins"
    __table_args__ = (Index("ix_checkins_program_pair", "program_id", "pair_id"),)

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    checkin_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    pair_id: Mapped[str] = mapped_column(String(200))
    participant_id: Mapped[str] = mapped_column(String(200))  # the mentee who reports
    mentor_id: Mapped[str] = mapped_column(String(200))
    due_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20))  # due, submitted
    level: Mapped[int] = mapped_column(Integer, default=0)  # highest escalation sent
    submitted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Feed(Base):
    """A person's ICS feed: the hash of its unguessable token, until revoked."""

    __tablename__ = "feeds"
    __table_args__ = (Index("ix_feeds_program_participant", "program_id", "participant_id"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256, hex
    program_id: Mapped[str] = mapped_column(String(200))
    participant_id: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Absence(Base):
    """A stretch a participant cannot meet (illness, leave), as UTC instants."""

    __tablename__ = "absences"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    participant_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    start: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    end: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class Pause(Base):
    """A pair's pause while it lasts: until when, its check-in pace, a charter agreed meanwhile.

    The row is there from pair.paused to pair.resumed (or the pause's end, or pair.ended).
    """

    __tablename__ = "pauses"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    pair_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    paused_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # days between check-ins when the pause began (None: none were armed)
    checkin_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # the latest charter.agreed (its JSON) that came during the pause, applied when it ends
    charter: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


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


async def session_or_raise(session: AsyncSession, *, program_id: str, session_id: str) -> Session:
    """One session of the program; UnknownReference or ProgramMismatch when not."""
    return await get_or_raise(
        session,
        Session,
        program_id,
        session_id,
        what=f"session {session_id!r}",
        hint="use the session_id of a session.scheduled or session.rescheduled",
    )


async def named_occurrence(
    session: AsyncSession,
    *,
    program_id: str,
    session_id: str,
    recurrence_id: dt.datetime | None,
    now: dt.datetime,
) -> Session | None:
    """The occurrence a link or a tool names: a session id, or a series' id and a rule time.

    A series' id without a rule time names its latest occurrence that has started by `now`
    (the one a "we met" link in its invitation mail is answered for). None when nothing fits.
    """
    row = await get_session(session, program_id=program_id, session_id=session_id)
    if row is not None:
        return row
    meeting = await get_meeting(session, program_id=program_id, meeting_id=session_id)
    if meeting is None or meeting.rrule is None:
        return None
    rows = await occurrences(session, meeting)
    if recurrence_id is not None:
        wanted = recurrence_id.astimezone(dt.UTC)
        return next((r for r in rows if r.recurrence_id and utc(r.recurrence_id) == wanted), None)
    started = [
        r for r in rows if r.start is not None and utc(r.start) <= now and r.status != "cancelled"
    ]
    return max(started, key=lambda r: utc(r.start), default=None)  # type: ignore[arg-type]


async def get_checkin(session: AsyncSession, *, program_id: str, checkin_id: str) -> Checkin | None:
    """One check-in of the program, if it exists."""
    return await session.get(Checkin, (program_id, checkin_id))


async def checkin_or_raise(session: AsyncSession, *, program_id: str, checkin_id: str) -> Checkin:
    """One check-in of the program; UnknownReference or ProgramMismatch when not."""
    return await get_or_raise(
        session,
        Checkin,
        program_id,
        checkin_id,
        what=f"check-in {checkin_id!r}",
        hint="use the checkin_id of a checkin.due",
    )


async def get_meeting(session: AsyncSession, *, program_id: str, meeting_id: str) -> Meeting | None:
    """One meeting (a kickoff or a series) of the program, if it exists."""
    return await session.get(Meeting, (program_id, meeting_id))


async def meeting_of(session: AsyncSession, row: Session) -> Meeting:
    """The meeting (UID) an occurrence belongs to."""
    meeting = await session.get(Meeting, (row.program_id, row.meeting_id or row.session_id))
    if meeting is None:
        raise LookupError(f"session {row.session_id!r} has no meeting; run `mentorship migrate`")
    return meeting


async def busy(
    session: AsyncSession,
    *,
    program_id: str,
    participant_id: str,
    after: dt.datetime,
    exclude: Iterable[str] = (),
) -> list[Interval]:
    """The person's planned sessions ending after `after`, and their absences."""
    planned, absent = await busy_spans(
        session, program_id=program_id, participant_id=participant_id, after=after
    )
    skip = set(exclude)
    return [i for sid, i in planned.items() if sid not in skip] + absent


async def busy_spans(
    session: AsyncSession, *, program_id: str, participant_id: str, after: dt.datetime
) -> tuple[dict[str, Interval], list[Interval]]:
    """The person's planned sessions ending after `after` by session id, and their absences."""
    found = await busy_spans_of(
        session, program_id=program_id, participant_ids=[participant_id], after=after
    )
    return found[participant_id]


async def future_sessions(
    session: AsyncSession,
    *,
    program_id: str,
    after: dt.datetime,
    participant_id: str | None = None,
    pair_id: str | None = None,
    statuses: Sequence[str] = ("scheduled",),
) -> list[Session]:
    """A person's or a pair's occurrences starting after `after`, earliest first."""
    query = select(Session).where(
        Session.program_id == program_id,
        Session.status.in_(statuses),
        or_(Session.start > after, Session.recurrence_id > after),
    )
    if pair_id is not None:
        query = query.where(Session.pair_id == pair_id)
    if participant_id is not None:  # per role, each on its index (see busy_spans_of)
        as_mentor = query.where(Session.mentor_id == participant_id)
        as_mentee = query.where(Session.mentee_id == participant_id)
        both = select(Session).from_statement(union_all(as_mentor, as_mentee))
        rows = list(await session.scalars(both))
    else:
        rows = list(await session.scalars(query))
    return sorted(rows, key=lambda r: utc(r.start or r.recurrence_id or after))


async def occurrences(session: AsyncSession, meeting: Meeting) -> list[Session]:
    """Every occurrence of a meeting, in rule order."""
    rows = await session.scalars(
        select(Session).where(
            Session.program_id == meeting.program_id, Session.meeting_id == meeting.meeting_id
        )
    )
    return sorted(rows, key=lambda r: utc(r.recurrence_id or r.start or dt.datetime.min))


async def person_meetings(
    session: AsyncSession, *, program_id: str, participant_id: str
) -> list[Meeting]:
    """Every meeting the person is invited to, oldest first."""
    rows = await session.scalars(
        select(Meeting).where(
            Meeting.program_id == program_id,
            or_(Meeting.mentor_id == participant_id, Meeting.mentee_id == participant_id),
        )
    )
    return sorted(rows, key=lambda m: (m.pair_id, m.meeting_id))


async def kickoffs_of(session: AsyncSession, *, program_id: str, mentee_id: str) -> list[Meeting]:
    """The kickoff meetings of every pair the person is the mentee of (one per pair)."""
    rows = await session.scalars(
        select(Meeting).where(
            Meeting.program_id == program_id,
            Meeting.mentee_id == mentee_id,
            Meeting.kind == "kickoff",
        )
    )
    return list(rows)


async def meetings_by_id(
    session: AsyncSession, *, program_id: str, meeting_ids: Sequence[str]
) -> list[Meeting]:
    """The program's meetings of these ids (those that exist), in one query."""
    if not meeting_ids:
        return []
    rows = await session.scalars(
        select(Meeting).where(
            Meeting.program_id == program_id, Meeting.meeting_id.in_(list(meeting_ids))
        )
    )
    return list(rows)


async def people_by_id(
    session: AsyncSession, *, program_id: str, participant_ids: Sequence[str]
) -> list[Person]:
    """The program's participants of these ids (those scheduling knows), in one query."""
    if not participant_ids:
        return []
    rows = await session.scalars(
        select(Person).where(
            Person.program_id == program_id, Person.participant_id.in_(list(participant_ids))
        )
    )
    return list(rows)


async def busy_spans_of(
    session: AsyncSession, *, program_id: str, participant_ids: Sequence[str], after: dt.datetime
) -> dict[str, tuple[dict[str, Interval], list[Interval]]]:
    """`busy_spans` for several people at once: one query, not two per person."""
    ids = list(participant_ids)
    found: dict[str, tuple[dict[str, Interval], list[Interval]]] = {p: ({}, []) for p in ids}
    if not ids:
        return found
    # one SELECT per role, UNION ALL: with OR across the two columns SQLite searched the
    # program's whole table (only the program_id prefix of an index), which grew with every
    # pair planned; each half uses its (program, person, start) index. The absences come in
    # the same statement (no session id): a statement fewer in every planning and re-check
    columns = (Session.session_id, Session.start, Session.end, Session.mentor_id, Session.mentee_id)
    kept = (Session.program_id == program_id, Session.status == "scheduled", Session.end > after)
    none = cast(null(), String(200))
    rows: Any = await session.execute(
        union_all(
            select(*columns).where(*kept, Session.mentor_id.in_(ids)),
            select(*columns).where(*kept, Session.mentee_id.in_(ids)),
            select(none, Absence.start, Absence.end, Absence.participant_id, none).where(
                Absence.program_id == program_id,
                Absence.participant_id.in_(ids),
                Absence.end > after,
            ),
        )
    )
    for sid, start, end, mentor, mentee in rows:
        if sid is None:  # an absence of `mentor` (the participant column)
            found[mentor][1].append(Interval(utc(start), utc(end)))
        elif start and end:
            for pid in (mentor, mentee):
                if pid in found:
                    found[pid][0][sid] = Interval(utc(start), utc(end))
    return found
