"""The barrier's polling: a lone batch behind an idle consumer passes at once; a waiting one
polls at the slower interval."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from shared.barrier import Barrier


class FakeJetStream:
    """consumer_info of one consumer: idle (nothing pending or unacked) with this ack floor."""

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.floor = 0
        self.pending = 0
        self.calls: list[float] = []

    async def consumer_info(self, stream: str, durable: str) -> Any:
        self.calls.append(self.clock[0])
        return SimpleNamespace(
            ack_floor=SimpleNamespace(stream_seq=self.floor),
            delivered=SimpleNamespace(stream_seq=self.floor + self.pending),
            num_pending=self.pending,
            num_ack_pending=0,
        )


def barrier(js: FakeJetStream, clock: list[float]) -> Barrier:
    return Barrier(js, stall_seconds=60, poll_seconds=0.2, monotonic=lambda: clock[0])  # type: ignore[arg-type]


async def test_a_batch_after_a_recent_poll_asks_again_instead_of_waiting_the_interval():
    clock = [100.0]
    js = FakeJetStream(clock)
    b = barrier(js, clock)
    js.floor = 10
    await b.wait(["up"], 11, subjects=["s"])  # idle: everything before 11 is acked
    clock[0] += 0.05  # a reschedule 50 ms later: the last poll knows nothing of it
    js.floor = 11
    await asyncio.wait_for(b.wait(["up"], 12, subjects=["s"]), timeout=0.1)
    assert js.calls == [100.0, 100.05]  # asked at once, not at 100.2


async def test_while_a_batch_waits_its_polls_stay_the_interval_apart():
    clock = [0.0]
    js = FakeJetStream(clock)
    b = Barrier(js, stall_seconds=60, poll_seconds=0.1)  # type: ignore[arg-type]
    js.floor, js.pending = 5, 3  # the earlier consumer is busy with 3 more
    real = js.consumer_info

    async def catching_up(stream: str, durable: str) -> Any:
        clock[0] = time.monotonic()
        if len(js.calls) == 3:  # it caught up after the third look
            js.floor, js.pending = 8, 0
        return await real(stream, durable)

    js.consumer_info = catching_up  # type: ignore[method-assign]
    await asyncio.wait_for(b.wait(["up"], 9, subjects=["s"]), timeout=5)
    assert len(js.calls) == 4
    gaps = [b - a for a, b in zip(js.calls, js.calls[1:], strict=False)]
    assert all(g >= 0.09 for g in gaps)  # one poll per interval while it waits, no busy loop
