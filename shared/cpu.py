"""CPU-bound work off the event loop: a process pool owned by the service runner.

The event loop acks messages, keeps long work alive with in_progress, relays the outbox and
answers /healthz; a matching round or a batch of MIME messages computed on it would stop all of
that. `await pool.run(fn, *args)` runs `fn` in a worker process (fn and its arguments must be
picklable: module-level functions, plain data) and hands back its result.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class CpuPool:
    """Worker processes for CPU-heavy functions; started on first use, stopped with the service."""

    def __init__(self, workers: int = 1, *, threads: bool = False) -> None:
        # threads=True is for handler tests only: off the loop, but sharing the GIL
        self._workers = workers
        self._threads = threads
        self._executor: Executor | None = None

    def _pool(self) -> Executor:
        if self._executor is None:
            if self._threads:
                self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="cpu")
            else:
                # spawn: a fork of a process with a running event loop and open sockets is unsafe
                context = multiprocessing.get_context("spawn")
                self._executor = ProcessPoolExecutor(self._workers, mp_context=context)
        return self._executor

    async def run(self, fn: Callable[P, R], *args: Any) -> R:
        """Runs fn(*args) in a worker and returns its result without blocking the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool(), fn, *args)

    def close(self) -> None:
        """Stops the workers (running calls are cancelled)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
