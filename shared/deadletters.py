"""Dead letters, in one place: why a message failed, parking it, reading it back, replaying it.

A message a consumer cannot process is parked on `mentorship.dlq.<service>` with its original
bytes and headers plus the reason and the consumer that failed, then acked on its subject. Each
consumer parks its own copy (four services failing on one malformed publish make four letters,
grouped by the original's stream sequence when listed); a replay goes to the failed consumer
alone, through its replay subject `mentorship.replay.<consumer>`, never to every consumer.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from pydantic import ValidationError

from shared.bus import MSG_ID, STREAM, publish_acked, replay_subject
from shared.errors import EventRejected, UnknownReference
from shared.events import SUBJECT_PREFIX, dead_letter_subject

# Headers a dead letter carries beside the original ones.
DLQ_REASON = "Mentorship-Dlq-Reason"
DLQ_SUBJECT = "Mentorship-Dlq-Original-Subject"
DLQ_MSG_ID = "Mentorship-Dlq-Original-Msg-Id"
DLQ_SERVICE = "Mentorship-Dlq-Service"
DLQ_CONSUMER = "Mentorship-Dlq-Consumer"
DLQ_SEQUENCE = "Mentorship-Dlq-Original-Sequence"
DLQ_DELIVERIES = "Mentorship-Dlq-Deliveries"
DLQ_AT = "Mentorship-Dlq-At"
# A replayed message names the subject and stream sequence it was first published with.
REPLAY_OF = "Mentorship-Replay-Of"
REPLAY_OF_SEQUENCE = "Mentorship-Replay-Of-Sequence"

ENVELOPE_REQUIRED = ("event_id", "occurred_at")


class MissingEnvelope(Exception):
    """The event lacks event_id or occurred_at, without which redeliveries cannot be told apart."""


def describe_invalid(error: Exception, payload: bytes) -> str:
    """A human-readable reason for an event that failed to decode or validate."""
    try:
        body = json.loads(payload)
    except ValueError as exc:
        return f"unparseable JSON ({exc}); publish a UTF-8 JSON object matching the catalogue"
    if isinstance(error, MissingEnvelope):
        missing = [name for name in ENVELOPE_REQUIRED if name not in body]
        return (
            f"schema violation: missing envelope field(s) {', '.join(missing)}; "
            "every event carries a unique event_id and its occurred_at"
        )
    if not isinstance(error, ValidationError):
        return f"undecodable event: {error}"
    problems = []
    for item in error.errors()[:5]:
        loc = [str(part) for part in item["loc"] if part != "event"]
        problems.append(f"{'.'.join(loc) or 'body'}: {item['msg']}")
    more = f" (+{error.error_count() - 5} more)" if error.error_count() > 5 else ""
    return "schema violation: " + "; ".join(problems) + more


def is_nats_outage(exc: BaseException) -> bool:
    """Whether the failure is NATS being away, which says nothing about the event."""
    return isinstance(
        exc,
        nats.errors.ConnectionClosedError
        | nats.errors.ConnectionReconnectingError
        | nats.errors.NoRespondersError
        | nats.errors.TimeoutError
        | nats.errors.StaleConnectionError,
    )


@dataclass(frozen=True)
class Verdict:
    """What to do with a message whose processing failed: park it now, or retry it later."""

    park: bool
    reason: str


def judge(exc: BaseException, *, deliveries: int, max_deliver: int) -> Verdict:
    """Permanent failures and exhausted retries are parked; the rest are retried.

    NATS itself being away does not use up the event's delivery budget.
    """
    if isinstance(exc, EventRejected):
        return Verdict(True, f"rejected: {exc}")
    if is_nats_outage(exc):
        return Verdict(False, f"NATS unavailable: {exc}")
    if deliveries >= max_deliver:
        kind = "unknown reference" if isinstance(exc, UnknownReference) else "error"
        return Verdict(True, f"{kind} after {deliveries} deliveries: {exc}")
    return Verdict(False, f"{type(exc).__name__}: {exc}")


def _header_value(text: str, limit: int = 2000) -> str:
    """Header values must be one line; reasons can be long, multi-line exception texts."""
    return re.sub(r"\s+", " ", text).strip()[:limit]


@dataclass(frozen=True)
class DeadLetter:
    """What one consumer could not process, and why."""

    service: str
    consumer: str
    original_subject: str
    payload: bytes
    headers: Mapping[str, str]
    reason: str
    stream_sequence: int
    deliveries: int


async def publish_dead_letter(js: JetStreamContext, letter: DeadLetter, *, at: dt.datetime) -> None:
    """Parks a message on mentorship.dlq.<service> with its original bytes, headers and reason."""
    original = {k: v for k, v in letter.headers.items() if not k.startswith("Mentorship-Dlq-")}
    headers = {k: v for k, v in original.items() if k != MSG_ID}
    if MSG_ID in original:
        headers[DLQ_MSG_ID] = original[MSG_ID]
    subject = original.get(REPLAY_OF, letter.original_subject)
    # a replay that fails again is listed with the message it came from
    first_sequence = original.get(REPLAY_OF_SEQUENCE, str(letter.stream_sequence))
    headers |= {
        # one dead letter per consumer and original stream message, however often this runs
        MSG_ID: f"dlq:{letter.consumer}:{letter.stream_sequence}",
        DLQ_REASON: _header_value(letter.reason),
        DLQ_SUBJECT: subject,
        DLQ_SERVICE: letter.service,
        DLQ_CONSUMER: letter.consumer,
        DLQ_SEQUENCE: first_sequence,
        DLQ_DELIVERIES: str(letter.deliveries),
        DLQ_AT: at.isoformat(),
    }
    await publish_acked(js, dead_letter_subject(letter.service), letter.payload, headers)


@dataclass(frozen=True)
class ParkedMessage:
    """A dead letter as read back from the stream."""

    sequence: int
    service: str
    consumer: str
    original_subject: str
    original_sequence: int
    reason: str
    at: str
    payload: bytes
    headers: dict[str, str]


def _parked(msg: Msg) -> ParkedMessage:
    headers = dict(msg.headers or {})
    return ParkedMessage(
        sequence=msg.metadata.sequence.stream,
        service=headers.get(DLQ_SERVICE, "?"),
        consumer=headers.get(DLQ_CONSUMER, "?"),
        original_subject=headers.get(DLQ_SUBJECT, "?"),
        original_sequence=int(headers.get(DLQ_SEQUENCE, "0") or 0),
        reason=headers.get(DLQ_REASON, "?"),
        at=headers.get(DLQ_AT, "?"),
        payload=msg.data,
        headers=headers,
    )


async def list_dead_letters(
    js: JetStreamContext, service: str | None = None
) -> list[ParkedMessage]:
    """Reads the parked messages of one service (or all) without consuming them."""
    subject = dead_letter_subject(service) if service else f"{SUBJECT_PREFIX}.dlq.>"
    info = await js.stream_info(STREAM, subjects_filter=subject)
    expected = sum((info.state.subjects or {}).values())
    found: list[ParkedMessage] = []
    if expected == 0:
        return found
    sub = await js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    try:
        while len(found) < expected:
            try:
                msg = await sub.next_msg(timeout=2)
            except (TimeoutError, nats.errors.TimeoutError):
                break
            found.append(_parked(msg))
    finally:
        await sub.unsubscribe()
    return found


async def replay_dead_letter(js: JetStreamContext, parked: ParkedMessage) -> None:
    """Re-drives a parked message to the consumer that failed on it, then removes it."""
    headers = {k: v for k, v in parked.headers.items() if not k.startswith("Mentorship-Dlq-")}
    original_id = parked.headers.get(DLQ_MSG_ID, f"seq-{parked.original_sequence}")
    # a fresh dedupe id, or JetStream would drop the replay inside the duplicate window;
    # the consumer still drops a second effect through its inbox (keyed by event_id)
    headers[MSG_ID] = f"{original_id}:replay:{parked.sequence}"
    headers[REPLAY_OF] = parked.original_subject
    headers[REPLAY_OF_SEQUENCE] = str(parked.original_sequence)
    target = replay_subject(parked.consumer) if parked.consumer != "?" else parked.original_subject
    await publish_acked(js, target, parked.payload, headers)
    await js.delete_msg(STREAM, parked.sequence)
