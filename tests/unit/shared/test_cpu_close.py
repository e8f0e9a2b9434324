"""Closing the CPU pool leaves no worker process behind, idle or busy."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from shared.cpu import CpuPool


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


async def test_an_idle_worker_is_gone_after_close():
    pool = CpuPool(1)
    assert await pool.run(sum, [1, 2, 3]) == 6
    (pid,) = pool.workers()
    pool.close()  # returns once the worker is gone
    assert not _alive(pid)


async def test_a_busy_worker_is_terminated_after_the_grace():
    pool = CpuPool(1)
    await pool.run(sum, [])
    (pid,) = pool.workers()
    running = asyncio.ensure_future(pool.run(time.sleep, 60))
    await asyncio.sleep(0.3)  # the worker is in the 60 s call
    started = time.monotonic()
    pool.close(grace=0.5)
    assert time.monotonic() - started < 5
    assert not _alive(pid)
    running.cancel()


def test_a_worker_exits_when_its_service_process_is_killed(tmp_path):
    script = (
        "import asyncio, os, sys\n"
        "from shared.cpu import CpuPool\n"
        "async def main():\n"
        "    pool = CpuPool(1)\n"
        "    await pool.run(sum, [])\n"
        "    print(pool.workers()[0], flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    service = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=Path(__file__).parents[3]
    )
    assert service.stdout is not None
    worker = int(service.stdout.readline())
    service.send_signal(signal.SIGKILL)  # no close(), no clean-up of any kind
    service.wait()
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker)
