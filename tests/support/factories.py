"""Raw events as an outside system would publish them (plain dicts, no project models)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

WEEKDAYS_9_TO_5 = [{"weekday": d, "start": "09:00", "end": "17:00"} for d in range(5)]


def envelope(program_id: str, **payload: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
        "program_id": program_id,
        "schema_version": 1,
        **payload,
    }


def registration(
    program_id: str,
    participant_id: str,
    *,
    role: str = "mentee",
    timezone: str = "Europe/Berlin",
    languages: list[str] | None = None,
    capacity: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body = envelope(
        program_id,
        participant_id=participant_id,
        email=f"{participant_id}@example.org",
        display_name=f"Person {participant_id}",
        role=role,
        timezone=timezone,
        working_hours=WEEKDAYS_9_TO_5,
        languages=languages or ["en"],
        **extra,
    )
    if role == "mentor":
        body["capacity"] = capacity or 2
    return body


def headers_for(
    body: dict[str, Any], subject: str, *, msg_id: str | None = None, traceparent: str | None = None
) -> dict[str, str]:
    headers = {
        "Nats-Msg-Id": msg_id or body["event_id"],
        "ce-specversion": "1.0",
        "ce-id": body["event_id"],
        "ce-type": subject,
        "ce-source": "/tests/outside-system",
        "ce-time": body["occurred_at"],
        "Content-Type": "application/json",
    }
    if traceparent:
        headers["traceparent"] = traceparent
    return headers


async def publish(js: Any, subject: str, body: dict[str, Any], **header_options: Any) -> Any:
    return await js.publish(
        subject,
        json.dumps(body).encode(),
        headers=headers_for(body, subject, **header_options),
        timeout=5,
    )
