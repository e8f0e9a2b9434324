"""Meetings as stored, changed through the unit of work: add a plan, move, cancel, re-check.

The glue between handlers and the pure modules: it loads people and their busy time, asks
`plans`/`replanning` what to do, writes the rows, and emits what `announcements` builds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from services.scheduling import announcements, followups, invitations, replanning, store
from services.scheduling.planning import Planner, Rules, Slot
from services.scheduling.plans import MeetingPlan, Status
from shared.events import Role, SessionKind
from shared.unit_of_work import UnitOfWork
from shared.worktime import Availability, Interval

_Spans = tuple[dict[str, Interval], list[Interval]]  # planned sessions by id, absences


def rules_of(uow: UnitOfWork) -> Rules:
    """The planning rules from the service's settings."""
    s = uow.settings
    return Rules(
        notice=dt.timedelta(hours=s.session_notice_hours),
        buffer=dt.timedelta(minutes=s.session_buffer_minutes),
    )


async def planner(uow: UnitOfWork, person: store.Person, *, exclude: Sequence[str] = ()) -> Planner:
    """A person with their working hours, planned sessions and absences from now on."""
    busy = await store.busy(
        uow.session,
        program_id=person.program_id,
        participant_id=person.participant_id,
        after=uow.clock.now() - dt.timedelta(days=1),
        exclude=exclude,
    )
    availability = Availability.from_json(person.timezone, person.working_hours)
    return Planner(person.participant_id, availability, busy, person.edge_burden)


# a batch's unit of work -> the busy time of the people its handlers planned for so far, kept
# current as plans are added (add_plan); see `planners`
_BATCH_BUSY: weakref.WeakKeyDictionary[UnitOfWork, dict[str, _Spans]] = weakref.WeakKeyDictionary()


async def planners(
    uow: UnitOfWork,
    people: Sequence[store.Person],
    *,
    exclude: Sequence[str] = (),
    ahead: Sequence[str] = (),
) -> list[Planner]:
    """`planner` for several people of one program: two queries for all of them, not two each.

    Read without flushing, and kept for the rest of the batch: a batch of pair.formed flushes
    its meetings and sessions once, in a statement per table, instead of before each read. The
    sessions the batch adds are known here (`add_plan` records them), so a mentor of two pairs
    in one batch is still busy at the first pair's sessions. `ahead`: people (of this program)
    the rest of the batch will plan for, read in the same statement (one for a batch of formed
    pairs, not one per pair).
    """
    if not people:
        return []
    known = _BATCH_BUSY.setdefault(uow, {})
    wanted = dict.fromkeys([p.participant_id for p in people] + list(ahead))
    missing = [pid for pid in wanted if pid not in known]
    if missing:
        with uow.session.no_autoflush:
            known |= await store.busy_spans_of(
                uow.session, program_id=people[0].program_id, participant_ids=missing,
                after=uow.clock.now() - dt.timedelta(days=1),
            )  # fmt: skip
    skip = set(exclude)
    found = []
    for person in people:
        planned, absent = known[person.participant_id]
        spans = [i for sid, i in planned.items() if sid not in skip] + absent
        availability = Availability.from_json(person.timezone, person.working_hours)
        found.append(Planner(person.participant_id, availability, spans, person.edge_burden))
    return found


