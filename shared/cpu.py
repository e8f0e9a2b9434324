"""CPU-bound work off the event loop: a process pool owned by the service runner.

The event loop acks messages, keeps long work alive with in_progress, relays the outbox and
answers /healthz; a matching round or a batch of MIME messages computed on it would stop all of
that. `await pool.run(fn, *args)` runs `fn` in a worker process (fn and its arguments must be
picklable: module-level functions, plain data) and hands back its result.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def _exit_with_parent(parent: int) -> None:
    """In a worker: exits once the service's process is gone. A worker holds both ends of its
    call queue, so it never sees the queue close: a service killed with SIGKILL (or one that
    died) left its workers behind, blocked for ever."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _start_worker(parent: int, warm_up: Callable[[], object] | None) -> None:
    """A worker's first steps: follow the service out, then warm up (imports, caches) before
    its first call. A warm-up that fails is logged: the worker still serves (an initializer that
    raised would break the whole pool)."""
    _exit_with_parent(parent)
    if warm_up is not None:
        try:
            warm_up()
        except Exception:
            logging.getLogger(__name__).exception("CPU worker: warm-up failed; serving cold")


def _pid() -> int:
    return os.getpid()


class CpuPool:
    """Worker processes for CPU-heavy functions; started on first use, stopped with the service."""

    def __init__(
        self,
        workers: int = 1,
        *,
        threads: bool = False,
        warm_up: Callable[[], object] | None = None,
    ) -> None:
        # threads=True is for handler tests only: off the loop, but sharing the GIL
        self._workers = workers
        self._threads = threads
        self._warm_up = warm_up  # run by each worker process as it starts (module-level)
        self._executor: Executor | None = None

    def _pool(self) -> Executor:
        if self._executor is None:
            if self._threads:
                self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="cpu")
            else:
                # spawn: a fork of a process with a running event loop and open sockets is unsafe
                context = multiprocessing.get_context("spawn")
                self._executor = ProcessPoolExecutor(
                    self._workers,
                    mp_context=context,
                    initializer=_start_worker,
                    initargs=(os.getpid(), self._warm_up),
                )
        return self._executor

    async def run(self, fn: Callable[P, R], *args: Any) -> R:
        """Runs fn(*args) in a worker and returns its result without blocking the event loop."""
        return await self.start(fn, *args)

    def start(self, fn: Callable[P, R], *args: Any) -> asyncio.Future[R]:
        """Starts fn(*args) in a worker now; its result comes with the future (the caller goes
        on meanwhile: several calls queue for the workers in the order they were started)."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._pool(), fn, *args)

    async def start_workers(self) -> list[int]:
        """Starts every worker now (each runs the warm-up as it starts), not on the first calls
        that need them: as many calls at once as there are workers, each of which spawns one
        (3.11's executor spawns a worker per call while none is idle). Returns their ids."""
        await asyncio.gather(*(self.start(_pid) for _ in range(self._workers)))
        return sorted(self.workers())

    def workers(self) -> list[int]:
        """The worker processes' ids (none before the first use, or with threads)."""
        processes = getattr(self._executor, "_processes", None) or {}
        return [p.pid for p in processes.values() if p.pid is not None]

    def close(self, grace: float = 2.0) -> None:
        """Stops the workers: pending calls are cancelled, a running one is given `grace`
        seconds, then its worker is terminated. No worker outlives the service: with only
        `shutdown(wait=False)` a worker whose sentinel never came stayed behind, orphaned and
        blocked on its call queue, once per service stop."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        # ProcessPoolExecutor keeps its workers in _processes (3.11-3.13; 3.14 adds
        # terminate_workers): read before shutdown, which forgets them
        processes = list((getattr(executor, "_processes", None) or {}).values())
        executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + grace
        for process in processes:
            process.join(max(deadline - time.monotonic(), 0))
            if process.is_alive():
                process.terminate()
                process.join(1)
