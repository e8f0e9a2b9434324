"""A pair's charter drives its regular series: cadence and length follow what the pair agreed.

Changing a series' rhythm is done the way calendar apps do a "this and following" edit: the
old series keeps its past (held, missed) occurrences and its future ones are cancelled (one
METHOD:CANCEL with a RECURRENCE-ID per occurrence, SEQUENCE + 1, the same UID), and a new
series with its own UID (the next generation of `plans.series_id`) is invited from then on.
Rewriting the RRULE under the old UID would move the past occurrences too in clients that
re-expand a rule from its DTSTART, and orphan every RECURRENCE-ID override of the old rule.
"""

from __future__ import annotations

import datetime as dt

from services.scheduling import checkins, followups, kinds, meetings, plans, series, store
from services.scheduling.planning import NoSlot
from services.scheduling.plans import Status
from shared.events import CharterAgreed, SessionKind
from shared.unit_of_work import UnitOfWork

PAUSED, ENDED = "the pair paused", "the pair ended"


async def current_series(
    uow: UnitOfWork, program_id: str, pair_id: str, kind: SessionKind = SessionKind.REGULAR
) -> tuple[store.Meeting | None, int]:
    """The pair's latest series of a kind and its generation (None, -1 when it has none)."""
    found, generation = None, -1
    while True:
        meeting = await store.get_meeting(
            uow.session,
            program_id=program_id,
            meeting_id=plans.kind_series_id(program_id, pair_id, kind, generation + 1),
        )
        if meeting is None:
            return found, generation
        found, generation = meeting, generation + 1


async def live_series(uow: UnitOfWork, program_id: str, pair_id: str) -> set[str]:
    """The ids of the pair's current series, one per kind (the one-to-ones, each rhythm)."""
    found = set()
    for kind in (SessionKind.REGULAR, *kinds.RHYTHMS):
        meeting, _ = await current_series(uow, program_id, pair_id, kind)
        if meeting is not None:
            found.add(meeting.meeting_id)
    return found


def stopped(rows: list[store.Session], now: dt.datetime, *, pause_over: bool = False) -> bool:
    """Whether a pair's sessions (of any status) show it ended, or paused and not resumed.

    `pause_over`: the pair is resuming, so its pause's cancels no longer stop it.
    """
    for row in rows:
        if row.status != Status.CANCELLED or not row.note:
            continue
        if row.note.startswith(ENDED):
            return True
        at = row.start or row.recurrence_id
        paused = row.note.startswith(PAUSED) and not pause_over
        if paused and at is not None and store.utc(at) > now:
            return True
    return False


async def pair_sessions(uow: UnitOfWork, program_id: str, pair_id: str) -> list[store.Session]:
    """Every session of a pair from a year and more back on, of any status, earliest first."""
    return await store.future_sessions(
        uow.session, program_id=program_id, pair_id=pair_id,
        after=uow.clock.now() - dt.timedelta(days=400), statuses=tuple(s.value for s in Status),
    )  # fmt: skip


def _agreed(meeting: store.Meeting | None, cadence: series.Cadence, minutes: int) -> bool:
    return (
        meeting is not None
        and meeting.rrule is not None
        and series.cadence_of(meeting.rrule) is cadence
        and meeting.minutes == minutes
    )


async def apply(
    uow: UnitOfWork, event: CharterAgreed, kickoff: store.Meeting, *, resuming: bool = False
) -> None:
    """The pair's series follow the charter: the one-to-ones, then the rhythms it names."""
    await follow(uow, event, kickoff, resuming=resuming)
    await follow_rhythms(uow, event, kickoff, resuming=resuming)


async def pace_checkins(uow: UnitOfWork, event: CharterAgreed, kickoff: store.Meeting) -> None:
    """Check-ins weekly for weekly pairs, else every two weeks; none re-armed for a pair that
    paused or ended (its check-ins stopped; a resume arms them at the charter's pace)."""
    pace = checkins.cadence_days(event.cadence_days)
    armed = await followups.checkin_cadence(uow, program_id=event.program_id, pair_id=event.pair_id)
    if armed is not None and armed != pace:  # the same pace again keeps the next check-in's date
        await followups.start_checkins(
            uow, program_id=event.program_id, pair_id=event.pair_id, mentor=kickoff.mentor_id,
            mentee=kickoff.mentee_id, cadence_days=pace,
        )  # fmt: skip


