"""shared.pull.Puller against a real nats-server: batches, waits, late arrivals, refusals."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from shared.bus import STREAM
from shared.pull import ConsumerGone, Puller
from tests.support.waiting import eventually

SUBJECT = "mentorship.participant.registered"


async def _consumer(js: nats.js.JetStreamContext, name: str) -> None:
    config = ConsumerConfig(
        durable_name=name,
        filter_subject=SUBJECT,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30,
        max_ack_pending=4000,
    )
    await js.add_consumer(STREAM, config)


async def _publish(js: nats.js.JetStreamContext, n: int, start: int = 0) -> None:
    acks = [await js.publish_async(SUBJECT, str(i).encode()) for i in range(start, start + n)]
    await asyncio.gather(*acks)


async def _puller(js: nats.js.JetStreamContext, name: str) -> Puller:
    await _consumer(js, name)
    puller = Puller(js._nc, stream=STREAM, durable=name)
    await puller.start()
    return puller


async def test_batches_come_full_in_stream_order_and_the_rest_follows(js) -> None:
    await _publish(js, 1100)
    puller = await _puller(js, "batches")
    seen: list[int] = []
    sizes = []
    while len(seen) < 1100:
        msgs = await puller.fetch(512, 2.0)
        assert msgs, "a fetch with messages on the stream returned none"
        puller.prefetch(512)
        sizes.append(len(msgs))
        seen += [int(m.data) for m in msgs]
        for m in msgs:
            await m.ack()
    assert sizes == [512, 512, 76]
    assert seen == list(range(1100))

    async def all_acked() -> bool:  # acks are published without a reply: counted a bit later
        info = await js.consumer_info(STREAM, "batches")
        return bool(info.num_ack_pending == 0 and info.num_pending == 0)

    await eventually(all_acked, timeout=5, what="every message acked")
    await puller.stop()


async def test_an_empty_stream_waits_the_timeout_then_returns_nothing(js) -> None:
    puller = await _puller(js, "empty")
    started = time.monotonic()
    assert await puller.fetch(512, 0.4) == []
    assert 0.35 <= time.monotonic() - started < 2.0
    await puller.stop()


async def test_a_message_published_while_waiting_is_returned_at_once(js) -> None:
    puller = await _puller(js, "lingering")

    async def later() -> None:
        await asyncio.sleep(0.3)
        await _publish(js, 1, start=7)

    task = asyncio.create_task(later())
    started = time.monotonic()
    msgs = await puller.fetch(512, 5.0)
    assert [int(m.data) for m in msgs] == [7]
    assert time.monotonic() - started < 2.0  # not the whole 5 s
    await task
    await msgs[0].ack()
    await puller.stop()


async def test_messages_arriving_after_a_fetch_returned_wait_for_the_next(js) -> None:
    # the lingering request stays open on the server after the first message is handed out;
    # what it brings later is kept, never dropped
    puller = await _puller(js, "late")

    async def later() -> None:
        await asyncio.sleep(0.2)
        await _publish(js, 1, start=0)
        await asyncio.sleep(0.3)
        await _publish(js, 3, start=1)

    task = asyncio.create_task(later())
    first = await puller.fetch(512, 5.0)
    await task
    await asyncio.sleep(0.3)
    rest = await puller.fetch(512, 2.0)
    assert [int(m.data) for m in first + rest] == [0, 1, 2, 3]
    for m in first + rest:
        await m.ack()
    await puller.stop()


async def test_unacked_messages_come_back_to_the_next_fetch_after_a_nak(js) -> None:
    await _publish(js, 3)
    puller = await _puller(js, "nak")
    msgs = await puller.fetch(512, 2.0)
    assert len(msgs) == 3
    await msgs[0].ack()
    for m in msgs[1:]:
        await m.nak()
    again = await puller.fetch(512, 2.0)
    assert sorted(int(m.data) for m in again) == [1, 2]
    assert all(m.metadata.num_delivered == 2 for m in again)
    await puller.stop()


async def test_a_deleted_consumer_is_an_error_that_says_so(js) -> None:
    puller = await _puller(js, "gone")
    fetching = asyncio.create_task(puller.fetch(512, 5.0))
    await asyncio.sleep(0.3)  # the lingering request is open
    await js.delete_consumer(STREAM, "gone")
    with pytest.raises(ConsumerGone, match="Consumer Deleted"):
        await fetching
    await puller.stop()


async def test_fetching_resumes_after_the_server_restarts(local_nats_server) -> None:
    nc = await nats.connect(
        local_nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2
    )
    js = nc.jetstream()
    await js.add_stream(name=STREAM, subjects=["mentorship.>"])
    puller = await _puller(js, "restart")
    assert await puller.fetch(512, 0.3) == []
    fetching = asyncio.create_task(puller.fetch(512, 1.0))  # its request dies with the server
    await asyncio.sleep(0.1)
    await asyncio.to_thread(local_nats_server.restart, 0.5)
    assert await fetching == []
    await _publish_when_back(js)
    deadline = time.monotonic() + 20
    got: list[int] = []
    while not got and time.monotonic() < deadline:
        try:
            got = [int(m.data) for m in await puller.fetch(512, 1.0)]
        except Exception:  # still reconnecting: the consumer's loop backs off and asks again
            await asyncio.sleep(0.2)
    assert got == [0]
    await puller.stop()
    await nc.close()


async def _publish_when_back(js: nats.js.JetStreamContext) -> None:
    for _ in range(100):
        try:
            await _publish(js, 1)
            return
        except Exception:
            await asyncio.sleep(0.2)
    raise AssertionError("nats-server did not come back within 20 s")
