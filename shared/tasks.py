"""Stopping background tasks without swallowing the caller's own cancellation, or hanging.

`task.cancel(); with suppress(CancelledError): await task` looks right and is not: should the
caller itself be cancelled while it waits there (a service stopping while a batch finishes), the
suppress eats the caller's CancelledError too, and the caller runs on as if nothing happened. A
service stop then waited for ever on a consumer that had forgotten it was asked to stop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

log = logging.getLogger("mentorship.tasks")


async def stop(task: asyncio.Task[object]) -> None:
    """Cancels `task` and waits for it to end; a cancellation of the caller still propagates."""
    task.cancel()
    await asyncio.wait([task])  # never raises the task's CancelledError, only the caller's


async def stop_all(tasks: Sequence[asyncio.Task[None]], *, grace: float, what: str) -> None:
    """Cancels every task and waits up to `grace` seconds; names and logs any that would not end
    (its stack shows what it waits on), so a stop is never a silent hang."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=grace)
    for task in pending:
        stack = "".join(
            f"\n  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}"
            for frame in task.get_stack()
        )
        log.error(
            "%s: task %s did not stop within %.0fs of being cancelled; leaving it behind "
            "(a bug: please report it with this stack):%s",
            what,
            task.get_name(),
            grace,
            stack,
        )
