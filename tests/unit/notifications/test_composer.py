"""queueing.Composer: a batch's mails composed in chunks while the batch goes on, in order."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from services.notifications import queueing
from services.notifications.deliveries import PlannedDelivery
from services.notifications.messages import compose_invitations
from shared.cpu import CpuPool
from tests.unit.notifications.test_messages import mail


class CountingPool(CpuPool):
    """The real pool (threads), counting the calls started and how many were running."""

    def __init__(self) -> None:
        super().__init__(threads=True)
        self.calls: list[int] = []

    def start(self, fn: Any, *args: Any) -> asyncio.Future[Any]:
        self.calls.append(len(args[0]))
        return super().start(fn, *args)


@pytest.fixture
def pool() -> Iterator[CountingPool]:
    counting = CountingPool()
    yield counting
    counting.close()


def planned(i: int, **changes: Any) -> PlannedDelivery:
    m = mail(message_id=f"<d{i}.kickoff@mentorship.example>", **changes)
    return PlannedDelivery(
        delivery_id=f"d{i}",
        idempotency_key=f"k{i}",
        recipient_id=f"p{i}",
        recipient_email=m.recipient.email,
        kind="session.kickoff",
        source_event_id=f"e{i}",
        message_id=m.message_id,
        mail=m,
    )


async def test_chunks_start_as_mails_arrive_and_results_keep_the_order(pool: CountingPool) -> None:
    composer = queueing.Composer(pool)
    plans = [planned(i) for i in range(2 * queueing.CHUNK + 5)]
    for n in range(0, len(plans), 2):  # an event's two attendees at a time
        composer.add([("P", p, None) for p in plans[n : n + 2]])
    assert pool.calls == [queueing.CHUNK, queueing.CHUNK]  # started before the end
    results = await composer.results()
    assert pool.calls == [queueing.CHUNK, queueing.CHUNK, 5]
    assert [entry[1].delivery_id for entry, _ in results] == [p.delivery_id for p in plans]
    assert [message for _, message in results] == compose_invitations([p.mail for p in plans])


async def test_a_lone_events_few_mails_are_composed_without_the_pool(pool: CountingPool) -> None:
    composer = queueing.Composer(pool)
    composer.add([("P", planned(i), None) for i in range(queueing.INLINE_MAILS)])
    results = await composer.results()
    assert pool.calls == []
    assert len(results) == queueing.INLINE_MAILS
    assert all(isinstance(message, bytes) for _, message in results)


async def test_an_address_that_cannot_be_written_is_a_reason_and_the_others_still_go(
    pool: CountingPool,
) -> None:
    composer = queueing.Composer(pool)
    bad = dataclasses.replace(
        mail().recipient, email="user@exa\u0000mple.org"
    )  # no header can carry it
    plans = [planned(i) for i in range(queueing.CHUNK)]
    plans[3] = planned(3, recipient=bad)
    composer.add([("P", p, None) for p in plans])
    results = await composer.results()
    assert isinstance(results[3][1], str) and results[3][1]
    assert all(isinstance(m, bytes) for n, (_, m) in enumerate(results) if n != 3)


async def test_a_chunk_that_fails_fails_the_batch(pool: CountingPool) -> None:
    composer = queueing.Composer(pool)
    plans = [planned(i) for i in range(queueing.CHUNK)]
    broken = dataclasses.replace(plans[0], mail=object())  # not a mail at all
    composer.add([("P", p, None) for p in [broken, *plans[1:]]])
    with pytest.raises(AttributeError):
        await composer.results()
