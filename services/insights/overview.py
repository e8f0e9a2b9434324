"""A program's overview, as coordinators read it, built from the program's counters."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from services.insights.projections import event_label

WINDOWS = (30, 90)


class SessionCounts(BaseModel):
    model_config = ConfigDict(frozen=True)

    days: int
    planned: int
    held: int
    missed: int


class Checkins(BaseModel):
    model_config = ConfigDict(frozen=True)

    due: int
    submitted: int
    adherence: float | None
    overdue_now: int


class AssessmentAverage(BaseModel):
    model_config = ConfigDict(frozen=True)

    period: str
    dimension: str
    average: float
    responses: int


class Overview(BaseModel):
    """How a program is doing, in numbers."""

    model_config = ConfigDict(frozen=True)

    program_id: str
    participants: dict[str, int]
    mentees_matched: int
    match_rate: float
    pairs_by_state: dict[str, int]
    pairs_by_health: dict[str, int]
    average_days_to_first_session: float | None
    sessions: list[SessionCounts]
    sessions_upcoming: int = Field(
        description="sessions planned after today (by their start's UTC day), not yet due"
    )
    checkins: Checkins
    milestones_reached: int
    feedback: dict[str, int]
    opportunities: dict[str, int]
    assessments: list[AssessmentAverage]
    emails: dict[str, int]
    unschedulable_pairs: int
    matching_rounds: int
    events_seen: dict[str, int]


def _group(counters: Mapping[str, float], prefix: str) -> dict[str, int]:
    return {
        metric.removeprefix(prefix): int(value)
        for metric, value in sorted(counters.items())
        if metric.startswith(prefix) and value
    }


def build_overview(
    program_id: str,
    counters: Mapping[str, float],
    daily: Sequence[tuple[str, dt.date, int]],
    assessments: Sequence[AssessmentAverage],
    events_seen: Mapping[str, int],
    *,
    today: dt.date,
) -> Overview:
    """Combines the projected counters into the overview."""
    c = counters
    mentees = int(c.get("participants.mentee", 0))
    matched = int(c.get("mentees.matched", 0))
    first = int(c.get("first_session.pairs", 0))
    due, submitted = int(c.get("checkins.due", 0)), int(c.get("checkins.submitted", 0))
    windows = []
    for days in WINDOWS:
        since = today - dt.timedelta(days=days)
        total = {"planned": 0, "held": 0, "missed": 0}
        for metric, day, value in daily:
            kind = metric.removeprefix("sessions.")
            if kind in total and since < day <= today:
                total[kind] += value
        windows.append(SessionCounts(days=days, **total))
    upcoming = sum(v for metric, day, v in daily if metric == "sessions.planned" and day > today)
    return Overview(
        program_id=program_id,
        participants=_group(c, "participants."),
        mentees_matched=matched,
        match_rate=round(matched / mentees, 3) if mentees else 0.0,
        pairs_by_state=_group(c, "pairs.state."),
        pairs_by_health=_group(c, "pairs.health."),
        average_days_to_first_session=round(c["first_session.days"] / first, 1) if first else None,
        sessions=windows,
        sessions_upcoming=upcoming,
        checkins=Checkins(
            due=due,
            submitted=submitted,
            adherence=round(submitted / due, 3) if due else None,
            overdue_now=int(c.get("checkins.overdue_now", 0)),
        ),
        milestones_reached=int(c.get("milestones", 0)),
        feedback=_group(c, "feedback."),
        opportunities=_group(c, "opportunities."),
        assessments=list(assessments),
        emails={"sent": int(c.get("emails.sent", 0)), "failed": int(c.get("emails.failed", 0))},
        unschedulable_pairs=int(c.get("pairs.unschedulable", 0)),
        matching_rounds=int(c.get("matching.rounds", 0)),
        events_seen={event_label(s): n for s, n in sorted(events_seen.items())},
    )


class WeekPoint(BaseModel):
    """One week of a chart (weeks start on Monday)."""

    model_config = ConfigDict(frozen=True)

    week: dt.date
    sessions_held: int
    checkins_due: int
    checkins_submitted: int
    checkin_adherence: float | None


def weekly(
    daily: Sequence[tuple[str, dt.date, int]], *, today: dt.date, weeks: int
) -> list[WeekPoint]:
    """Sessions held and check-in adherence per week, the last `weeks` weeks."""
    monday = today - dt.timedelta(days=today.weekday())
    starts = [monday - dt.timedelta(weeks=n) for n in range(weeks - 1, -1, -1)]
    sums: dict[tuple[dt.date, str], int] = {}
    for metric, day, value in daily:
        week = day - dt.timedelta(days=day.weekday())
        sums[(week, metric)] = sums.get((week, metric), 0) + value
    points = []
    for week in starts:
        due = sums.get((week, "checkins.due"), 0)
        submitted = sums.get((week, "checkins.submitted"), 0)
        points.append(
            WeekPoint(
                week=week,
                sessions_held=sums.get((week, "sessions.held"), 0),
                checkins_due=due,
                checkins_submitted=submitted,
                checkin_adherence=round(submitted / due, 3) if due else None,
            )
        )
    return points
