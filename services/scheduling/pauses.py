"""A pair's pause: what it stopped, a charter agreed while it lasts, and what its end restarts.

pair.paused records the pause (until when, the check-in pace it stopped); a charter.agreed
that comes meanwhile is kept, not applied, so nothing is planned inside the pause. The pause
ends on pair.resumed, or on its `until` date (a durable timer) when no resume comes: then the
kept charter re-plans the series from that moment on, the pause's cancelled occurrences still
ahead come back (those of a series the charter replaced stay cancelled), and check-ins restart
at the charter's pace (else the pace they had).
"""

from __future__ import annotations

import datetime as dt

from services.scheduling import charters, checkins, followups, kinds, meetings, plans, store
from services.scheduling.plans import Status
from shared.events import CharterAgreed, SessionKind
from shared.timers import Due, TimerHandler, cancel, schedule
from shared.unit_of_work import UnitOfWork

PAUSE_END = "pause.end"
SERIES_KINDS = {k.value for k in (SessionKind.REGULAR, *kinds.RHYTHMS)}


async def begin(
    uow: UnitOfWork, *, program_id: str, pair_id: str, until: dt.datetime | None
) -> None:
    """Records the pause (a second pause while paused moves its end, keeps its charter)."""
    pause = await uow.session.get(store.Pause, (program_id, pair_id))
    if pause is None:
        pace = await followups.checkin_cadence(uow, program_id=program_id, pair_id=pair_id)
        pause = store.Pause(program_id=program_id, pair_id=pair_id, checkin_days=pace)
        uow.session.add(pause)
    pause.paused_at, pause.until = uow.clock.now(), until
    if until is None:
        await cancel(uow.session, store.timers, program_id=program_id, kind=PAUSE_END, key=pair_id)
    else:
        await schedule(
            uow.session, store.timers, program_id=program_id, kind=PAUSE_END, key=pair_id,
            due_at=until,
        )  # fmt: skip


async def hold(uow: UnitOfWork, event: CharterAgreed) -> bool:
    """Keeps a charter agreed during the pair's pause; False when the pair is not paused."""
    pause = await uow.session.get(store.Pause, (event.program_id, event.pair_id))
    if pause is None:
        return False
    held = pause.charter
    if held is None or int(held.get("version", 1)) <= event.version:  # the latest version wins
        pause.charter = event.model_dump(mode="json")
    return True


async def discard(uow: UnitOfWork, *, program_id: str, pair_id: str) -> None:
    """The pair ended: its pause (and a charter kept in it) is gone."""
    pause = await uow.session.get(store.Pause, (program_id, pair_id))
    if pause is not None:
        await uow.session.delete(pause)
    await cancel(uow.session, store.timers, program_id=program_id, kind=PAUSE_END, key=pair_id)


async def resume(uow: UnitOfWork, *, program_id: str, pair_id: str, timer: bool = False) -> None:
    """The pause is over: the kept charter applies, occurrences ahead return, check-ins restart.

    `timer`: the pause reached its `until` (the timer's own item is marked done by the loop).
    """
    pause = await uow.session.get(store.Pause, (program_id, pair_id))
    if pause is not None:
        await uow.session.delete(pause)
    if not timer:
        await cancel(uow.session, store.timers, program_id=program_id, kind=PAUSE_END, key=pair_id)
    kickoff = await store.get_meeting(
        uow.session, program_id=program_id, meeting_id=plans.kickoff_session_id(program_id, pair_id)
    )
    charter = None
    if pause is not None and pause.charter is not None:
        charter = CharterAgreed.model_validate(pause.charter)
        if kickoff is not None:
            await charters.apply(uow, charter, kickoff, resuming=True)
    await _reinstate(uow, program_id, pair_id)
    if kickoff is None:
        return
    pace = checkins.cadence_days(None)
    if charter is not None:
        pace = checkins.cadence_days(charter.cadence_days)
    elif pause is not None and pause.checkin_days is not None:
        pace = pause.checkin_days
    await followups.start_checkins(
        uow, program_id=program_id, pair_id=pair_id, mentor=kickoff.mentor_id,
        mentee=kickoff.mentee_id, cadence_days=pace,
    )  # fmt: skip


async def _reinstate(uow: UnitOfWork, program_id: str, pair_id: str) -> None:
    """The pause's cancelled occurrences still ahead are announced again, except those of a
    series a charter replaced (one of a kind is current: the latest generation)."""
    rows = await store.future_sessions(
        uow.session, program_id=program_id, pair_id=pair_id, after=uow.clock.now(),
        statuses=(Status.CANCELLED.value,),
    )  # fmt: skip
    live = await charters.live_series(uow, program_id, pair_id)
    schedules = meetings.Schedules(uow, program_id)
    for row in rows:
        if not (row.note and row.note.startswith(charters.PAUSED)):
            continue
        if row.kind in SERIES_KINDS and row.meeting_id not in live:
            continue  # a series the charter replaced
        await meetings.recheck(
            uow, row, why="the pair resumed", reinstate=True, schedules=schedules
        )
    await schedules.finish()


async def on_pause_end(item: Due, uow: UnitOfWork) -> None:
    """The pause reached its `until` without a pair.resumed: it ends as a resume would."""
    if await uow.session.get(store.Pause, (item.program_id, item.key)) is None:
        return  # resumed or ended meanwhile
    await resume(uow, program_id=item.program_id, pair_id=item.key, timer=True)


HANDLERS = {PAUSE_END: TimerHandler(done=on_pause_end)}