@dataclass
class Schedules:
    """People and their busy time, loaded once for a run of re-checks and kept current.

    One query per person instead of several per occurrence: a zone change re-checks a pair's
    whole future schedule in one handler call.
    """

    uow: UnitOfWork
    program_id: str
    people: dict[str, store.Person] = field(default_factory=dict)
    planned: dict[str, dict[str, Interval]] = field(default_factory=dict)
    absent: dict[str, list[Interval]] = field(default_factory=dict)
    # held here, not only in the session's weak identity map: a flushed meeting is otherwise
    # collected and loaded again for the next occurrence
    meetings: dict[str, store.Meeting] = field(default_factory=dict)
    to_arm: dict[str, store.Session] = field(default_factory=dict)
    availabilities: dict[str, tuple[tuple[str, str], Availability]] = field(default_factory=dict)
    # meeting id -> its view and the attendees' contact data it was built with (see `view`)
    views: dict[str, tuple[tuple[str, ...], announcements.Meeting]] = field(default_factory=dict)

    async def meeting(self, row: store.Session) -> store.Meeting:
        key = row.meeting_id or row.session_id
        if key not in self.meetings:
            self.meetings[key] = await store.meeting_of(self.uow.session, row)
        return self.meetings[key]

    async def preload(self, rows: Sequence[store.Session]) -> None:
        """The meetings of these occurrences, their people and the people's busy time, in four
        queries (not one, and a flush, per UID, and three per person)."""
        wanted = {r.meeting_id or r.session_id for r in rows} - set(self.meetings)
        with self.uow.session.no_autoflush:  # what is read here does not depend on pending writes
            if wanted:
                for meeting in await store.meetings_by_id(
                    self.uow.session, program_id=self.program_id, meeting_ids=sorted(wanted)
                ):
                    self.meetings[meeting.meeting_id] = meeting
            people = {p for m in self.meetings.values() for p in (m.mentor_id, m.mentee_id)}
            people -= set(self.people)
            if not people:
                return
            found = await store.people_by_id(
                self.uow.session, program_id=self.program_id, participant_ids=sorted(people)
            )
            busy = await store.busy_spans_of(
                self.uow.session, program_id=self.program_id,
                participant_ids=[p.participant_id for p in found],
                after=self.uow.clock.now() - dt.timedelta(days=1),
            )  # fmt: skip
        for person in found:
            pid = person.participant_id
            self.people[pid] = person
            self.planned[pid], self.absent[pid] = busy[pid]

    def _availability(self, person: store.Person) -> Availability:
        # kept while the person's zone and hours stay what they are (a handler may change them)
        key = (person.timezone, repr(person.working_hours))
        known = self.availabilities.get(person.participant_id)
        if known is None or known[0] != key:
            availability = Availability.from_json(person.timezone, person.working_hours)
            self.availabilities[person.participant_id] = known = (key, availability)
        return known[1]

    def arm(self, row: store.Session) -> None:
        """The session's missed-session check is (re)armed by `finish`, in one statement."""
        self.to_arm[row.session_id] = row

    async def finish(self) -> None:
        """Writes what was deferred: the missed-session checks of moved occurrences."""
        rows, self.to_arm = list(self.to_arm.values()), {}
        await followups.arm_missed_many(
            self.uow, [r for r in rows if r.status == Status.SCHEDULED.value]
        )

    async def person(self, participant_id: str) -> store.Person:
        if participant_id not in self.people:
            self.people[participant_id] = await store.person_or_raise(
                self.uow.session, program_id=self.program_id, participant_id=participant_id
            )
            self.planned[participant_id], self.absent[participant_id] = await store.busy_spans(
                self.uow.session,
                program_id=self.program_id,
                participant_id=participant_id,
                after=self.uow.clock.now() - dt.timedelta(days=1),
            )
        return self.people[participant_id]

    async def planner(self, participant_id: str, *, exclude: str) -> Planner:
        person = await self.person(participant_id)
        busy = [i for sid, i in self.planned[participant_id].items() if sid != exclude]
        availability = self._availability(person)
        return Planner(
            participant_id, availability, busy + self.absent[participant_id], person.edge_burden
        )

    def update(self, row: store.Session) -> None:
        """Keeps the busy time current after an occurrence moved, was cancelled or came back."""
        for pid in (row.mentor_id, row.mentee_id):
            if pid in self.planned:
                spans = self.planned[pid]
                spans.pop(row.session_id, None)
                if row.status == Status.SCHEDULED and row.start and row.end:
                    spans[row.session_id] = Interval(store.utc(row.start), store.utc(row.end))


def _person(row: store.Person, role: Role) -> announcements.Person:
    return announcements.Person(row.participant_id, row.email, row.display_name, row.timezone, role)


async def view(
    uow: UnitOfWork, meeting: store.Meeting, schedules: Schedules | None = None
) -> announcements.Meeting:
    """The meeting as announcements need it, with the attendees' current addresses."""
    if schedules is not None:
        mentor = await schedules.person(meeting.mentor_id)
        mentee = await schedules.person(meeting.mentee_id)
        contact = tuple(v for p in (mentor, mentee) for v in (p.email, p.display_name, p.timezone))
        known = schedules.views.get(meeting.meeting_id)
        if known is not None and known[0] == contact:  # a run of moves: only SEQUENCE changed
            return dataclasses.replace(known[1], sequence=meeting.sequence)
    else:
        mentor = await store.person_or_raise(
            uow.session, program_id=meeting.program_id, participant_id=meeting.mentor_id
        )
        mentee = await store.person_or_raise(
            uow.session, program_id=meeting.program_id, participant_id=meeting.mentee_id
        )
    s = uow.settings
    shown = announcements.Meeting(
        program_id=meeting.program_id,
        meeting_id=meeting.meeting_id,
        pair_id=meeting.pair_id,
        kind=SessionKind(meeting.kind),
        uid=meeting.uid,
        sequence=meeting.sequence,
        timezone=meeting.timezone,
        minutes=meeting.minutes,
        rrule=meeting.rrule,
        first_start=store.utc(meeting.first_start) if meeting.first_start else None,
        people=(_person(mentor, Role.MENTOR), _person(mentee, Role.MENTEE)),
        organizer=invitations.Person(s.mail_from, s.mail_from_name),
    )
    if schedules is not None:
        schedules.views[meeting.meeting_id] = (contact, shown)
    return shown


