"""A formed pair's plan: a kickoff, then a recurring series at the pair's cadence.

Pure decisions: the handler loads both people with their busy time, calls `plan_pair`, stores
the meetings and occurrences it returns and emits what `announcements` makes of them.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from enum import StrEnum
from zoneinfo import ZoneInfo

from services.scheduling import kinds, series
from services.scheduling.planning import NoSlot, Planner, Rules, find_slot
from shared.events import SessionKind
from shared.worktime import Interval

# ids are uuid5 names in this namespace, so every replica derives the same id
SESSIONS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:mentorship:scheduling:sessions")


class Status(StrEnum):
    """Where an occurrence stands."""

    SCHEDULED = "scheduled"
    UNSCHEDULABLE = "unschedulable"  # no slot inside both people's working hours
    CANCELLED = "cancelled"
    HELD = "held"
    MISSED = "missed"


def _name(*parts: str) -> str:
    # a JSON list keeps ("a/b", "c") and ("a", "b/c") apart, which a joined string would not
    return str(uuid.uuid5(SESSIONS, json.dumps(list(parts))))


def kickoff_session_id(program_id: str, pair_id: str) -> str:
    """The id of a pair's kickoff, unique across programs (pair ids are unique only in one)."""
    return _name(program_id, pair_id, SessionKind.KICKOFF.value)


def feedback_session_id(program_id: str, pair_id: str, milestone_id: str) -> str:
    """The id of the feedback moment planned when a pair reached one milestone."""
    return _name(program_id, pair_id, SessionKind.FEEDBACK_MOMENT.value, milestone_id)


def shadow_session_id(program_id: str, pair_id: str, opportunity_id: str) -> str:
    """The id of the shadow session planned for one shadowing opportunity offered."""
    return _name(program_id, pair_id, SessionKind.SHADOWING.value, opportunity_id)


def series_id(program_id: str, pair_id: str, generation: int = 0) -> str:
    """The id of a pair's series; a re-planned series (new cadence) is a new generation."""
    return _name(program_id, pair_id, "series", str(generation))


def rhythm_series_id(program_id: str, pair_id: str, kind: SessionKind, generation: int = 0) -> str:
    """The id of a pair's series of one extra kind (coffee chats, quarterly reflections); a
    charter's new rhythm for it is a new generation."""
    if generation == 0:
        return _name(program_id, pair_id, "series", kind.value)
    return _name(program_id, pair_id, "series", kind.value, str(generation))


def kind_series_id(program_id: str, pair_id: str, kind: SessionKind, generation: int) -> str:
    """The id of a pair's series of a kind: the one-to-ones or an extra rhythm."""
    if kind is SessionKind.REGULAR:
        return series_id(program_id, pair_id, generation)
    return rhythm_series_id(program_id, pair_id, kind, generation)


def occurrence_id(series: str, recurrence_id: dt.datetime) -> str:
    """The id of one occurrence of a series, named by its rule time."""
    return _name(series, recurrence_id.astimezone(dt.UTC).isoformat())


def uid_for(meeting_id: str) -> str:
    """The iCalendar UID of a meeting, unique across programs since the meeting id is."""
    return f"{meeting_id}@mentorship"


@dataclass(frozen=True)
class Planned:
    """One occurrence (or a single session) to store."""

    session_id: str
    recurrence_id: dt.datetime | None
    slot: Interval | None
    status: Status
    note: str | None
    edge_of: tuple[str, ...] = ()


@dataclass(frozen=True)
class MeetingPlan:
    """A single session or a series: what one UID stands for, and its occurrences."""

    meeting_id: str
    kind: SessionKind
    minutes: int
    timezone: str
    rrule: str | None
    first_local: dt.datetime | None  # the rule's first start, wall clock in `timezone`
    occurrences: tuple[Planned, ...]

    @property
    def uid(self) -> str:
        return uid_for(self.meeting_id)

    def burdened(self) -> list[str]:
        """One entry per occurrence placed at someone's edge of the day."""
        return [p for o in self.occurrences for p in o.edge_of]


@dataclass(frozen=True)
class PairPlan:
    kickoff: MeetingPlan
    series: MeetingPlan | None
    series_reason: str | None  # why there is no series


def earliest_start(now: dt.datetime, timezone: str, *, lead_days: int, rules: Rules) -> dt.datetime:
    """`lead_days` local days from today in the zone, and at least the minimum notice ahead."""
    zone = ZoneInfo(timezone)
    day = now.astimezone(zone).date() + dt.timedelta(days=lead_days)
    midnight = dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC)
    return max(midnight, now + rules.notice)


