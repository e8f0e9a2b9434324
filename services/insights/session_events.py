"""Handlers of sessions and check-ins: planned, held, missed, due, submitted, overdue."""

from __future__ import annotations

import datetime as dt

from services.insights import writes
from services.insights.projections import (
    CheckinStatus,
    SessionStatus,
    checkin_status,
    later,
    session_status,
    streak_answered,
    streak_missed,
)
from services.insights.store import CheckinView, PairView, ParticipantView, SessionView, utc
from shared.events import (
    CheckinDue,
    CheckinOverdue,
    CheckinSubmitted,
    SessionCancelled,
    SessionHeld,
    SessionMissed,
    SessionRescheduled,
    SessionResponded,
    SessionScheduled,
    SessionUnschedulable,
)
from shared.unit_of_work import UnitOfWork


async def _pair(uow: UnitOfWork, program_id: str, pair_id: str) -> PairView:
    return await writes.pair_or_raise(uow, program_id=program_id, pair_id=pair_id)


async def _mentee(uow: UnitOfWork, pair: PairView) -> ParticipantView | None:
    return await writes.participant(uow, pair.program_id, pair.mentee_id)


async def on_session_scheduled(event: SessionScheduled, uow: UnitOfWork) -> None:
    """Records the planned session; a later version of the invitation moves its start."""
    pair = await _pair(uow, event.program_id, event.pair_id)
    row = await writes.find_session(uow, program_id=event.program_id, session_id=event.session_id)
    if row is None:
        writes.add_row(
            uow,
            SessionView(
                program_id=event.program_id,
                session_id=event.session_id,
                pair_id=event.pair_id,
                kind=event.kind.value,
                start=event.start,
                sequence=event.sequence,
                status=SessionStatus.PLANNED,
            ),
        )
        pair.sessions_planned += 1
        writes.add_to(uow, event.program_id, "sessions.planned")
        writes.add_on_day(uow, event.program_id, "sessions.planned", event.start.date())
        kind = event.kind.value.replace("_", " ")
        writes.add_entry(
            uow,
            event,
            event.pair_id,
            "session.planned",
            f"{kind} session planned for {event.start:%Y-%m-%d %H:%M} UTC",
        )
    elif event.sequence > row.sequence:
        _move(uow, row, event.start, event.sequence)
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)


def _move(uow: UnitOfWork, row: SessionView, start: dt.datetime, sequence: int) -> None:
    writes.add_on_day(uow, row.program_id, "sessions.planned", utc(row.start).date(), -1)
    writes.add_on_day(uow, row.program_id, "sessions.planned", start.date(), 1)
    row.start, row.sequence = start, sequence


async def on_session_rescheduled(event: SessionRescheduled, uow: UnitOfWork) -> None:
    """Moves the session (a reschedule older than what is known changes nothing)."""
    await _pair(uow, event.program_id, event.pair_id)  # the pair's lock: see writes.find_pair
    row = await writes.session_or_raise(
        uow, program_id=event.program_id, session_id=event.session_id
    )
    if event.sequence > row.sequence:
        _move(uow, row, event.start, event.sequence)
        writes.add_entry(
            uow,
            event,
            event.pair_id,
            "session.rescheduled",
            f"session moved to {event.start:%Y-%m-%d %H:%M} UTC",
            content=event.reason,
        )
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)


async def _outcome(
    uow: UnitOfWork,
    row: SessionView,
    pair: PairView,
    reported: SessionStatus,
    at: dt.datetime | None,
) -> bool:
    """Sets the session's outcome, moving every count that depended on the old one.

    Outcomes only rise (planned < cancelled < missed < held), so held is never undone.
    """
    before = SessionStatus(row.status)
    after = session_status(before, reported)
    if after is before:
        return False
    mentee = await _mentee(uow, pair)
    for status, sign in ((before, -1), (after, 1)):
        if status is SessionStatus.PLANNED:
            continue
        day = (at or row.start) if status is SessionStatus.HELD else row.start
        writes.add_to(uow, row.program_id, f"sessions.{status.value}", sign)
        writes.add_on_day(uow, row.program_id, f"sessions.{status.value}", utc(day).date(), sign)
        if status is SessionStatus.HELD:
            pair.sessions_held += sign
        elif status is SessionStatus.MISSED:
            pair.sessions_missed += sign
        if mentee is not None and status in (SessionStatus.HELD, SessionStatus.MISSED):
            writes.add_for_groups(uow, mentee, f"sessions_{status.value}", sign)
    row.status = after
    if after is SessionStatus.HELD:
        row.held_at = at
    return True


