"""A synthetic program as raw event bodies, for bench.insights: registrations, proposals,
pairs, sessions held and missed, check-ins, feedback and emails, in publication order."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from shared.events import BY_SUBJECT

NINE_TO_FIVE = [{"weekday": d, "start": "09:00", "end": "17:00"} for d in range(5)]
PROGRAM = "bench"


def program_events(pairs: int, *, now: dt.datetime) -> list[tuple[str, dict[str, Any]]]:
    """(subject, body) of a program of `pairs` pairs over the 60 days before now, ~22 each."""
    start = now - dt.timedelta(days=60)
    out: list[tuple[str, dict[str, Any]]] = []

    def add(subject: str, days: float, **payload: Any) -> None:
        assert subject in BY_SUBJECT, subject
        out.append(
            (
                subject,
                {
                    "event_id": str(uuid.uuid4()),
                    "occurred_at": (start + dt.timedelta(days=days)).isoformat(),
                    "program_id": PROGRAM,
                    "schema_version": 1,
                    **payload,
                },
            )
        )

    for i in range(pairs):
        for role, pid in (("mentor", f"mentor-{i}"), ("mentee", f"mentee-{i}")):
            extra = {"capacity": 2} if role == "mentor" else {}
            add(
                "mentorship.participant.registered",
                0,
                participant_id=pid,
                email=f"{pid}@example.org",
                display_name=f"Person {pid}",
                role=role,
                timezone="UTC",
                working_hours=NINE_TO_FIVE,
                languages=["en"],
                demographics={"group": "ab"[i % 2]},
                **extra,
            )
    for i in range(pairs):
        ids = {
            "pair_id": f"p{i}",
            "round_id": "r1",
            "mentor_id": f"mentor-{i}",
            "mentee_id": f"mentee-{i}",
        }
        add("mentorship.pair.proposed", 1, **ids, score=0.5 + (i % 5) / 10)
        add("mentorship.pair.formed", 2, **ids, language="en")
    for i in range(pairs):
        for k in range(4):
            day = 5 + 14 * k
            sid = f"s{i}-{k}"
            begin = start + dt.timedelta(days=day)
            add(
                "mentorship.session.scheduled",
                day - 3,
                session_id=sid,
                pair_id=f"p{i}",
                kind="regular",
                start=begin.isoformat(),
                end=(begin + dt.timedelta(minutes=45)).isoformat(),
                anchor_timezone="UTC",
                attendee_ids=[f"mentor-{i}", f"mentee-{i}"],
                uid=f"{sid}@b",
                sequence=0,
                ical="BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
            )
            if (i + k) % 4:
                add(
                    "mentorship.session.held",
                    day,
                    session_id=sid,
                    pair_id=f"p{i}",
                    held_at=begin.isoformat(),
                    duration_minutes=45,
                )
            else:
                add(
                    "mentorship.session.missed",
                    day,
                    session_id=sid,
                    pair_id=f"p{i}",
                    no_show_ids=[f"mentee-{i}"],
                )
        for k in range(2):
            due = start + dt.timedelta(days=20 + 14 * k)
            ids = {"checkin_id": f"c{i}-{k}", "pair_id": f"p{i}", "participant_id": f"mentee-{i}"}
            add("mentorship.checkin.due", 19 + 14 * k, **ids, due_at=due.isoformat())
            if k == 0:
                add("mentorship.checkin.submitted", 20, **ids, progress=4, notes="fine")
            else:
                add(
                    "mentorship.checkin.overdue",
                    36,
                    **ids,
                    due_at=due.isoformat(),
                    escalation_level=0,
                )
        add(
            "mentorship.feedback.given",
            30,
            pair_id=f"p{i}",
            from_id=f"mentee-{i}",
            about_id=f"mentor-{i}",
            rating=3 + i % 3,
        )
        for k, subject in enumerate(
            ("mentorship.notification.sent", "mentorship.notification.failed")
        ):
            report = {
                "delivery_id": f"d{i}-{k}",
                "recipient_id": f"mentee-{i}",
                "kind": "session.kickoff",
                "channel": "email",
                "source_event_id": str(uuid.uuid4()),
            }
            if k == 0:
                add(subject, 3, **report, message_id=f"<d{i}@b>")
            else:
                add(subject, 3, **report, attempts=5, reason="550 mailbox unavailable")
    return out