def occurrence(row: store.Session) -> announcements.Occurrence:
    """A stored occurrence as announcements need it."""
    return announcements.Occurrence(
        session_id=row.session_id,
        recurrence_id=store.utc(row.recurrence_id) if row.recurrence_id else None,
        start=store.utc(row.start) if row.start else None,
        end=store.utc(row.end) if row.end else None,
        scheduled=row.status == Status.SCHEDULED,
        status_kept=row.status in (Status.HELD, Status.MISSED),
    )


async def add_plan(
    uow: UnitOfWork,
    plan: MeetingPlan,
    *,
    program_id: str,
    pair_id: str,
    mentor: str,
    mentee: str,
    deferred: bool = False,
) -> list[store.Session]:
    """Stores a planned meeting and its occurrences; announces it, or why it cannot happen.

    `deferred`: the occurrences are written with the batch's upserts at its end (one statement
    for a whole batch of plans instead of an ORM object and an INSERT each), for handlers whose
    batch reads them only through `uow.get` and the batch's busy time (`planners`), never a
    query: a formed pair's first plan.
    """
    first = None
    if plan.first_local is not None:
        first = plan.first_local.replace(tzinfo=ZoneInfo(plan.timezone)).astimezone(dt.UTC)
    meeting = store.Meeting(
        program_id=program_id,
        meeting_id=plan.meeting_id,
        pair_id=pair_id,
        kind=plan.kind.value,
        uid=plan.uid,
        sequence=0,
        timezone=plan.timezone,
        minutes=plan.minutes,
        rrule=plan.rrule,
        first_start=first,
        mentor_id=mentor,
        mentee_id=mentee,
    )
    uow.session.add(meeting)
    values = [
        {
            "program_id": program_id,
            "session_id": o.session_id,
            "pair_id": pair_id,
            "kind": plan.kind.value,
            "status": o.status.value,
            "start": o.slot.start if o.slot else None,
            "end": o.slot.end if o.slot else None,
            "anchor_timezone": plan.timezone,
            "uid": plan.uid,
            "sequence": 0,
            "attendee_ids": [mentor, mentee],
            "note": o.note[:500] if o.note else None,
            "meeting_id": plan.meeting_id,
            "recurrence_id": o.recurrence_id,
            "mentor_id": mentor,
            "mentee_id": mentee,
            "attendance": None,
        }
        for o in plan.occurrences
    ]
    rows: list[store.Session]
    if deferred:
        rows = [uow.upsert_row(store.Session, v) for v in values]
    else:
        rows = [store.Session(**v) for v in values]
        uow.session.add_all(rows)
    followups.arm_missed_at_commit(uow, rows)
    for spans in (_BATCH_BUSY.get(uow, {}).get(p) for p in (mentor, mentee)):
        if spans is not None:  # the batch's later plans see these sessions as busy
            spans[0].update(
                {
                    r.session_id: Interval(r.start, r.end)
                    for r in rows
                    if r.start and r.end and r.status == Status.SCHEDULED.value
                }
            )
    await _burden(uow, program_id, plan.burdened())
    shown = await view(uow, meeting)
    now = uow.clock.now()
    announced = announcements.scheduled(shown, [occurrence(r) for r in rows], now)
    if announced is not None:
        uow.emit(announced)
    for row, planned in zip(rows, plan.occurrences, strict=True):
        if planned.status is Status.UNSCHEDULABLE:
            uow.emit(
                announcements.unschedulable(
                    program_id, pair_id, plan.kind, reason=planned.note or "no slot",
                    attendee_ids=[mentor, mentee], now=now, occurrence=occurrence(row),
                )
            )  # fmt: skip
    return rows


def unschedulable_series(
    uow: UnitOfWork, *, program_id: str, pair_id: str, mentor: str, mentee: str, reason: str,
    kind: SessionKind = SessionKind.REGULAR,
) -> None:  # fmt: skip
    """The pair has no time for a series at all: session.unschedulable with the reason."""
    uow.emit(
        announcements.unschedulable(
            program_id, pair_id, kind, reason=reason,
            attendee_ids=[mentor, mentee], now=uow.clock.now(),
        )
    )  # fmt: skip