async def on_session_held(event: SessionHeld, uow: UnitOfWork) -> None:
    """Counts the session as held; the pair met (contact), maybe for the first time."""
    pair = await _pair(uow, event.program_id, event.pair_id)
    row = await writes.session_or_raise(
        uow, program_id=event.program_id, session_id=event.session_id
    )
    if await _outcome(uow, row, pair, SessionStatus.HELD, event.held_at):
        _first_session(uow, pair, event.held_at)
        pair.last_contact_at = later(
            utc(pair.last_contact_at) if pair.last_contact_at else None, event.held_at
        )
        takeaways = getattr(event, "takeaways", None)
        writes.add_entry(
            uow,
            event,
            event.pair_id,
            "session.held",
            f"session held ({event.duration_minutes} min)",
            content=str(takeaways) if takeaways else None,
            at=event.held_at,
        )
        await writes.arm_contact_check(uow, pair)
    await writes.refresh_health(uow, pair, at=event.occurred_at)
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)


def _first_session(uow: UnitOfWork, pair: PairView, held_at: dt.datetime) -> None:
    """Keeps the program's sum of days from forming to the first session (in any order)."""
    formed = utc(pair.formed_at)
    known = utc(pair.first_session_at) if pair.first_session_at else None
    if known is None:
        writes.add_to(uow, pair.program_id, "first_session.pairs")
        writes.add_to(
            uow, pair.program_id, "first_session.days", (held_at - formed).total_seconds() / 86400
        )
        pair.first_session_at = held_at
    elif held_at < known:
        writes.add_to(
            uow, pair.program_id, "first_session.days", (held_at - known).total_seconds() / 86400
        )
        pair.first_session_at = held_at


async def on_session_missed(event: SessionMissed, uow: UnitOfWork) -> None:
    """Counts the session as missed, and the no-shows of each person."""
    pair = await _pair(uow, event.program_id, event.pair_id)
    row = await writes.session_or_raise(
        uow, program_id=event.program_id, session_id=event.session_id
    )
    if await _outcome(uow, row, pair, SessionStatus.MISSED, None):
        pair.no_shows_mentor += pair.mentor_id in event.no_show_ids
        pair.no_shows_mentee += pair.mentee_id in event.no_show_ids
        who = [
            n
            for n, pid in (("mentor", pair.mentor_id), ("mentee", pair.mentee_id))
            if pid in event.no_show_ids
        ]
        summary = "session missed" + (f" (no-show: {', '.join(who)})" if who else "")
        writes.add_entry(uow, event, event.pair_id, "session.missed", summary)
    await writes.refresh_health(uow, pair, at=event.occurred_at)
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)


async def on_session_cancelled(event: SessionCancelled, uow: UnitOfWork) -> None:
    """Counts the session as cancelled (unless it was held or missed)."""
    pair = await _pair(uow, event.program_id, event.pair_id)
    row = await writes.session_or_raise(
        uow, program_id=event.program_id, session_id=event.session_id
    )
    if await _outcome(uow, row, pair, SessionStatus.CANCELLED, None):
        writes.add_entry(
            uow,
            event,
            event.pair_id,
            "session.cancelled",
            "session cancelled",
            content=event.reason,
        )
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)


async def on_session_responded(event: SessionResponded, uow: UnitOfWork) -> None:
    """An attendee's answer to an invitation goes on the timeline."""
    pair = await _pair(uow, event.program_id, event.pair_id)
    who = "mentor" if event.participant_id == pair.mentor_id else "mentee"
    writes.add_entry(
        uow,
        event,
        event.pair_id,
        "session.responded",
        f"{who} {event.response} the invitation",
        content=event.comment,
    )
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)


async def on_session_unschedulable(event: SessionUnschedulable, uow: UnitOfWork) -> None:
    """The pair has no slot both can make: counted once per pair, the latest reason kept."""
    pair = await _pair(uow, event.program_id, event.pair_id)
    if pair.unschedulable_at is None:
        writes.add_to(uow, event.program_id, "pairs.unschedulable")
    if pair.unschedulable_at is None or event.occurred_at >= utc(pair.unschedulable_at):
        pair.unschedulable_reason, pair.unschedulable_at = event.reason, event.occurred_at
    writes.add_entry(
        uow, event, event.pair_id, "session.unschedulable", f"no slot found: {event.reason}"
    )
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)