async def follow(
    uow: UnitOfWork, event: CharterAgreed, kickoff: store.Meeting, *, resuming: bool = False
) -> None:
    """Re-plans the pair's future one-to-ones at the charter's cadence and length.

    Nothing changes when the series already has both (a second charter alike), or while the
    pair is paused (unless `resuming`: the pause is over) or after it ended. Occurrences inside
    the minimum notice stay as they are; the new series starts a cadence after the last session
    kept. When no time fits the new rhythm, the old series stays and session.unschedulable says
    why.
    """
    program, pair = event.program_id, event.pair_id
    cadence = series.cadence_for(event.cadence_days)
    old, generation = await current_series(uow, program, pair)
    if _agreed(old, cadence, event.session_minutes):
        return
    now = uow.clock.now()
    rows = await pair_sessions(uow, program, pair)
    if stopped(rows, now, pause_over=resuming):
        return  # paused (the pause's cancels still stand) or ended: nothing to re-plan
    rules = meetings.rules_of(uow)
    notice_end = now + rules.notice
    mine = [r for r in rows if old is not None and r.meeting_id == old.meeting_id]
    replaced = [
        r
        for r in mine
        if r.status == Status.SCHEDULED and r.start and store.utc(r.start) >= notice_end
    ]
    regular = {r.session_id for r in replaced}
    kept = [
        store.utc(r.start)
        for r in rows
        if r.start is not None
        and r.session_id not in regular
        and r.meeting_id in (kickoff.meeting_id, old.meeting_id if old else None)
        and r.status != Status.CANCELLED
    ]
    not_before = notice_end
    if kept:
        last = max(kept)
        not_before = max(not_before, last + dt.timedelta(days=series.cadence_days(cadence) - 1))
    mentor_row = await store.person_or_raise(
        uow.session, program_id=program, participant_id=kickoff.mentor_id
    )
    mentee_row = await store.person_or_raise(
        uow.session, program_id=program, participant_id=kickoff.mentee_id
    )
    mentor = await meetings.planner(uow, mentor_row, exclude=sorted(regular))
    mentee = await meetings.planner(uow, mentee_row, exclude=sorted(regular))
    planned = plans.plan_series(
        program, pair, mentor, mentee, cadence=cadence, not_before=not_before, rules=rules,
        minutes=event.session_minutes, generation=generation + 1,
    )  # fmt: skip
    ids = {"program_id": program, "pair_id": pair}
    ids |= {"mentor": kickoff.mentor_id, "mentee": kickoff.mentee_id}
    if isinstance(planned, NoSlot):
        meetings.unschedulable_series(
            uow,
            reason=f"the charter's {cadence.value} sessions of {event.session_minutes} min: "
            f"{planned.reason}; the current series stays",
            kind=SessionKind.REGULAR,
            **ids,  # type: ignore[arg-type]
        )
        return
    if old is not None and replaced:
        reason = (
            f"the pair agreed on {cadence.value} sessions of {event.session_minutes} min: "
            "a new series replaces these"
        )
        await meetings.cancel(uow, old, replaced, reason=reason)
    await meetings.add_plan(uow, planned, **ids)  # type: ignore[arg-type]


async def follow_rhythms(
    uow: UnitOfWork, event: CharterAgreed, kickoff: store.Meeting, *, resuming: bool = False
) -> None:
    """Each extra series the charter names follows its cadence; "none" cancels its future.

    A rhythm the charter leaves out keeps what it has. Nothing changes while the pair is paused
    (unless `resuming`) or after it ended.
    """
    if event.rhythms is None:
        return
    named = [(k, getattr(event.rhythms, k.value)) for k in kinds.RHYTHMS]
    named = [(k, v) for k, v in named if v is not None]
    if not named:
        return
    rows = await pair_sessions(uow, event.program_id, event.pair_id)
    if stopped(rows, uow.clock.now(), pause_over=resuming):
        return
    for kind, value in named:
        cadence = None if value == "none" else series.Cadence(value)
        await _follow_rhythm(uow, kickoff, kind, cadence, rows)


async def _follow_rhythm(
    uow: UnitOfWork, kickoff: store.Meeting, kind: SessionKind, cadence: series.Cadence | None,
    rows: list[store.Session],
) -> None:  # fmt: skip
    """One extra series to the cadence agreed (None: no more of them), as `follow` does it."""
    program, pair = kickoff.program_id, kickoff.pair_id
    old, generation = await current_series(uow, program, pair, kind)
    now = uow.clock.now()
    mine = [r for r in rows if old is not None and r.meeting_id == old.meeting_id]
    live = [
        r for r in mine if r.status == Status.SCHEDULED and r.start and store.utc(r.start) > now
    ]
    current = series.cadence_of(old.rrule) if old is not None and old.rrule and live else None
    if current is cadence:
        return  # as agreed already (or none of them, and none wanted)
    rules = meetings.rules_of(uow)
    notice_end = now + rules.notice
    replaced = [r for r in live if store.utc(r.start) >= notice_end]  # type: ignore[arg-type]
    name = f"{kinds.profile(kind).title.lower()}s"
    if cadence is None:
        if old is not None:
            await meetings.cancel(uow, old, replaced, reason=f"the pair agreed on no {name}")
        return
    gone = {r.session_id for r in replaced}
    kept = [
        store.utc(r.start)
        for r in mine
        if r.start and r.session_id not in gone and r.status != Status.CANCELLED
    ]
    not_before = notice_end
    if kept:
        not_before = max(
            not_before, max(kept) + dt.timedelta(days=series.cadence_days(cadence) - 1)
        )
    people = [
        await store.person_or_raise(uow.session, program_id=program, participant_id=p)
        for p in (kickoff.mentor_id, kickoff.mentee_id)
    ]
    mentor, mentee = [await meetings.planner(uow, p, exclude=sorted(gone)) for p in people]
    planned = plans.plan_series(
        program, pair, mentor, mentee, cadence=cadence, not_before=not_before, rules=rules,
        kind=kind, generation=generation + 1,
    )  # fmt: skip
    ids = {"program_id": program, "pair_id": pair}
    ids |= {"mentor": kickoff.mentor_id, "mentee": kickoff.mentee_id}
    if isinstance(planned, NoSlot):
        stays = "the current ones stay" if live else "none are planned"
        meetings.unschedulable_series(
            uow, reason=f"the charter's {cadence.value} {name}: {planned.reason}; {stays}",
            kind=kind, **ids,  # type: ignore[arg-type]
        )  # fmt: skip
        return
    if old is not None and replaced:
        reason = f"the pair agreed on {cadence.value} {name}: a new series replaces these"
        await meetings.cancel(uow, old, replaced, reason=reason)
    await meetings.add_plan(uow, planned, **ids)  # type: ignore[arg-type]
