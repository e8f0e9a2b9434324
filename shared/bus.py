"""JetStream side of delivery: the stream, consumers, event headers, acknowledged publishing."""

from __future__ import annotations

import logging
from collections.abc import Mapping

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

from shared.events import SUBJECT_PREFIX, Event

log = logging.getLogger("mentorship.bus")

STREAM = "MENTORSHIP"
DUPLICATE_WINDOW_SECONDS = 15 * 60
PUBLISH_TIMEOUT_SECONDS = 5.0

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


def consumer_config(*, durable: str, subject: str, ack_wait: float = 30.0) -> ConsumerConfig:
    """A durable pull consumer of one subject (and its replay subject), acked after commit.

    The delivery budget is the consumer's to enforce (it parks a message after
    MENTORSHIP_MAX_DELIVER failed deliveries, and sooner for a permanent failure): the server
    never gives up on a message by itself, which would leave it unprocessed and unparked.
    """
    return ConsumerConfig(
        durable_name=durable,
        filter_subjects=[subject, replay_subject(durable)],
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_deliver=-1,
        max_ack_pending=4000,
    )


async def ensure_consumer(js: JetStreamContext, config: ConsumerConfig) -> None:
    """Creates the durable consumer, or updates it when its config changed in code."""
    await js.add_consumer(STREAM, config)


def replay_subject(consumer: str) -> str:
    """Where `dlq replay` re-drives a dead letter for one durable consumer alone."""
    return f"{SUBJECT_PREFIX}.replay.{consumer}"


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
