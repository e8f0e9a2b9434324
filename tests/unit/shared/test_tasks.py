"""Stopping a background task: the caller's own cancellation is never swallowed, and a task that
will not stop is named instead of hanging the service's stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from shared.tasks import stop, stop_all


async def slow_to_stop(seconds: float) -> None:
    """A task that, once cancelled, takes a while to finish (a rollback, a last ack)."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        await asyncio.sleep(seconds)
        raise


async def test_stop_waits_for_the_task_to_end():
    task = asyncio.create_task(slow_to_stop(0.05))
    await asyncio.sleep(0)
    await stop(task)
    assert task.cancelled()


async def old_stop(task: asyncio.Task[None]) -> None:
    """The pattern stop() replaces."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def cancel_while_stopping(stopper: Callable[[asyncio.Task[None]], Awaitable[None]]):
    """A caller that stops its slow helper with `stopper` and is itself cancelled meanwhile:
    the caller's task, and whether it ran on after `stopper` returned."""
    helper_started = asyncio.Event()
    ran_on: list[bool] = []

    async def caller() -> None:
        helper = asyncio.create_task(slow_to_stop(0.5))
        await asyncio.sleep(0)  # the helper runs up to its sleep
        helper_started.set()
        await stopper(helper)
        ran_on.append(True)

    task = asyncio.create_task(caller())
    await helper_started.wait()
    await asyncio.sleep(0.1)  # the caller now waits in stopper()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=5)
    return task, bool(ran_on)


async def test_a_caller_cancelled_while_stopping_its_helper_is_still_cancelled():
    task, ran_on = await cancel_while_stopping(stop)
    assert task.cancelled()
    assert not ran_on  # the caller was asked to stop


async def test_the_old_pattern_did_swallow_it():
    """What stop() replaces: proves the test above can fail."""
    task, ran_on = await cancel_while_stopping(old_stop)
    assert not task.cancelled()
    assert ran_on


async def test_a_task_that_will_not_stop_is_named_and_left_behind(caplog):
    released = asyncio.Event()

    async def stubborn() -> None:
        while not released.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await released.wait()

    quick = asyncio.create_task(slow_to_stop(0.0), name="quick")
    stuck = asyncio.create_task(stubborn(), name="stuck-consumer")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="mentorship.tasks"):
        await asyncio.wait_for(stop_all([quick, stuck], grace=0.2, what="svc"), timeout=5)
    assert quick.cancelled()
    assert not stuck.done()
    [record] = caplog.records
    assert "stuck-consumer" in record.getMessage()
    assert "stubborn" in record.getMessage()  # its stack says where it waits
    released.set()
    await stuck
