"""The `mentorship` command as a user runs it: up and Ctrl-C, the demo, dead-letter tools."""

from __future__ import annotations

import asyncio
import email.message
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import pytest

from cli.launcher import free_port
from cli.runtime import STATE_FILE, RuntimeState
from shared.bus import ensure_stream
from shared.deadletters import list_dead_letters
from tests.support.factories import envelope, publish, registration

pytestmark = pytest.mark.e2e


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a user with free ports, own data dir, own list of running systems."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MENTORSHIP_")}
    env |= {
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "MENTORSHIP_DATA_DIR": str(tmp_path / "data"),
        "MENTORSHIP_NATS_PORT": str(free_port()),
        "MENTORSHIP_SMTP_PORT": str(free_port()),
        "MENTORSHIP_PAIRING_HTTP_PORT": str(free_port()),
        "MENTORSHIP_SCHEDULING_HTTP_PORT": str(free_port()),
        "MENTORSHIP_NOTIFICATIONS_HTTP_PORT": str(free_port()),
        "MENTORSHIP_INSIGHTS_HTTP_PORT": str(free_port()),
    }
    return env | extra


def mentorship(*args: str) -> list[str]:
    """The command line of `mentorship ARGS` in this test's interpreter."""
    return [sys.executable, "-m", "cli.main", *args]


