"""What follows from time passing, on the durable timers: missed sessions and check-ins.

- `session.missed`: armed at a session's end + MENTORSHIP_MISSED_AFTER_HOURS; if nobody confirmed
  by then, the session is missed, with who confirmed and who did not.
- `checkin.due`: one per pair, re-armed at the pair's check-in cadence; each due check-in arms
  `checkin.overdue` level 1, which arms level 2, then 3, unless the report came. Each level is
  one timer item, so it is sent once, also with several replicas.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete

from services.scheduling import checkins, store
from services.scheduling.plans import Status
from shared.events import CheckinDue, CheckinOverdue, SessionHeld, SessionMissed
from shared.timers import (
    Arm,
    Due,
    TimerHandler,
    armed_row,
    cancel,
    schedule,
    schedule_many,
    still_pending,
)
from shared.unit_of_work import UnitOfWork

MISSED, DUE, OVERDUE = "session.missed", "checkin.due", "checkin.overdue"


async def arm_missed(uow: UnitOfWork, row: store.Session) -> None:
    """(Re)arms the missed-session check at the session's end plus the confirmation time."""
    await arm_missed_many(uow, [row])


async def arm_missed_many(uow: UnitOfWork, rows: Sequence[store.Session]) -> None:
    """`arm_missed` for many sessions in one statement (a series, or a re-plan of one)."""
    await schedule_many(uow.session, store.timers, _missed_arms(uow, rows))


def arm_missed_at_commit(uow: UnitOfWork, rows: Sequence[store.Session]) -> None:
    """`arm_missed_many` for new sessions, written with the batch's other upserts at its end.

    For sessions planned just now (nothing in the same batch disarms them): a batch of formed
    pairs arms all its sessions in one statement instead of one per plan.
    """
    for arm in _missed_arms(uow, rows):
        uow.upsert(store.timers, armed_row(arm))


def _missed_arms(uow: UnitOfWork, rows: Sequence[store.Session]) -> list[Arm]:
    after = dt.timedelta(hours=uow.settings.missed_after_hours)
    return [
        Arm(row.program_id, MISSED, row.session_id, store.utc(row.end) + after)  # type: ignore[arg-type]
        for row in {r.session_id: r for r in rows if r.end is not None}.values()
    ]


async def disarm_missed_many(uow: UnitOfWork, rows: Sequence[store.Session]) -> None:
    """`disarm_missed` for many sessions of one program in one statement."""
    if not rows:
        return
    t = store.timers
    await uow.session.execute(
        delete(t).where(
            t.c.program_id == rows[0].program_id,
            t.c.kind == MISSED,
            t.c.key.in_([r.session_id for r in rows]),
            still_pending(t),
        )
    )


async def disarm_missed(uow: UnitOfWork, row: store.Session) -> None:
    """A cancelled or confirmed session needs no missed-session check."""
    await cancel(
        uow.session, store.timers, program_id=row.program_id, kind=MISSED, key=row.session_id
    )


async def on_missed_due(item: Due, uow: UnitOfWork) -> None:
    """Nobody confirmed the session in time: session.missed, never held by default."""
    row = await store.get_session(uow.session, program_id=item.program_id, session_id=item.key)
    if row is None or row.status != Status.SCHEDULED:
        return  # held, cancelled or moved meanwhile
    reported = row.attendance or {}
    confirmed = [p for p, there in reported.items() if there]
    row.status = Status.MISSED.value
    uow.emit(
        SessionMissed(
            program_id=row.program_id, occurred_at=uow.clock.now(), session_id=row.session_id,
            pair_id=row.pair_id, no_show_ids=[p for p in row.attendee_ids if p not in confirmed],
            confirmed_ids=confirmed,
            reason=f"no confirmation within {uow.settings.missed_after_hours:g} hours of the end",
        )
    )  # fmt: skip


def record_held(uow: UnitOfWork, row: store.Session, event: SessionHeld) -> None:
    """Keeps a held session's attendance (from a tool or a 'we met' link)."""
    present = set(event.present_ids)
    row.status = Status.HELD.value
    row.attendance = {p: p in present for p in row.attendee_ids}


async def start_checkins(
    uow: UnitOfWork, *, program_id: str, pair_id: str, mentor: str, mentee: str, cadence_days: int
) -> None:
    """Arms the pair's first check-in a cadence from now (again: moves it to the new cadence)."""
    payload = {"mentor": mentor, "mentee": mentee, "cadence_days": cadence_days, "number": 1}
    existing = await _pair_timer(uow, program_id, pair_id)
    if existing is not None:
        payload["number"] = existing["number"]
    await schedule(
        uow.session, store.timers, program_id=program_id, kind=DUE, key=pair_id,
        due_at=uow.clock.now() + dt.timedelta(days=cadence_days), payload=payload,
    )  # fmt: skip


