"""Valid event payloads to vary in unit tests."""

from __future__ import annotations

from typing import Any

NINE_TO_FIVE = [{"weekday": d, "start": "09:00", "end": "17:00"} for d in range(5)]


def registration(**changes: Any) -> dict[str, Any]:
    """A valid participant.registered payload (without an event_id), with changes applied."""
    body: dict[str, Any] = {
        "program_id": "prog-1",
        "occurred_at": "2027-03-01T09:00:00+00:00",
        "participant_id": "ana",
        "email": "ana@example.org",
        "display_name": "Ana",
        "role": "mentee",
        "timezone": "Europe/Berlin",
        "working_hours": NINE_TO_FIVE,
        "languages": ["en"],
    }
    body.update(changes)
    return body