async def _burden(uow: UnitOfWork, program_id: str, burdened: Sequence[str]) -> None:
    for participant_id in burdened:
        person = await store.person_or_raise(
            uow.session, program_id=program_id, participant_id=participant_id
        )
        person.edge_burden += 1


async def recheck(
    uow: UnitOfWork,
    row: store.Session,
    *,
    why: str,
    force: bool = False,
    reinstate: bool = False,
    schedules: Schedules | None = None,
) -> replanning.Decision:
    """Re-checks one occurrence against both people's hours and busy time; moves or cancels it.

    `force`: it must move (declined). `reinstate`: a cancelled occurrence is announced again,
    at its time if both can still make it.
    """
    known = schedules or Schedules(uow, row.program_id)
    meeting = await known.meeting(row)
    mentor = await known.planner(meeting.mentor_id, exclude=row.session_id)
    mentee = await known.planner(meeting.mentee_id, exclude=row.session_id)
    now = uow.clock.now()
    start = store.utc(row.start or row.recurrence_id)  # type: ignore[arg-type]
    decision = replanning.recheck(
        mentor,
        mentee,
        start=start,
        minutes=meeting.minutes,
        recurrence_id=store.utc(row.recurrence_id) if row.recurrence_id else None,
        rules=rules_of(uow),
        not_before=now + rules_of(uow).notice,
        force=force,
    )
    if reinstate and isinstance(decision, replanning.Keep):
        end = start + dt.timedelta(minutes=meeting.minutes)
        decision = replanning.Move(Slot(Interval(start, end)), "at its usual time")
    if isinstance(decision, replanning.Move):
        await move(uow, meeting, row, decision, why=why, schedules=known)
    elif isinstance(decision, replanning.Impossible):
        if not reinstate:
            await cancel(uow, meeting, [row], reason=f"{why}: {decision.reason}")
        uow.emit(
            announcements.unschedulable(
                meeting.program_id, meeting.pair_id, SessionKind(meeting.kind),
                reason=decision.reason, attendee_ids=[meeting.mentor_id, meeting.mentee_id],
                now=now, occurrence=occurrence(row),
            )
        )  # fmt: skip
    known.update(row)
    if schedules is None:
        await known.finish()
    return decision


async def move(
    uow: UnitOfWork,
    meeting: store.Meeting,
    row: store.Session,
    decision: replanning.Move,
    *,
    why: str,
    schedules: Schedules,
) -> None:
    """Moves one occurrence: SEQUENCE + 1 and a session.rescheduled with the update.

    Its missed-session check is re-armed by `schedules.finish()`.
    """
    previous = store.utc(row.start or row.recurrence_id)  # type: ignore[arg-type]
    meeting.sequence += 1
    row.start, row.end = decision.slot.interval.start, decision.slot.interval.end
    row.status, row.sequence = Status.SCHEDULED.value, meeting.sequence
    schedules.arm(row)
    for participant_id in decision.slot.edge_of:
        (await schedules.person(participant_id)).edge_burden += 1
    uow.emit(
        announcements.rescheduled(
            await view(uow, meeting, schedules), occurrence(row), previous_start=previous,
            reason=f"{why}; {decision.reason}", now=uow.clock.now(),
        )
    )  # fmt: skip


async def cancel(
    uow: UnitOfWork, meeting: store.Meeting, rows: Sequence[store.Session], *, reason: str
) -> None:
    """Cancels occurrences of one meeting: SEQUENCE + 1 and one session.cancelled for them."""
    if not rows:
        return
    meeting.sequence += 1
    for row in rows:
        if row.start is None and row.recurrence_id is not None:  # never had a time: its rule time
            row.start = store.utc(row.recurrence_id)
            row.end = row.start + dt.timedelta(minutes=meeting.minutes)
        row.status, row.sequence, row.note = Status.CANCELLED.value, meeting.sequence, reason[:500]
    await followups.disarm_missed_many(uow, rows)
    uow.emit(
        announcements.cancelled(
            await view(uow, meeting), [occurrence(r) for r in rows], reason=reason,
            now=uow.clock.now(),
        )
    )  # fmt: skip


async def cancel_by_meeting(uow: UnitOfWork, rows: Sequence[store.Session], *, reason: str) -> None:
    """Cancels occurrences, one session.cancelled per meeting they belong to."""
    groups: dict[str, list[store.Session]] = {}
    for row in rows:
        groups.setdefault(row.meeting_id or row.session_id, []).append(row)
    for group in groups.values():
        meeting = await store.meeting_of(uow.session, group[0])
        await cancel(uow, meeting, group, reason=reason)