async def _checkin(
    uow: UnitOfWork,
    event: CheckinDue | CheckinSubmitted | CheckinOverdue,
    due_at: dt.datetime | None,
) -> tuple[CheckinView, PairView, bool]:
    """The check-in, created (and counted as due) the first time insights hears of it."""
    pair = await _pair(uow, event.program_id, event.pair_id)
    row = await writes.find_checkin(uow, program_id=event.program_id, checkin_id=event.checkin_id)
    if row is not None:
        return row, pair, False
    row = CheckinView(
        program_id=event.program_id,
        checkin_id=event.checkin_id,
        pair_id=event.pair_id,
        status=CheckinStatus.DUE,
        due_at=due_at,
        was_overdue=False,
    )
    writes.add_row(uow, row)
    pair.checkins_due += 1
    writes.add_to(uow, event.program_id, "checkins.due")
    writes.add_on_day(uow, event.program_id, "checkins.due", (due_at or event.occurred_at).date())
    return row, pair, True


async def on_checkin_due(event: CheckinDue, uow: UnitOfWork) -> None:
    """Counts the check-in as due."""
    _, pair, _ = await _checkin(uow, event, event.due_at)
    await writes.refresh_health(uow, pair, at=event.occurred_at)
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)


async def on_checkin_submitted(event: CheckinSubmitted, uow: UnitOfWork) -> None:
    """Counts the answer (its content stays with the pair unless the program shares it)."""
    row, pair, _ = await _checkin(uow, event, None)
    before = CheckinStatus(row.status)
    if checkin_status(before, CheckinStatus.SUBMITTED) is not before:
        if before is CheckinStatus.OVERDUE:
            pair.open_overdue_checkins -= 1
            writes.add_to(uow, event.program_id, "checkins.overdue_now", -1)
        row.status = CheckinStatus.SUBMITTED
        pair.checkins_submitted += 1
        pair.overdue_streak, pair.reported_due_at = streak_answered(
            list(pair.overdue_streak or []),
            utc(pair.reported_due_at) if pair.reported_due_at else None,
            row.checkin_id,
            utc(row.due_at) if row.due_at else event.occurred_at,
        )
        day = utc(row.due_at).date() if row.due_at else event.occurred_at.date()
        writes.add_to(uow, event.program_id, "checkins.submitted")
        writes.add_on_day(uow, event.program_id, "checkins.submitted", day)
        pair.last_contact_at = later(
            utc(pair.last_contact_at) if pair.last_contact_at else None, event.occurred_at
        )
        writes.add_entry(
            uow,
            event,
            event.pair_id,
            "checkin.submitted",
            "check-in submitted",
            scores={"progress": event.progress},
            content=event.notes,
        )
        await writes.arm_contact_check(uow, pair)
    await writes.refresh_health(uow, pair, at=event.occurred_at)
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)


async def on_checkin_overdue(event: CheckinOverdue, uow: UnitOfWork) -> None:
    """Counts the check-in as overdue now, until it is submitted."""
    row, pair, _ = await _checkin(uow, event, event.due_at)
    if not row.was_overdue:
        row.was_overdue = True
        writes.add_to(uow, event.program_id, "checkins.overdue")
        summary = f"check-in overdue (escalation level {event.escalation_level})"
        writes.add_entry(uow, event, event.pair_id, "checkin.overdue", summary)
    before = CheckinStatus(row.status)
    if checkin_status(before, CheckinStatus.OVERDUE) is not before:
        row.status = CheckinStatus.OVERDUE
        pair.open_overdue_checkins += 1
        pair.overdue_streak = streak_missed(
            list(pair.overdue_streak or []),
            utc(pair.reported_due_at) if pair.reported_due_at else None,
            row.checkin_id,
            utc(row.due_at) if row.due_at else event.due_at,
        )
        writes.add_to(uow, event.program_id, "checkins.overdue_now")
    await writes.refresh_health(uow, pair, at=event.occurred_at)
    writes.count_event(uow, program_id=event.program_id, subject=event.subject)
