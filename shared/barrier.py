"""The barrier across subjects: an event waits until events published before it on other subjects
are processed by this service (JetStream orders messages only within one consumer).

It waits as long as the consumers it waits for make progress, and gives up only when they
stall. What this process sees of its own consumers (acks, in_progress heartbeats) counts as
progress without any request; JetStream's consumer info, which also covers other replicas, is
asked at most once per poll interval per consumer, shared by every waiting batch, and not at
all once a sequence is known to be covered. See docs/adr/0002 and 0007.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo

from shared.bus import STREAM
from shared.errors import UnknownReference


@dataclass
class Progress:
    """What this process knows of one durable consumer."""

    acked_through: int = 0  # every message up to this stream sequence is known to be acked
    last_activity: float = 0.0  # monotonic time of the last sign of progress
    last_state: tuple[int, int, int, int] | None = None  # (floor, delivered, pending, unacked)
    polled_at: float = float("-inf")
    poll: asyncio.Lock = field(default_factory=asyncio.Lock)


def covered(info: ConsumerInfo, sequence: int) -> int:
    """Up to which stream sequence the consumer has acked everything, as of `info`.

    An idle consumer (nothing pending, nothing unacked) has acked everything stored so far,
    so everything before `sequence`.
    """
    floor = (info.ack_floor.stream_seq or 0) if info.ack_floor else 0
    idle = not info.num_pending and not info.num_ack_pending
    return max(floor, sequence if idle else 0)


class Barrier:
    """Waits for this service's consumers of other subjects to catch up with a sequence."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        stall_seconds: float,
        poll_seconds: float = 0.2,
        first_poll_seconds: float = 0.01,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._js = js
        self._stall = stall_seconds
        self._poll = poll_seconds
        # a batch's first look needs a poll at most this old (one made for an earlier batch
        # says nothing of its events): an idle consumer lets a lone event through at once,
        # not at the next poll_seconds tick; while it waits, polls stay poll_seconds apart
        self._first_poll = min(first_poll_seconds, poll_seconds)
        self._now = monotonic
        self.progress: dict[str, Progress] = {}
        self.polls = 0  # consumer-info requests made, for tests and /readyz

    def _of(self, durable: str) -> Progress:
        return self.progress.setdefault(durable, Progress(last_activity=self._now()))

    def active(self, durable: str) -> None:
        """A consumer of this process acked, fetched or is busy: it makes progress."""
        self._of(durable).last_activity = self._now()

    async def wait(
        self, durables: Sequence[str], sequence: int, *, subjects: Sequence[str]
    ) -> None:
        """Returns once every durable has acked all its messages before `sequence`.

        Raises UnknownReference when one of them makes no progress for the stall time.
        """
        started = self._now()
        for durable, subject in zip(durables, subjects, strict=True):
            progress = self._of(durable)
            interval = self._first_poll
            while progress.acked_through < sequence:
                info = await self._refresh(durable, progress, interval)
                if info is not None:
                    interval = self._poll
                    progress.acked_through = max(progress.acked_through, covered(info, sequence))
                    if progress.acked_through >= sequence:
                        break
                quiet = self._now() - max(progress.last_activity, started)
                if quiet > self._stall:
                    pending = f"{info.num_pending} pending, " if info else ""
                    unacked = f"{info.num_ack_pending} unacked" if info else "state unknown"
                    raise UnknownReference(
                        f"{subject} published before this event is not processed yet and its "
                        f"consumer {durable} made no progress for {quiet:.0f}s ({pending}"
                        f"{unacked}); once it is processed, `mentorship dlq replay`"
                    )
                # until the next poll is due: a poll made a moment ago by another waiter
                # must not cost this one a whole interval
                await asyncio.sleep(max(progress.polled_at + interval - self._now(), 0.005))

    async def _refresh(
        self, durable: str, progress: Progress, interval: float
    ) -> ConsumerInfo | None:
        """Consumer info unless one is at most `interval` old, shared by every waiter."""
        async with progress.poll:
            if self._now() - progress.polled_at < interval:
                return None
            info: ConsumerInfo = await self._js.consumer_info(STREAM, durable)
            self.polls += 1
            progress.polled_at = self._now()
        floor = (info.ack_floor.stream_seq or 0) if info.ack_floor else 0
        delivered = (info.delivered.stream_seq or 0) if info.delivered else 0
        state = (floor, delivered, info.num_pending or 0, info.num_ack_pending or 0)
        if state != progress.last_state:  # another replica, or this one, moved it
            progress.last_state = state
            progress.last_activity = self._now()
        return info
