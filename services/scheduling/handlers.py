"""scheduling's event handlers: when X happens, do Y."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from services.scheduling import (
    charters,
    checkins,
    followups,
    kinds,
    meetings,
    pauses,
    plans,
    series,
    store,
)
from services.scheduling.planning import NoSlot
from services.scheduling.plans import Status
from shared.consumer import Subscription
from shared.events import (
    CharterAgreed,
    CheckinSubmitted,
    MilestoneReached,
    OpportunityOffered,
    PairEnded,
    PairFormed,
    PairPaused,
    PairResumed,
    ParticipantRegistered,
    ParticipantTimezoneChanged,
    ParticipantUnavailable,
    ParticipantUpdated,
    SessionHeld,
    SessionKind,
    SessionResponded,
)
from shared.unit_of_work import Preload, UnitOfWork

PEOPLE = (ParticipantRegistered, ParticipantTimezoneChanged, ParticipantUpdated)


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
            "role": event.role.value,
        },
    )


async def on_participant_updated(event: ParticipantUpdated, uow: UnitOfWork) -> None:
    """Later invitations and updates use the new address and name."""
    person = await store.person_or_raise(
        uow.session, program_id=event.program_id, participant_id=event.participant_id
    )
    if event.email is not None:
        person.email = str(event.email)
    if event.display_name is not None:
        person.display_name = event.display_name


async def on_timezone_changed(event: ParticipantTimezoneChanged, uow: UnitOfWork) -> None:
    """Every occurrence from the effective date on is re-checked in the new zone."""
    effective = dt.datetime.combine(
        event.effective_date, dt.time(), tzinfo=ZoneInfo(event.new_timezone)
    ).astimezone(dt.UTC)
    rows = await store.future_sessions(
        uow.session,
        program_id=event.program_id,
        participant_id=event.participant_id,
        after=max(effective, uow.clock.now()),
    )
    schedules = meetings.Schedules(uow, event.program_id)
    await schedules.preload(rows)  # read first, then change: one flush at the end
    person = schedules.people.get(event.participant_id)  # in every meeting of the rows
    if person is None:  # no sessions ahead (or UnknownReference, ProgramMismatch with the hint)
        person = await store.person_or_raise(
            uow.session, program_id=event.program_id, participant_id=event.participant_id
        )
    person.timezone = event.new_timezone
    if event.working_hours is not None:
        person.working_hours = [h.to_json() for h in event.working_hours]
    why = f"{person.display_name} now works from {event.new_timezone}"
    for row in rows:
        await meetings.recheck(uow, row, why=why, schedules=schedules)
    await schedules.finish()


async def on_participant_unavailable(event: ParticipantUnavailable, uow: UnitOfWork) -> None:
    """Occurrences in the absence are cancelled; the rhythm resumes after it."""
    person = await store.person_or_raise(
        uow.session, program_id=event.program_id, participant_id=event.participant_id
    )
    zone = ZoneInfo(person.timezone)
    start = dt.datetime.combine(event.start_date, dt.time(), tzinfo=zone).astimezone(dt.UTC)
    end = dt.datetime.combine(
        event.end_date + dt.timedelta(days=1), dt.time(), tzinfo=zone
    ).astimezone(dt.UTC)
    if await uow.session.get(store.Absence, (event.program_id, event.participant_id, start)):
        return  # the same absence again
    uow.session.add(
        store.Absence(
            program_id=event.program_id,
            participant_id=event.participant_id,
            start=start,
            end=end,
        )
    )
    rows = await store.future_sessions(
        uow.session,
        program_id=event.program_id,
        participant_id=event.participant_id,
        after=max(start, uow.clock.now()) - dt.timedelta(days=1),
    )
    inside = [r for r in rows if r.start and start < store.utc(r.end) and store.utc(r.start) < end]  # type: ignore[arg-type]
    why = f"{person.display_name} is unavailable {event.start_date} to {event.end_date}"
    kickoffs = [r for r in inside if r.recurrence_id is None]
    await meetings.cancel_by_meeting(
        uow, [r for r in inside if r.recurrence_id is not None], reason=why
    )
    for row in kickoffs:  # a kickoff is not skipped: it moves to after the absence
        await meetings.recheck(uow, row, why=why)


async def on_pair_formed(event: PairFormed, uow: UnitOfWork) -> None:
    """Plans the kickoff, then the series, inside both people's hours and free time."""
    program = event.program_id
    # the kickoff and both people come from the batch's preload (one query each for the batch)
    if await uow.get(store.Session, _kickoff_key(event)):
        return  # the pair is planned already: a repeated pair.formed changes nothing
    people = [
        await _person_or_raise(uow, program, pid) for pid in (event.mentor_id, event.mentee_id)
    ]
    mentor, mentee = await meetings.planners(uow, people, ahead=_batch_people(uow, program))
    plan = plans.plan_pair(
        program,
        event.pair_id,
        mentor,
        mentee,
        now=uow.clock.now(),
        lead_days=uow.settings.kickoff_lead_days,
        rules=meetings.rules_of(uow),
        cadence=series.cadence_for(uow.settings.session_cadence_days),
    )
    ids = {"program_id": program, "pair_id": event.pair_id}
    ids |= {"mentor": event.mentor_id, "mentee": event.mentee_id}
    (kickoff_row,) = await meetings.add_plan(uow, plan.kickoff, **ids, deferred=True)
    # the batch's preload said "no kickoff": a repeat of this pair.formed in the same batch
    # must see the one just planned
    uow.preloaded(store.Session, {_kickoff_key(event): kickoff_row})
    if plan.series is not None:
        await meetings.add_plan(uow, plan.series, **ids, deferred=True)
    elif plan.series_reason is not None:
        meetings.unschedulable_series(
            uow,
            reason=plan.series_reason,
            kind=SessionKind.REGULAR,
            **ids,  # type: ignore[arg-type]
        )
    kickoff = plan.kickoff.occurrences[0].slot
    for kind in kinds.rhythms(uow.settings.session_rhythms):
        await _plan_rhythm(uow, kind, kickoff.start if kickoff else uow.clock.now(), **ids)
    followups.start_checkins_at_commit(uow, **ids, cadence_days=checkins.cadence_days(None))


