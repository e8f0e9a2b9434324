"""The `mentorship` command as a user runs it: up and Ctrl-C, the demo, dead-letter tools."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nats
import pytest

from cli.launcher import free_port
from shared.bus import ensure_stream
from tests.support.factories import envelope, publish, registration

pytestmark = pytest.mark.e2e


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MENTORSHIP_")}
    env |= {
        "MENTORSHIP_DATA_DIR": str(tmp_path / "data"),
        "MENTORSHIP_NATS_PORT": str(free_port()),
        "MENTORSHIP_SMTP_PORT": str(free_port()),
        "MENTORSHIP_PAIRING_HTTP_PORT": str(free_port()),
        "MENTORSHIP_SCHEDULING_HTTP_PORT": str(free_port()),
        "MENTORSHIP_NOTIFICATIONS_HTTP_PORT": str(free_port()),
        "MENTORSHIP_INSIGHTS_HTTP_PORT": str(free_port()),
    }
    return env | extra


def _mentorship(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


def _children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout
    return [int(p) for p, pp in (line.split() for line in out.splitlines()) if int(pp) == pid]


def test_up_runs_everything_and_ctrl_c_stops_it_cleanly(tmp_path: Path):
    proc = subprocess.Popen(
        _mentorship("up"),
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "mentorship is up" in line or not line:
            break
    assert any("mentorship is up" in line for line in lines), "".join(lines)
    children = _children_of(proc.pid)
    assert len(children) == 5  # nats-server and four services
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(lines) + rest
    assert "stopped." in rest
    time.sleep(0.5)
    alive = [
        pid
        for pid in children
        if Path(f"/proc/{pid}").exists()
        and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    ]
    assert alive == []


def test_demo_runs_the_sample_cohort_and_exits(tmp_path: Path):
    result = subprocess.run(
        _mentorship("demo"), env=_env(tmp_path), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Pairs formed (" in out
    assert "Kickoff sessions (" in out
    assert "Emails caught:" in out
    assert '"sessions_scheduled"' in out
    mails = list((tmp_path / "data" / "mail").glob("*.eml"))
    assert mails and f"Emails caught: {len(mails)}" in out


async def _park_two_bad_messages(url: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_stream(js)
    await js.publish("mentorship.participant.registered", b"not json")
    await publish(js, "mentorship.participant.updated", envelope("p1", participant_id="ghost"))
    await nc.drain()


def test_dlq_list_shows_reasons_and_replay_redrives(tmp_path: Path, nats_server):
    from tests.integration.probe import Faults, probe_definition
    from tests.support.waiting import eventually, running, settings_for

    env = _env(tmp_path, MENTORSHIP_NATS_URL=nats_server.url)

    async def scenario() -> None:
        nc = await nats.connect(nats_server.url)
        await ensure_stream(nc.jetstream())
        await nc.drain()
        settings = settings_for(tmp_path, nats_server.url, None, max_deliver=2)
        async with running(probe_definition(Faults()), settings) as rt:
            await _park_two_bad_messages(nats_server.url)

            async def two_parked() -> bool:
                return sum(rt.consumers.dead_letters.values()) == 2

            await eventually(two_parked, timeout=30, what="two dead letters")
            listing = await asyncio.to_thread(
                subprocess.run,
                _mentorship("dlq", "list"),
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            assert "unparseable JSON" in listing.stdout
            assert "unknown reference after 2 deliveries" in listing.stdout
            # fix the cause, then re-drive everything
            nc = await nats.connect(nats_server.url)
            await publish(
                nc.jetstream(), "mentorship.participant.registered", registration("p1", "ghost")
            )
            await nc.drain()

            async def registered() -> bool:
                return rt.consumers.processed == 1

            await eventually(registered, what="the registration")
            replay = await asyncio.to_thread(
                subprocess.run,
                _mentorship("dlq", "replay"),
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            assert "[2/2] replayed" in replay.stdout

            async def update_applied_and_garbage_parked_again() -> bool:
                return rt.consumers.processed == 2 and sum(rt.consumers.dead_letters.values()) == 3

            await eventually(update_applied_and_garbage_parked_again, what="the replayed events")

    asyncio.run(scenario())
