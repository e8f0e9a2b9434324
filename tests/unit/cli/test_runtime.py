"""The data directory's lock and state file (cli/runtime.py), with real flocks and processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.runtime import (
    STATE_FILE,
    DataDirInUse,
    DataDirLock,
    HttpTarget,
    RuntimeState,
    http_target,
    nats_target,
    running_elsewhere,
    running_in,
    without_credentials,
)
from shared.settings import Settings


@pytest.fixture(autouse=True)
def _own_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Systems other tests (or people) run on this machine stay out of these tests."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))


def _state(
    data_dir: Path, *, pid: int = 4242, nats_url: str = "nats://127.0.0.1:4322"
) -> RuntimeState:
    return RuntimeState(
        command="up",
        pid=pid,
        started_at="2025-03-03T09:00:00+00:00",
        data_dir=str(data_dir),
        ready=True,
        nats_url=nats_url,
        http_urls={"insights": "http://127.0.0.1:8080"},
        processes={"nats-server": pid + 1},
    )


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def test_second_lock_on_a_data_dir_fails_naming_the_holder_its_urls_and_what_to_do(tmp_path):
    data_dir = tmp_path / "data"
    first = DataDirLock.acquire(data_dir)
    try:
        first.publish(_state(data_dir.resolve(), pid=os.getpid()))
        with pytest.raises(DataDirInUse) as refused:
            DataDirLock.acquire(data_dir)
    finally:
        first.release()
    message = str(refused.value)
    assert "\n" not in message
    assert f"is in use by `mentorship up` (pid {os.getpid()}" in message
    assert "NATS nats://127.0.0.1:4322" in message
    assert "insights http://127.0.0.1:8080" in message
    assert f"`kill {os.getpid()}`" in message
    assert "MENTORSHIP_DATA_DIR" in message


def test_release_removes_the_state_file_and_frees_the_directory(tmp_path):
    data_dir = tmp_path / "data"
    lock = DataDirLock.acquire(data_dir)
    lock.publish(_state(data_dir.resolve()))
    assert running_in(data_dir) is not None
    lock.release()
    assert not (data_dir / STATE_FILE).exists()
    assert running_in(data_dir) is None
    DataDirLock.acquire(data_dir).release()


def test_stale_state_file_whose_lock_is_free_is_ignored_and_replaced(tmp_path):
    data_dir = (tmp_path / "data").resolve()
    data_dir.mkdir()
    (data_dir / STATE_FILE).write_text(_state(data_dir, pid=_dead_pid()).model_dump_json())
    assert running_in(data_dir) is None
    assert nats_target(Settings(data_dir=data_dir)).url == Settings().nats_url
    lock = DataDirLock.acquire(data_dir)
    try:
        # between taking the lock and the first publish, readers must not see the dead one's URLs
        assert not (data_dir / STATE_FILE).exists()
    finally:
        lock.release()


def test_lock_outlives_up_in_the_children_that_inherited_it(tmp_path):
    data_dir = tmp_path / "data"
    lock = DataDirLock.acquire(data_dir)
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        pass_fds=(lock.fd,),
    )
    try:
        lock.publish(_state(data_dir.resolve(), pid=_dead_pid()))
        # what SIGKILL does to `up`: its own descriptor closes, its children keep running
        os.close(lock.fd)
        with pytest.raises(DataDirInUse) as refused:
            DataDirLock.acquire(data_dir)
        assert "it is gone but the processes it started still run" in str(refused.value)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)
    DataDirLock.acquire(data_dir).release()


def test_nats_target_is_the_env_then_the_running_up_then_the_default(tmp_path):
    data_dir = (tmp_path / "data").resolve()
    lock = DataDirLock.acquire(data_dir)
    try:
        lock.publish(_state(data_dir, nats_url="nats://127.0.0.1:45678"))
        from_state = nats_target(Settings(data_dir=data_dir))
        assert from_state.url == "nats://127.0.0.1:45678"
        assert str(data_dir / STATE_FILE) in from_state.origin
        from_env = nats_target(Settings(data_dir=data_dir, nats_url="nats://elsewhere:4222"))
        assert from_env == type(from_env)("nats://elsewhere:4222", "MENTORSHIP_NATS_URL")
    finally:
        lock.release()
    default = nats_target(Settings(data_dir=data_dir))
    assert default.url == Settings().nats_url
    assert "MENTORSHIP_NATS_URL is unset" in default.origin


def test_http_target_is_the_env_then_the_running_up_then_the_default_port(tmp_path):
    data_dir = (tmp_path / "data").resolve()
    lock = DataDirLock.acquire(data_dir)
    try:
        lock.publish(_state(data_dir))
        from_state = http_target(Settings(data_dir=data_dir), "insights")
        assert from_state.url == "http://127.0.0.1:8080"
        assert str(data_dir / STATE_FILE) in from_state.origin
        port = http_target(Settings(data_dir=data_dir, insights_http_port=9999), "insights")
        assert port == HttpTarget("http://127.0.0.1:9999", "MENTORSHIP_INSIGHTS_HTTP_PORT")
        public = Settings(data_dir=data_dir, insights_public_url="https://in.example.org/")
        assert http_target(public, "insights").url == "https://in.example.org"
    finally:
        lock.release()
    default = http_target(Settings(data_dir=data_dir), "pairing")
    assert default.url == f"http://127.0.0.1:{Settings().pairing_http_port}"
    assert "MENTORSHIP_PAIRING_HTTP_PORT is unset" in default.origin


def test_commands_run_elsewhere_learn_where_a_system_runs(tmp_path):
    running_dir = (tmp_path / "running").resolve()
    lock = DataDirLock.acquire(running_dir)
    try:
        lock.publish(_state(running_dir))
        others = running_elsewhere(tmp_path / "somewhere-else")
        assert [state.data_dir for state in others] == [str(running_dir)]
        hint = nats_target(Settings(data_dir=tmp_path / "somewhere-else")).origin
        assert f"MENTORSHIP_DATA_DIR={running_dir}" in hint
    finally:
        lock.release()
    assert running_elsewhere(tmp_path / "somewhere-else") == []


def test_state_file_nats_urls_carry_no_credentials():
    assert without_credentials("nats://user:secret@nats.example.org:4222") == (
        "nats://nats.example.org:4222"
    )
    assert (
        without_credentials("nats://s3cr3t@a:4222, nats://b:4222") == "nats://a:4222,nats://b:4222"
    )
    assert without_credentials("nats://127.0.0.1:4322") == "nats://127.0.0.1:4322"
    assert without_credentials(None) is None