def _batch_people(uow: UnitOfWork, program_id: str) -> list[str]:
    """Everyone the batch's formed pairs of this program name (their busy time is read once)."""
    return [
        pid
        for e in uow.batch
        if isinstance(e, PairFormed) and e.program_id == program_id
        for pid in (e.mentor_id, e.mentee_id)
    ]


def _kickoff_key(event: PairFormed) -> tuple[str, str]:
    return (event.program_id, plans.kickoff_session_id(event.program_id, event.pair_id))


async def _person_or_raise(uow: UnitOfWork, program_id: str, participant_id: str) -> store.Person:
    """A person from the batch's preload; the lookup with its hint when they are not there."""
    row = await uow.get(store.Person, (program_id, participant_id))
    if row is None:  # UnknownReference or ProgramMismatch, with the hint
        row = await store.person_or_raise(
            uow.session, program_id=program_id, participant_id=participant_id
        )
    return row


# pair.formed events a batch plans at most: a batch commits its plans (and hands their
# session.scheduled on) after ~0.3 s of work instead of a whole round's (bench/email.py's flow:
# 2,000 people from matching.requested to the last invitation 14.2-14.6 s with 512, 8.6-13.2 s)
PLAN_BATCH = 64

_PAIR_ROWS: tuple[Preload[Any], ...] = (
    Preload(store.Session, key=_kickoff_key),
    Preload(
        store.Person, keys=lambda e: [(e.program_id, e.mentor_id), (e.program_id, e.mentee_id)]
    ),
)


async def _plan_rhythm(
    uow: UnitOfWork, kind: SessionKind, after: dt.datetime, *, program_id: str, pair_id: str,
    mentor: str, mentee: str,
) -> None:  # fmt: skip
    """A series of one extra kind, clear of the sessions planned so far (kickoff, series)."""
    cadence, offset = kinds.RHYTHMS[kind]
    people = await meetings.planners(
        uow, [await _person_or_raise(uow, program_id, p) for p in (mentor, mentee)]
    )
    rules = meetings.rules_of(uow)
    planned = plans.plan_series(
        program_id, pair_id, people[0], people[1], cadence=cadence, rules=rules, kind=kind,
        not_before=max(after + dt.timedelta(days=offset), uow.clock.now() + rules.notice),
    )  # fmt: skip
    if isinstance(planned, NoSlot):
        meetings.unschedulable_series(
            uow, program_id=program_id, pair_id=pair_id, mentor=mentor, mentee=mentee,
            reason=planned.reason, kind=kind,
        )  # fmt: skip
    else:
        await meetings.add_plan(
            uow, planned, program_id=program_id, pair_id=pair_id, mentor=mentor, mentee=mentee,
            deferred=True,  # a formed pair's plan, as its kickoff and series
        )  # fmt: skip


async def on_charter_agreed(event: CharterAgreed, uow: UnitOfWork) -> None:
    """The series follows the charter's cadence and length; check-ins its pace.

    During a pause the charter is kept and applied when the pause ends (see `pauses`).
    """
    meeting = await store.get_meeting(
        uow.session,
        program_id=event.program_id,
        meeting_id=plans.kickoff_session_id(event.program_id, event.pair_id),
    )
    if meeting is None:
        return  # a charter for a pair scheduling never planned (no pair.formed): nothing to pace
    if await pauses.hold(uow, event):
        return  # paused: applied on resume or at the pause's end, never inside the pause
    await charters.apply(uow, event, meeting)
    await charters.pace_checkins(uow, event, meeting)


