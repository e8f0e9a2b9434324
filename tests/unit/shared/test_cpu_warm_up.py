"""The CPU pool starts all its workers at once, each warmed up before its first call."""

from __future__ import annotations

import asyncio

from shared.cpu import CpuPool
from tests.support import warmups


async def test_every_worker_starts_and_runs_the_warm_up():
    pool = CpuPool(2, warm_up=warmups.note_pid)
    try:
        pids = await pool.start_workers()
        assert len(pids) == 2
        # every call, on whichever worker, finds that worker warmed up
        answers = await asyncio.gather(*(pool.run(warmups.warmed_here) for _ in range(40)))
        assert all(warmed for _, warmed in answers)
        assert {pid for pid, _ in answers} <= set(pids)
    finally:
        pool.close()


async def test_a_failing_warm_up_leaves_the_worker_serving():
    pool = CpuPool(1, warm_up=warmups.fail)
    try:
        await pool.start_workers()
        assert await pool.run(sum, [1, 2]) == 3
    finally:
        pool.close()