def start_checkins_at_commit(
    uow: UnitOfWork, *, program_id: str, pair_id: str, mentor: str, mentee: str, cadence_days: int
) -> None:
    """`start_checkins` for a pair planned just now, written with the batch's upserts at its end
    (one statement for a round's pairs, no lookup per pair). Check-ins already armed for the
    pair (a charter's, say) are kept as they are."""
    payload = {"mentor": mentor, "mentee": mentee, "cadence_days": cadence_days, "number": 1}
    due_at = uow.clock.now() + dt.timedelta(days=cadence_days)
    row = armed_row(Arm(program_id, DUE, pair_id, due_at, payload))
    uow.upsert(store.timers, row, if_absent=True)


async def checkin_cadence(uow: UnitOfWork, *, program_id: str, pair_id: str) -> int | None:
    """The days between the pair's check-ins as armed now; None when none are armed."""
    existing = await _pair_timer(uow, program_id, pair_id)
    return None if existing is None else int(existing["cadence_days"])


async def stop_checkins(uow: UnitOfWork, *, program_id: str, pair_id: str) -> None:
    """No more check-ins for the pair (paused or ended)."""
    await cancel(uow.session, store.timers, program_id=program_id, kind=DUE, key=pair_id)


async def _pair_timer(uow: UnitOfWork, program_id: str, pair_id: str) -> dict[str, Any] | None:
    t = store.timers
    row = (
        await uow.session.execute(
            t.select().where(t.c.program_id == program_id, t.c.kind == DUE, t.c.key == pair_id)
        )
    ).first()
    return None if row is None else dict(row.payload)


async def on_checkin_due(item: Due, uow: UnitOfWork) -> None:
    """checkin.due for the mentee; level 1 armed; the next check-in a cadence later."""
    p, now = item.payload, uow.clock.now()
    checkin = checkins.checkin_id(item.program_id, item.key, p["number"])
    uow.session.add(
        store.Checkin(
            program_id=item.program_id, checkin_id=checkin, pair_id=item.key,
            participant_id=p["mentee"], mentor_id=p["mentor"], due_at=item.due_at,
            status="due", level=0,
        )
    )  # fmt: skip
    uow.emit(
        CheckinDue(
            program_id=item.program_id, occurred_at=now, checkin_id=checkin, pair_id=item.key,
            participant_id=p["mentee"], due_at=item.due_at,
        )
    )  # fmt: skip
    hours = _ladder(uow, item.program_id)
    await schedule(
        uow.session, store.timers, program_id=item.program_id, kind=OVERDUE, key=f"{checkin}/1",
        due_at=checkins.escalation_at(item.due_at, 1, hours), payload={"level": 1},
    )  # fmt: skip
    await schedule(
        uow.session, store.timers, program_id=item.program_id, kind=DUE, key=item.key,
        due_at=item.due_at + dt.timedelta(days=p["cadence_days"]),
        payload=p | {"number": p["number"] + 1},
    )  # fmt: skip


def _ladder(uow: UnitOfWork, program_id: str) -> tuple[float, float, float]:
    s = uow.settings
    return checkins.escalation_hours(
        program_id, s.checkin_escalation_hours, s.checkin_escalation_by_program
    )


async def on_checkin_overdue(item: Due, uow: UnitOfWork) -> None:
    """checkin.overdue at this level, unless the report came; the next level armed."""
    checkin_id, level = item.key.rsplit("/", 1)[0], int(item.payload["level"])
    row = await store.get_checkin(uow.session, program_id=item.program_id, checkin_id=checkin_id)
    if row is None or row.status != "due" or row.level >= level:
        return  # reported meanwhile, or this level was sent already
    row.level = level
    uow.emit(
        CheckinOverdue(
            program_id=item.program_id, occurred_at=uow.clock.now(), checkin_id=checkin_id,
            pair_id=row.pair_id, participant_id=row.participant_id,
            due_at=store.utc(row.due_at), escalation_level=level,
        )
    )  # fmt: skip
    if level < checkins.LEVELS[-1]:
        hours = _ladder(uow, item.program_id)
        await schedule(
            uow.session, store.timers, program_id=item.program_id, kind=OVERDUE,
            key=f"{checkin_id}/{level + 1}",
            due_at=checkins.escalation_at(store.utc(row.due_at), level + 1, hours),
            payload={"level": level + 1},
        )  # fmt: skip


async def record_submitted(uow: UnitOfWork, row: store.Checkin) -> None:
    """A report came: no further escalation."""
    row.status, row.submitted_at = "submitted", uow.clock.now()
    for level in checkins.LEVELS:
        await cancel(
            uow.session, store.timers, program_id=row.program_id, kind=OVERDUE,
            key=f"{row.checkin_id}/{level}",
        )  # fmt: skip


HANDLERS = {
    MISSED: TimerHandler(done=on_missed_due),
    DUE: TimerHandler(done=on_checkin_due),
    OVERDUE: TimerHandler(done=on_checkin_overdue),
}