async def on_milestone_reached(event: MilestoneReached, uow: UnitOfWork) -> None:
    """A milestone reached: a feedback moment at the next fair slot both can make."""
    program = event.program_id
    session_id = plans.feedback_session_id(program, event.pair_id, event.milestone_id)
    if await store.get_meeting(uow.session, program_id=program, meeting_id=session_id):
        return  # this milestone has its feedback moment already
    kickoff = await store.get_meeting(
        uow.session, program_id=program, meeting_id=plans.kickoff_session_id(program, event.pair_id)
    )
    if kickoff is None:
        return  # a pair scheduling never planned (no pair.formed): nobody to invite
    await _plan_single(uow, kickoff, session_id, SessionKind.FEEDBACK_MOMENT)


async def on_opportunity_offered(event: OpportunityOffered, uow: UnitOfWork) -> None:
    """A shadowing opportunity for a mentee: a shadow session with their mentor (90 min).

    Planned like a feedback moment, at the next fair slot both can make, once per opportunity.
    The pair is the one the offer names (`pair_id`, if the person is in it); else the pair the
    person is the mentee of, the one with the latest kickoff when there were several. Other
    kinds of opportunity, and a pair that ended or is paused, plan nothing.
    """
    if not kinds.is_shadowing(event.kind):
        return
    program = event.program_id
    if event.pair_id is not None:  # it came through a pair: that pair, if the person is in it
        named = await store.get_meeting(
            uow.session, program_id=program,
            meeting_id=plans.kickoff_session_id(program, event.pair_id),
        )  # fmt: skip
        people = (named.mentor_id, named.mentee_id) if named else ()
        candidates = [named] if named and event.participant_id in people else []
    else:
        candidates = await store.kickoffs_of(
            uow.session, program_id=program, mentee_id=event.participant_id
        )
    pairs = []
    for kickoff in candidates:
        rows = await charters.pair_sessions(uow, program, kickoff.pair_id)
        if not charters.stopped(rows, uow.clock.now()):
            at = [r.start for r in rows if r.session_id == kickoff.meeting_id and r.start]
            pairs.append((store.utc(at[0]).isoformat() if at else "", kickoff.pair_id, kickoff))
    if not pairs:
        return  # not (or no longer) in a pair scheduling planned: nobody to shadow
    *_, kickoff = max(pairs, key=lambda p: (p[0], p[1]))
    session_id = plans.shadow_session_id(program, kickoff.pair_id, event.opportunity_id)
    if await store.get_meeting(uow.session, program_id=program, meeting_id=session_id):
        return  # this opportunity has its shadow session already
    await _plan_single(uow, kickoff, session_id, SessionKind.SHADOWING)


async def _plan_single(
    uow: UnitOfWork, kickoff: store.Meeting, session_id: str, kind: SessionKind
) -> None:
    """One session of a kind for the kickoff's pair, at the next fair slot both can make."""
    program = kickoff.program_id
    ids = {"program_id": program, "pair_id": kickoff.pair_id}
    ids |= {"mentor": kickoff.mentor_id, "mentee": kickoff.mentee_id}
    mentor_row = await store.person_or_raise(
        uow.session, program_id=program, participant_id=kickoff.mentor_id
    )
    mentee_row = await store.person_or_raise(
        uow.session, program_id=program, participant_id=kickoff.mentee_id
    )
    rules = meetings.rules_of(uow)
    plan = plans.plan_single(
        session_id,
        kind,
        await meetings.planner(uow, mentor_row),
        await meetings.planner(uow, mentee_row),
        not_before=uow.clock.now() + rules.notice,
        rules=rules,
    )
    await meetings.add_plan(uow, plan, **ids, deferred=False)


async def on_pair_paused(event: PairPaused, uow: UnitOfWork) -> None:
    """Occurrences until the pause ends (or all future ones) are cancelled; check-ins stop."""
    until = None
    if event.until is not None:
        until = dt.datetime.combine(event.until, dt.time(), tzinfo=dt.UTC)
    rows = await store.future_sessions(
        uow.session, program_id=event.program_id, pair_id=event.pair_id, after=uow.clock.now()
    )
    paused = [r for r in rows if until is None or store.utc(r.start or r.recurrence_id) < until]  # type: ignore[arg-type]
    reason = "the pair paused" + (f": {event.reason}" if event.reason else "")
    await meetings.cancel_by_meeting(uow, paused, reason=reason)
    await pauses.begin(uow, program_id=event.program_id, pair_id=event.pair_id, until=until)
    await followups.stop_checkins(uow, program_id=event.program_id, pair_id=event.pair_id)


