"""A small program as events: people with consented demographics, pairs, sessions, check-ins,
feedback, milestones, assessments, opportunities and emails; with the numbers it must give."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

from shared.events import (
    AssessmentSubmitted,
    CheckinDue,
    CheckinOverdue,
    CheckinSubmitted,
    Event,
    FeedbackGiven,
    MatchingCompleted,
    MilestoneReached,
    NotificationFailed,
    NotificationSent,
    OpportunityOffered,
    PairFormed,
    PairProposed,
    ParticipantRegistered,
    SessionHeld,
    SessionMissed,
    SessionScheduled,
    SessionUnschedulable,
)
from tests.support.factories import registration

NOW = dt.datetime(2027, 3, 1, 8, tzinfo=dt.UTC)  # a Monday, the handler tests' clock
PROGRAM = "program-a"


@dataclass
class Program:
    """Events of one program in publication order, built with a clock that only moves on."""

    program_id: str = PROGRAM
    start: dt.datetime = NOW - dt.timedelta(days=60)
    events: list[Event] = field(default_factory=list)
    _n: int = 0

    def _at(self, days: float) -> dict[str, Any]:
        self._n += 1
        return {
            "event_id": uuid.uuid5(uuid.NAMESPACE_URL, f"{self.program_id}/{self._n}"),
            "occurred_at": self.start + dt.timedelta(days=days),
            "program_id": self.program_id,
        }

    def add(self, event: Event) -> Event:
        self.events.append(event)
        return event

    def register(self, pid: str, role: str, days: float, **extra: Any) -> None:
        body = registration(self.program_id, pid, role=role, timezone="UTC", **extra)
        body |= self._at(days)
        self.add(ParticipantRegistered.model_validate(body))

    def pair(self, pair_id: str, mentor: str, mentee: str, days: float, score: float) -> None:
        ids = {"pair_id": pair_id, "round_id": "r1", "mentor_id": mentor, "mentee_id": mentee}
        self.add(PairProposed(**self._at(days), **ids, score=score))
        self.add(PairFormed(**self._at(days + 1), **ids, language="en"))

    def session(self, pair_id: str, sid: str, days: float, outcome: str, no_show: str = "") -> None:
        start = self.start + dt.timedelta(days=days)
        self.add(
            SessionScheduled(
                **self._at(days - 3),
                session_id=sid,
                pair_id=pair_id,
                kind="regular",
                start=start,
                end=start + dt.timedelta(minutes=45),
                anchor_timezone="UTC",
                attendee_ids=["x"],
                uid=f"{sid}@m",
                sequence=0,
                ical="BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
            )
        )
        if outcome == "held":
            self.add(
                SessionHeld(
                    **self._at(days),
                    session_id=sid,
                    pair_id=pair_id,
                    held_at=start,
                    duration_minutes=45,
                )
            )
        elif outcome == "missed":
            ids = [no_show] if no_show else []
            self.add(
                SessionMissed(
                    **self._at(days + 0.1), session_id=sid, pair_id=pair_id, no_show_ids=ids
                )
            )

    def checkin(self, pair_id: str, cid: str, who: str, days: float, answer: str) -> None:
        due = self.start + dt.timedelta(days=days)
        ids = {"checkin_id": cid, "pair_id": pair_id, "participant_id": who}
        self.add(CheckinDue(**self._at(days - 1), **ids, due_at=due))
        if answer in ("overdue", "late"):
            self.add(CheckinOverdue(**self._at(days + 2), **ids, due_at=due, escalation_level=0))
        if answer in ("yes", "late"):
            self.add(
                CheckinSubmitted(
                    **self._at(days + 3), **ids, progress=4, notes=f"private notes {cid}"
                )
            )


def sample_program(program_id: str = PROGRAM, *, now: dt.datetime = NOW) -> Program:
    """Eleven mentees (6 in group 'a', 4 in 'b', one without consent), three mentors, three
    pairs over the 60 days before `now`: pair-0 thrives, pair-1 struggles, pair-2 went quiet."""
    p = Program(program_id=program_id, start=now - dt.timedelta(days=60))
    for i in range(3):
        p.register(f"mentor-{i}", "mentor", 0, demographics={"group": "a"})
    for i in range(10):
        p.register(f"mentee-{i}", "mentee", 0.5, demographics={"group": "a" if i < 6 else "b"})
    p.register("mentee-x", "mentee", 0.6)  # no consent: in no group
    p.pair("pair-0", "mentor-0", "mentee-0", 2, 0.9)  # thriving
    p.pair("pair-1", "mentor-1", "mentee-1", 2, 0.8)  # struggling: at risk
    p.pair("pair-2", "mentor-2", "mentee-6", 3, 0.5)
    p.add(
        MatchingCompleted(
            **p._at(4),
            round_id="r1",
            pairs_formed=3,
            unmatched_mentees=8,
            unmatched_mentee_ids=["mentee-2", "mentee-7"],
        )
    )
    p.session("pair-0", "s0-1", 7, "held")
    p.session("pair-0", "s0-2", 21, "held")
    p.session("pair-0", "s0-3", 50, "held")
    p.session("pair-0", "s0-4", 65, "planned")
    p.session("pair-1", "s1-1", 7, "held")
    p.session("pair-1", "s1-2", 21, "missed", no_show="mentee-1")
    p.session("pair-1", "s1-3", 35, "missed", no_show="mentee-1")
    p.session("pair-1", "s1-4", 49, "missed")
    p.session("pair-2", "s2-1", 10, "held")
    p.checkin("pair-0", "c0-1", "mentee-0", 14, "yes")
    p.checkin("pair-0", "c0-2", "mentee-0", 28, "late")
    p.checkin("pair-1", "c1-1", "mentee-1", 14, "overdue")
    p.checkin("pair-1", "c1-2", "mentee-1", 28, "overdue")
    p.checkin("pair-1", "c1-3", "mentee-1", 42, "yes")
    p.add(
        FeedbackGiven(
            **p._at(22),
            pair_id="pair-0",
            from_id="mentee-0",
            about_id="mentor-0",
            rating=5,
            comment="great",
        )
    )
    p.add(
        FeedbackGiven(
            **p._at(22), pair_id="pair-0", from_id="mentor-0", about_id="mentee-0", rating=4
        )
    )
    p.add(
        FeedbackGiven(
            **p._at(36), pair_id="pair-1", from_id="mentor-1", about_id="mentee-1", rating=2
        )
    )
    p.add(MilestoneReached(**p._at(30), pair_id="pair-0", milestone_id="ms-1", title="first talk"))
    p.add(
        SessionUnschedulable(
            **p._at(12), pair_id="pair-2", kind="regular", reason="no overlap in working hours"
        )
    )
    for i, kind in enumerate(["stretch", "stretch", "sponsorship", "introduction"]):
        p.add(
            OpportunityOffered(
                **p._at(40),
                opportunity_id=f"o{i}",
                participant_id=f"mentee-{i}",
                kind=kind,
                title="x",
            )
        )
    for i, (month_day, score) in enumerate([(20, 4.0), (20, 2.0), (45, 5.0)]):
        p.add(
            AssessmentSubmitted(
                **p._at(month_day),
                participant_id=f"mentee-{i}",
                instrument="pulse",
                scores={"satisfaction": score, "treated_fairly": score},
            )
        )
    base = {
        "recipient_id": "mentee-0",
        "kind": "session.kickoff",
        "channel": "email",
        "source_event_id": uuid.uuid4(),
    }
    p.add(NotificationSent(**p._at(5), delivery_id=f"{program_id}-d1", message_id="<d1@m>", **base))
    p.add(
        NotificationFailed(
            **p._at(5), delivery_id=f"{program_id}-d2", attempts=5, reason="550", **base
        )
    )
    p.add(
        NotificationFailed(
            **p._at(5.1), delivery_id=f"{program_id}-d3", attempts=5, reason="550", **base
        )
    )
    p.add(
        NotificationSent(**p._at(5.2), delivery_id=f"{program_id}-d3", message_id="<d3@m>", **base)
    )
    return p
