"""JetStream side of delivery: the stream, event headers, acknowledged publishing, dead letters."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from shared.events import SUBJECT_PREFIX, Event, dead_letter_subject

log = logging.getLogger("mentorship.bus")

STREAM = "MENTORSHIP"
DUPLICATE_WINDOW_SECONDS = 15 * 60
PUBLISH_TIMEOUT_SECONDS = 5.0

# Headers a dead letter carries beside the original ones.
DLQ_REASON = "Mentorship-Dlq-Reason"
DLQ_SUBJECT = "Mentorship-Dlq-Original-Subject"
DLQ_MSG_ID = "Mentorship-Dlq-Original-Msg-Id"
DLQ_SERVICE = "Mentorship-Dlq-Service"
DLQ_SEQUENCE = "Mentorship-Dlq-Original-Sequence"
DLQ_DELIVERIES = "Mentorship-Dlq-Deliveries"
DLQ_AT = "Mentorship-Dlq-At"
MSG_ID = "Nats-Msg-Id"


class StreamMissing(RuntimeError):
    """The MENTORSHIP stream has not been declared on this server."""


def stream_config(*, replicas: int = 1) -> StreamConfig:
    """The one definition of the MENTORSHIP stream (owned by `mentorship streams`)."""
    return StreamConfig(
        name=STREAM,
        subjects=[f"{SUBJECT_PREFIX}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        num_replicas=replicas,
        max_age=0,
    )


async def connect(url: str, *, name: str) -> NatsClient:
    """A NATS connection that keeps reconnecting while the server is away."""
    return await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        allow_reconnect=True,
    )


async def connect_once(url: str) -> NatsClient:
    """A short-lived connection for a command: fails fast, without retry noise, if NATS is away."""

    async def quiet(_: Exception) -> None:
        return None

    return await nats.connect(
        url,
        connect_timeout=3,
        allow_reconnect=False,
        max_reconnect_attempts=1,  # 0 would mean "no limit" in nats-py's server selection
        reconnect_time_wait=0.2,
        error_cb=quiet,
    )


async def ensure_stream(js: JetStreamContext, *, replicas: int = 1) -> None:
    """Declares or updates the stream; only its owner calls this."""
    wanted = stream_config(replicas=replicas)
    try:
        await js.stream_info(STREAM)
    except NotFoundError:
        await js.add_stream(wanted)
        log.info("declared stream %s", STREAM)
        return
    await js.update_stream(wanted)


async def require_stream(js: JetStreamContext, url: str) -> None:
    """Checks that the stream exists, without touching its settings."""
    try:
        await js.stream_info(STREAM)
    except NotFoundError as exc:
        raise StreamMissing(
            f"stream {STREAM} does not exist on {url}: its owner must declare it first with "
            "`mentorship streams` (`mentorship up` does so only for the nats-server it starts)"
        ) from exc


def consumer_config(*, durable: str, subject: str, max_deliver: int) -> ConsumerConfig:
    """A durable pull consumer acked explicitly after commit."""
    return ConsumerConfig(
        durable_name=durable,
        filter_subject=subject,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30,
        # the handler dead-letters at max_deliver; the extra tries cover a failed DLQ publish
        max_deliver=max_deliver + 5,
        max_ack_pending=1000,
    )


async def ensure_consumer(js: JetStreamContext, config: ConsumerConfig) -> None:
    """Creates the durable consumer, or updates it when its config changed in code."""
    await js.add_consumer(STREAM, config)


def durable_name(service: str, subject: str) -> str:
    """e.g. ('scheduling', 'mentorship.pair.formed') -> 'scheduling__pair_formed'."""
    tail = subject.removeprefix(f"{SUBJECT_PREFIX}.")
    return f"{service}__{tail.replace('.', '_')}"


EVENT_HEADERS_SCHEMA: dict[str, object] = {
    "type": "object",
    "description": "NATS headers of every event (CloudEvents NATS binding, W3C trace context)",
    "properties": {
        MSG_ID: {"type": "string", "description": "= event_id; JetStream drops re-sends"},
        "ce-specversion": {"const": "1.0"},
        "ce-id": {"type": "string", "description": "= event_id"},
        "ce-type": {"type": "string", "description": "= the subject"},
        "ce-source": {"type": "string", "description": "e.g. /mentorship/pairing"},
        "ce-time": {"type": "string", "format": "date-time"},
        "ce-datacontenttype": {"const": "application/json"},
        "traceparent": {"type": "string", "description": "W3C trace context, optional"},
    },
    "required": [MSG_ID],
}


def event_headers(event: Event, *, source: str, traceparent: str | None) -> dict[str, str]:
    """Dedupe id, CloudEvents NATS-binding attributes and W3C trace context for one event."""
    headers = {
        MSG_ID: str(event.event_id),
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": str(event.event_id),
        "ce-type": event.event_type(),
        "ce-source": f"/mentorship/{source}",
        "ce-time": event.occurred_at.isoformat(),
        "ce-datacontenttype": "application/json",
    }
    if traceparent:
        headers["traceparent"] = traceparent
    return headers


async def publish_acked(
    js: JetStreamContext, subject: str, payload: bytes, headers: Mapping[str, str]
) -> bool:
    """Publishes and waits for the PubAck; returns whether the server saw a duplicate."""
    ack = await js.publish(
        subject, payload, timeout=PUBLISH_TIMEOUT_SECONDS, stream=STREAM, headers=dict(headers)
    )
    return bool(ack.duplicate)


def _header_value(text: str, limit: int = 2000) -> str:
    """Header values must be one line; reasons can be long, multi-line exception texts."""
    return re.sub(r"\s+", " ", text).strip()[:limit]


@dataclass(frozen=True)
class DeadLetter:
    """What a service could not process, and why."""

    service: str
    original_subject: str
    payload: bytes
    headers: Mapping[str, str]
    reason: str
    stream_sequence: int
    deliveries: int


async def publish_dead_letter(js: JetStreamContext, letter: DeadLetter) -> None:
    """Parks a message on mentorship.dlq.<service> with its original bytes, headers and reason."""
    headers = {k: v for k, v in letter.headers.items() if k != MSG_ID}
    if MSG_ID in letter.headers:
        headers[DLQ_MSG_ID] = letter.headers[MSG_ID]
    headers |= {
        # one dead letter per original stream message, however often this runs
        MSG_ID: f"dlq:{letter.service}:{letter.stream_sequence}",
        DLQ_REASON: _header_value(letter.reason),
        DLQ_SUBJECT: letter.original_subject,
        DLQ_SERVICE: letter.service,
        DLQ_SEQUENCE: str(letter.stream_sequence),
        DLQ_DELIVERIES: str(letter.deliveries),
        DLQ_AT: dt.datetime.now(dt.UTC).isoformat(),
    }
    await publish_acked(js, dead_letter_subject(letter.service), letter.payload, headers)


@dataclass(frozen=True)
class ParkedMessage:
    """A dead letter as read back from the stream."""

    sequence: int
    service: str
    original_subject: str
    reason: str
    at: str
    payload: bytes
    headers: dict[str, str]


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
            headers = dict(msg.headers or {})
            found.append(
                ParkedMessage(
                    sequence=msg.metadata.sequence.stream,
                    service=headers.get(DLQ_SERVICE, "?"),
                    original_subject=headers.get(DLQ_SUBJECT, "?"),
                    reason=headers.get(DLQ_REASON, "?"),
                    at=headers.get(DLQ_AT, "?"),
                    payload=msg.data,
                    headers=headers,
                )
            )
    finally:
        await sub.unsubscribe()
    return found


async def replay_dead_letter(js: JetStreamContext, parked: ParkedMessage) -> None:
    """Re-drives a parked message onto its original subject, then removes it from the DLQ."""
    headers = {k: v for k, v in parked.headers.items() if not k.startswith("Mentorship-Dlq-")}
    original_id = parked.headers.get(DLQ_MSG_ID, f"seq-{parked.sequence}")
    # a fresh dedupe id, or JetStream would drop the replay inside the duplicate window;
    # consumers still drop a second effect through their inbox (keyed by event_id)
    headers[MSG_ID] = f"{original_id}:replay:{parked.sequence}"
    await publish_acked(js, parked.original_subject, parked.payload, headers)
    await js.delete_msg(STREAM, parked.sequence)