async def on_pair_resumed(event: PairResumed, uow: UnitOfWork) -> None:
    """A charter agreed during the pause applies; cancelled occurrences ahead come back."""
    await pauses.resume(uow, program_id=event.program_id, pair_id=event.pair_id)


async def on_pair_ended(event: PairEnded, uow: UnitOfWork) -> None:
    """The rest of the pair's sessions are cancelled."""
    rows = await store.future_sessions(
        uow.session, program_id=event.program_id, pair_id=event.pair_id, after=uow.clock.now()
    )
    reason = "the pair ended" + (f": {event.reason}" if event.reason else "")
    await meetings.cancel_by_meeting(uow, rows, reason=reason)
    await pauses.discard(uow, program_id=event.program_id, pair_id=event.pair_id)
    await followups.stop_checkins(uow, program_id=event.program_id, pair_id=event.pair_id)


async def on_session_held(event: SessionHeld, uow: UnitOfWork) -> None:
    """A tool (or a 'we met' link) says the session happened: kept with its attendance.

    A series' id names the occurrence held at `held_at`: the latest one started by an hour after
    it (people may join a little early).
    """
    row = await store.named_occurrence(
        uow.session, program_id=event.program_id, session_id=event.session_id,
        recurrence_id=None, now=event.held_at + dt.timedelta(hours=1),
    )  # fmt: skip
    if row is None:  # UnknownReference or ProgramMismatch, with the hint
        row = await store.session_or_raise(
            uow.session, program_id=event.program_id, session_id=event.session_id
        )
    if row.status == Status.HELD:
        return  # reported twice (a tool and a link): the first report stands
    followups.record_held(uow, row, event)
    await followups.disarm_missed(uow, row)


async def on_checkin_submitted(event: CheckinSubmitted, uow: UnitOfWork) -> None:
    """A check-in report came: no more escalation for it."""
    row = await store.checkin_or_raise(
        uow.session, program_id=event.program_id, checkin_id=event.checkin_id
    )
    if row.status == "due":
        await followups.record_submitted(uow, row)


async def on_session_responded(event: SessionResponded, uow: UnitOfWork) -> None:
    """A declined occurrence moves to the next slot both can make."""
    if event.response != "declined":
        return
    row = await _answered(event, uow)
    if row is None or row.status != Status.SCHEDULED or event.sequence < row.sequence:
        return  # an answer to an older version, or to a session that is gone already
    person = await store.person_or_raise(
        uow.session, program_id=event.program_id, participant_id=event.participant_id
    )
    await meetings.recheck(uow, row, why=f"{person.display_name} declined", force=True)


async def _answered(event: SessionResponded, uow: UnitOfWork) -> store.Session | None:
    """The occurrence a reply answers: a single session, or one occurrence of a series."""
    program, session = event.program_id, uow.session
    row = await store.get_session(session, program_id=program, session_id=event.session_id)
    if row is not None:
        return row
    meeting = await session.get(store.Meeting, (program, event.session_id))
    if meeting is None:  # UnknownReference or ProgramMismatch, with the hint
        return await store.session_or_raise(
            session, program_id=program, session_id=event.session_id
        )
    if event.recurrence_id is None:
        return None  # declining a whole series is declining the program, not one time
    return await store.get_session(
        session,
        program_id=program,
        session_id=plans.occurrence_id(meeting.meeting_id, event.recurrence_id),
    )


SUBSCRIPTIONS: list[Subscription[Any]] = [
    Subscription(ParticipantRegistered, on_participant_registered),
    Subscription(ParticipantUpdated, on_participant_updated, after=(ParticipantRegistered,)),
    Subscription(ParticipantTimezoneChanged, on_timezone_changed, after=(ParticipantRegistered,)),
    Subscription(ParticipantUnavailable, on_participant_unavailable, after=PEOPLE),
    # a formed pair is a whole plan (~30 rows): small batches hand notifications the first
    # invitations while the rest of a round is planned
    Subscription(PairFormed, on_pair_formed, after=PEOPLE, preload=_PAIR_ROWS, batch=PLAN_BATCH),
    Subscription(PairPaused, on_pair_paused, after=(PairFormed,)),
    Subscription(PairResumed, on_pair_resumed, after=(PairFormed, PairPaused)),
    Subscription(PairEnded, on_pair_ended, after=(PairFormed, PairPaused, PairResumed)),
    Subscription(SessionResponded, on_session_responded, after=(PairFormed,)),
    Subscription(SessionHeld, on_session_held, after=(PairFormed,)),
    Subscription(CharterAgreed, on_charter_agreed, after=(PairFormed, PairPaused, PairResumed)),
    Subscription(MilestoneReached, on_milestone_reached, after=(PairFormed,)),
    Subscription(OpportunityOffered, on_opportunity_offered, after=(PairFormed,)),
    Subscription(CheckinSubmitted, on_checkin_submitted),
]
