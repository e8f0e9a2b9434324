"""A JetStream pull consumer's messages a batch at a time, with a callback per message.

nats-py's `PullSubscription.fetch` waits for each message of a batch with `next_msg`, which
creates a task, a `wait_for` and a uuid4 per message: for a consumer of small events that was
about a third of its whole cost. `Puller` sends the same pull requests (`CONSUMER.MSG.NEXT`) to
a private inbox whose callback appends each message to a buffer, and hands out what has arrived.

At most one pull request is open at a time, for at most one batch: a first request with
`no_wait` takes what is there now (the server ends it with a 404 or 408 status when it has
fewer); when it found nothing, a lingering request waits up to the fetch timeout for the next
message. A request the server never ends (lost in a reconnect) is given up after its deadline.
Messages that arrive after a fetch returned (a lingering request fulfilled late) stay in the
buffer for the next one, so none is dropped; the unacked ones are redelivered after ack_wait
like any other. The messages are nats-py's own `Msg`: ack, nak and in_progress work as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api

__all__ = ["ConsumerGone", "Puller"]

# statuses that end a pull request: no messages (no_wait), request timeout (expired), conflict
_ENDS_REQUEST = frozenset(("404", "408", "409"))
# 409 descriptions that mean the request, not the consumer, is over (anything else is raised)
_TRANSIENT_CONFLICTS = ("Exceeded Max", "Leadership Change", "Server Shutdown", "Batch Completed")
_GRACE = 1.0  # seconds past a request's expiry before it counts as lost


class ConsumerGone(Exception):
    """The server refused the pull consumer itself (deleted, push-based, ...)."""


class Puller:
    """Fetches batches from one durable pull consumer of one stream."""

    def __init__(self, nc: NATS, *, stream: str, durable: str, prefix: str = "$JS.API") -> None:
        self._nc = nc
        self._next = f"{prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._buffer: list[Msg] = []
        self._arrived = asyncio.Event()
        self._open = 0  # messages the open request may still bring; 0: none open
        self._open_until = 0.0  # monotonic deadline of the open request
        self._lingering = False  # whether the open request waits for messages (expires)
        self._refusal: str | None = None
        self._prefetching: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribes the private inbox the server delivers to."""
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_msg)

    async def stop(self) -> None:
        """Unsubscribes; unacked messages go back to the server after ack_wait."""
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def _on_msg(self, msg: Msg) -> None:
        headers = msg.headers
        status = headers.get(api.Header.STATUS) if headers else None
        if status is None:
            self._buffer.append(msg)
            if self._open:
                self._open -= 1
            if len(self._buffer) > 1 and self._open:
                return  # the waiter wakes for the first message and for the request's end
        elif status in _ENDS_REQUEST:
            self._open = 0
            description = (headers or {}).get(api.Header.DESCRIPTION, "")
            if status == "409" and not description.startswith(_TRANSIENT_CONFLICTS):
                self._refusal = f"409 {description}"
        else:  # 100: idle heartbeat or flow control, never asked for; nothing to do
            return
        self._arrived.set()

    async def _request(self, batch: int, *, expires: float | None) -> None:
        body: dict[str, Any] = {"batch": batch}
        self._lingering = expires is not None
        if expires is None:
            body["no_wait"] = True  # the server ignores no_wait beside expires
            self._open_until = time.monotonic() + _GRACE * 5
        else:
            body["expires"] = int(expires * 1_000_000_000)
            self._open_until = time.monotonic() + expires + _GRACE
        self._open = batch
        await self._nc.publish(self._next, json.dumps(body).encode(), reply=self._inbox)

    def _take(self, batch: int) -> list[Msg]:
        taken, self._buffer = self._buffer[:batch], self._buffer[batch:]
        if not self._buffer:
            self._arrived.clear()
        return taken

    async def _wait(self, deadline: float) -> None:
        """Until a message or the end of the open request arrives, or the deadline."""
        self._arrived.clear()
        remaining = deadline - time.monotonic()
        if remaining > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout=remaining)
        if self._open and time.monotonic() > self._open_until:
            self._open = 0  # the server never ended it (a reconnect lost it)

    def _raise_refusal(self) -> None:
        if self._refusal is not None:
            refusal, self._refusal = self._refusal, None
            raise ConsumerGone(f"pull request to {self._next} refused: {refusal}")

    async def fetch(self, batch: int, wait: float) -> list[Msg]:
        """Up to `batch` messages: those there now, else the first within `wait` s (else [])."""
        deadline = time.monotonic() + wait
        if not self._buffer and not self._open:
            await self._request(batch, expires=None)
        while not self._buffer and self._open and time.monotonic() < deadline:
            await self._wait(deadline)  # the no_wait request: what the stream has now
            self._raise_refusal()
        while not self._buffer and time.monotonic() < deadline:
            if not self._open:  # nothing there now: one lingering request for the rest
                expires = deadline - time.monotonic()
                if expires < 0.01:
                    break
                await self._request(batch, expires=expires)
            await self._wait(deadline)
            self._raise_refusal()
        while self._buffer and self._open and len(self._buffer) < batch:
            # the open request is still bringing this batch: a no_wait one ends at once (its
            # last message or a status); a lingering one only once the rest is there
            before = len(self._buffer)
            if self._lingering:
                await asyncio.sleep(0)
                if len(self._buffer) == before:
                    break
            else:
                await self._wait(deadline)
                if time.monotonic() >= deadline:
                    break
        return self._take(batch)

    def prefetch(self, batch: int) -> None:
        """Asks for the next batch now, if no request is open, so it arrives during the work."""
        if not self._open and len(self._buffer) < batch:
            self._open = batch  # before the publish below runs: no second request meanwhile
            self._open_until = time.monotonic() + _GRACE * 5
            self._prefetching = asyncio.get_running_loop().create_task(self._prefetch(batch))

    async def _prefetch(self, batch: int) -> None:
        try:
            await self._request(batch, expires=None)
        except Exception:  # NATS away: the next fetch asks again
            self._open = 0