def plan_kickoff(
    program_id: str,
    pair_id: str,
    mentor: Planner,
    mentee: Planner,
    *,
    not_before: dt.datetime,
    rules: Rules,
) -> MeetingPlan:
    """The pair's kickoff in both people's working hours, written in the mentor's zone."""
    session_id = kickoff_session_id(program_id, pair_id)
    return plan_single(
        session_id, SessionKind.KICKOFF, mentor, mentee, not_before=not_before, rules=rules
    )


def plan_single(
    session_id: str,
    kind: SessionKind,
    mentor: Planner,
    mentee: Planner,
    *,
    not_before: dt.datetime,
    rules: Rules,
) -> MeetingPlan:
    """One session of a kind (its default length) at the first fair slot both can make."""
    profile = kinds.profile(kind)
    found = find_slot(
        mentor,
        mentee,
        minutes=profile.minutes,
        not_before=not_before,
        until=not_before + rules.horizon,
        rules=rules,
    )
    if isinstance(found, NoSlot):
        planned = Planned(session_id, None, None, Status.UNSCHEDULABLE, found.reason)
    else:
        planned = Planned(session_id, None, found.interval, Status.SCHEDULED, None, found.edge_of)
    return MeetingPlan(
        session_id,
        kind,
        profile.minutes,
        mentor.availability.timezone,
        None,
        None,
        (planned,),
    )


def plan_series(
    program_id: str,
    pair_id: str,
    mentor: Planner,
    mentee: Planner,
    *,
    cadence: series.Cadence,
    not_before: dt.datetime,
    rules: Rules,
    minutes: int | None = None,
    generation: int = 0,
    kind: SessionKind = SessionKind.REGULAR,
) -> MeetingPlan | NoSlot:
    """A series of one kind (regular one-to-ones unless told) in the mentor's zone."""
    length = minutes or kinds.profile(kind).minutes
    anchor = find_slot(
        mentor, mentee, minutes=length, not_before=not_before,
        until=not_before + rules.horizon, rules=rules,
    )  # fmt: skip
    if isinstance(anchor, NoSlot):
        return anchor
    zone = mentor.availability.timezone
    first_local = anchor.interval.start.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    rrule = series.rrule_for(cadence, first_local)
    starts = series.rule_starts(rrule, first_local, zone)
    placed = series.plan_occurrences(
        mentor, mentee, starts, minutes=length, rules=rules, not_before=not_before
    )
    meeting = kind_series_id(program_id, pair_id, kind, generation)
    occurrences = tuple(
        Planned(
            occurrence_id(meeting, o.recurrence_id),
            o.recurrence_id,
            None if o.slot is None else o.slot.interval,
            Status.UNSCHEDULABLE if o.slot is None else Status.SCHEDULED,
            o.reason,
            anchor.edge_of if o.recurrence_id == anchor.interval.start else _edges(o),
        )
        for o in placed
    )
    return MeetingPlan(meeting, kind, length, zone, rrule, first_local, occurrences)


def plan_pair(
    program_id: str,
    pair_id: str,
    mentor: Planner,
    mentee: Planner,
    *,
    now: dt.datetime,
    lead_days: int,
    rules: Rules,
    cadence: series.Cadence,
) -> PairPlan:
    """The kickoff, then the series a cadence after it (after the lead time if no kickoff)."""
    not_before = earliest_start(now, mentor.availability.timezone, lead_days=lead_days, rules=rules)
    kickoff = plan_kickoff(program_id, pair_id, mentor, mentee, not_before=not_before, rules=rules)
    slot = kickoff.occurrences[0].slot
    series_from = not_before
    if slot is not None:
        edged = kickoff.occurrences[0].edge_of
        mentor, mentee = (_busy_with(p, slot, edged) for p in (mentor, mentee))
        series_from = (
            slot.start + dt.timedelta(days=series.cadence_days(cadence)) - dt.timedelta(days=1)
        )
    regular = plan_series(
        program_id, pair_id, mentor, mentee, cadence=cadence, not_before=series_from, rules=rules
    )
    if isinstance(regular, NoSlot):
        return PairPlan(kickoff, None, regular.reason)
    return PairPlan(kickoff, regular, None)


def _edges(occurrence: series.Occurrence) -> tuple[str, ...]:
    # the rule's time was chosen once, for the anchor; a moved occurrence was chosen again
    return occurrence.slot.edge_of if occurrence.slot is not None and occurrence.moved else ()


def _busy_with(person: Planner, taken: Interval, edged: tuple[str, ...]) -> Planner:
    burden = person.edge_burden + edged.count(person.participant_id)
    return Planner(person.participant_id, person.availability, [*person.busy, taken], burden)