def run_cli(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs `mentorship ARGS` to completion."""
    return subprocess.run(
        mentorship(*args),
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The error the command printed, checked to be exactly one line without a traceback."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout
    return [int(p) for p, pp in (line.split() for line in out.splitlines()) if int(pp) == pid]


def test_up_runs_everything_and_ctrl_c_stops_it_cleanly(tmp_path: Path):
    proc = subprocess.Popen(
        mentorship("up"),
        env=cli_env(tmp_path),
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
    state = RuntimeState.model_validate_json((tmp_path / "data" / STATE_FILE).read_text())
    assert state.pid == proc.pid and state.ready
    assert sorted(state.processes.values()) == sorted(children)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(lines) + rest
    assert "stopped." in rest
    assert not (tmp_path / "data" / STATE_FILE).exists()
    time.sleep(0.5)
    alive = [
        pid
        for pid in children
        if Path(f"/proc/{pid}").exists()
        and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    ]
    assert alive == []


def _earlier_runs_mail(folder: Path) -> Path:
    """An invitation an earlier demo left in the mail folder, to the same person."""
    folder.mkdir(parents=True, exist_ok=True)
    msg = email.message.EmailMessage()
    msg["To"] = "grace.kim@example.org"
    msg["Subject"] = "Invitation: mentorship kickoff with Hiro Tanaka"
    msg["Message-ID"] = "<an-earlier-demo@localhost>"
    msg.set_content("from an earlier run")
    path = folder / "1000000000000000000-1-000001.eml"
    path.write_bytes(bytes(msg))
    return path


def test_demo_runs_the_sample_cohort_and_counts_only_its_own_emails(tmp_path: Path):
    earlier = _earlier_runs_mail(tmp_path / "data" / "mail")
    result = subprocess.run(
        mentorship("demo"), env=cli_env(tmp_path), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Pairs formed (" in out
    assert "Sessions planned (" in out and " kickoff" in out
    assert '"matching_rounds": 1' in out
    assert "waiting for" in out  # progress while the system works
    mails = [p for p in (tmp_path / "data" / "mail").glob("*.eml") if p != earlier]
    assert mails and f": {len(mails)} in {tmp_path / 'data' / 'mail'}" in out
    assert earlier.name not in out
    assert f'"sent": {len(mails)}' in out


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

    env = cli_env(tmp_path, MENTORSHIP_NATS_URL=nats_server.url)

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
                mentorship("dlq", "list"),
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
                mentorship("dlq", "replay", "--all"),
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


@dataclass
class RunningUp:
    """A `mentorship up` started the way a user does: in a folder, with its default data dir."""

    folder: Path
    env: dict[str, str]  # without MENTORSHIP_DATA_DIR: commands find ./mentorship-data
    state: RuntimeState
    proc: subprocess.Popen[bytes]


def _wait_until_ready(state_file: Path, proc: subprocess.Popen[bytes], log: Path) -> RuntimeState:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        if state_file.exists():
            state = RuntimeState.model_validate_json(state_file.read_text())
            if state.ready:
                return state
        time.sleep(0.2)
    raise AssertionError(f"`mentorship up` not ready after 120s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def running_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningUp]:
    folder = tmp_path_factory.mktemp("user")
    env = cli_env(folder)
    del env["MENTORSHIP_DATA_DIR"]
    log = folder / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(mentorship("up"), env=env, cwd=folder, stdout=out, stderr=out)
    try:
        state = _wait_until_ready(folder / "mentorship-data" / STATE_FILE, proc, log)
        yield RunningUp(folder, env, state, proc)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


@pytest.mark.parametrize("command", ["up", "demo"])
def test_second_up_or_demo_on_the_same_data_dir_refuses_at_once_naming_the_running_one(
    running_up: RunningUp, command: str
):
    started = time.monotonic()
    result = run_cli(command, env=running_up.env, cwd=running_up.folder)
    line = one_line_error(result)
    assert time.monotonic() - started < 15
    state = running_up.state
    assert f"is in use by `mentorship up` (pid {state.pid}" in line
    assert f"NATS {state.nats_url}" in line
    assert f"insights {state.http_urls['insights']}" in line
    assert f"`kill {state.pid}`" in line and "MENTORSHIP_DATA_DIR" in line
    assert "[1/4]" not in result.stdout  # nothing was started


def test_cli_commands_find_the_running_nats_through_the_state_file(running_up: RunningUp):
    assert "MENTORSHIP_NATS_URL" not in running_up.env
    result = run_cli("streams", env=running_up.env, cwd=running_up.folder)
    assert result.returncode == 0, result.stderr
    assert f"ready on {running_up.state.nats_url}" in result.stdout


def test_token_create_stores_a_token_the_running_insights_accepts(running_up: RunningUp):
    result = run_cli(
        "token", "create", "--program", "acme", env=running_up.env, cwd=running_up.folder
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    url = f"{running_up.state.http_urls['insights']}/programs/acme/overview"
    response = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text


def test_token_create_elsewhere_refuses_and_names_the_running_data_dir(running_up: RunningUp):
    elsewhere = running_up.folder / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    result = run_cli("token", "create", "--program", "acme", env=running_up.env, cwd=elsewhere)
    line = one_line_error(result)
    assert f"no insights database at {elsewhere / 'mentorship-data' / 'insights.sqlite3'}" in line
    assert f"MENTORSHIP_DATA_DIR={running_up.folder / 'mentorship-data'}" in line
    assert not (elsewhere / "mentorship-data").exists()


async def _dead_letters(url: str) -> list[tuple[int, int, str]]:
    nc = await nats.connect(url)
    try:
        parked = await list_dead_letters(nc.jetstream())
    finally:
        await nc.drain()
    return sorted((p.original_sequence, p.sequence, p.consumer) for p in parked)


async def _until(check, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not (found := await check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)
    return found


def test_dlq_list_groups_one_messages_dead_letters_and_replay_reaches_only_that_consumer(
    running_up: RunningUp,
):
    url = running_up.state.nats_url
    assert url is not None

    async def scenario() -> None:
        nc = await nats.connect(url)
        ack = await nc.jetstream().publish("mentorship.participant.registered", b"not json")
        await nc.drain()

        async def four_parked() -> list[tuple[int, int, str]]:
            letters = [d for d in await _dead_letters(url) if d[0] == ack.seq]
            return letters if len(letters) == 4 else []

        letters = await _until(four_parked, "one dead letter per service")
        listing = run_cli("dlq", "list", env=running_up.env, cwd=running_up.folder)
        assert listing.returncode == 0, listing.stderr
        heading = f"message #{ack.seq} on mentorship.participant.registered: 4 dead letters"
        assert heading in listing.stdout
        block = listing.stdout.split(heading, 1)[1].split("message #", 1)[0]
        for _, sequence, consumer in letters:
            assert f"#{sequence} {consumer}" in block
        assert block.count("reason: ") == 4

        _, replayed, consumer = letters[0]
        replay = run_cli(
            "dlq", "replay", "--seq", str(replayed), env=running_up.env, cwd=running_up.folder
        )
        assert replay.returncode == 0, replay.stderr
        assert f"[1/1] replayed #{replayed}" in replay.stdout and consumer in replay.stdout

        async def parked_again_for_that_consumer_alone() -> list[tuple[int, int, str]]:
            now = await _dead_letters(url)
            again = [d for d in now if d[2] == consumer and d[1] > letters[-1][1]]
            gone = replayed not in [d[1] for d in now]
            return now if gone and again else []

        now = await _until(parked_again_for_that_consumer_alone, "the replay parked again")
        untouched = [d for d in letters if d[2] != consumer]
        assert [d for d in now if d[1] in {u[1] for u in untouched}] == untouched
        assert len([d for d in now if d[2] == consumer]) == 1

    asyncio.run(scenario())
