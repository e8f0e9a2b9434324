"""What the `mentorship` command says when it cannot work: one line, no traceback, what to do."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.launcher import free_port, nats_server_binary, wait_for_port
from tests.e2e.test_cli import cli_env, one_line_error, run_cli

pytestmark = pytest.mark.e2e

DENY_ALL = """
authorization {
  users = [
    {user: reader, password: secret, permissions: {publish: {deny: ">"}, subscribe: {deny: ">"}}}
  ]
}
"""


@contextlib.contextmanager
def nats_server(tmp_path: Path, *options: str, config: str = "") -> Iterator[str]:
    """A nats-server on a free port with these options, stopped afterwards."""
    port = free_port()
    command = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), *options]
    if config:
        (tmp_path / "nats.conf").write_text(config)
        command += ["-c", str(tmp_path / "nats.conf")]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, timeout=20, proc=proc)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def silent_listener() -> Iterator[str]:
    """Something that accepts TCP connections and never speaks NATS."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"nats://127.0.0.1:{listener.getsockname()[1]}"


def test_nats_nobody_listens_on_says_connection_refused_and_what_to_do(tmp_path):
    url = f"nats://127.0.0.1:{free_port()}"
    line = one_line_error(run_cli("dlq", "list", env=cli_env(tmp_path, MENTORSHIP_NATS_URL=url)))
    assert f"cannot reach NATS at {url} (connection refused; MENTORSHIP_NATS_URL)" in line
    assert "is `mentorship up` running? set MENTORSHIP_NATS_URL" in line


def test_something_that_is_not_nats_says_no_handshake(tmp_path):
    with silent_listener() as url:
        result = run_cli("streams", env=cli_env(tmp_path, MENTORSHIP_NATS_URL=url))
    line = one_line_error(result)
    assert f"cannot reach NATS at {url} (it accepts TCP connections but no NATS handshake" in line


def test_nats_without_jetstream_says_to_enable_it(tmp_path):
    with nats_server(tmp_path) as url:
        result = run_cli("dlq", "list", env=cli_env(tmp_path, MENTORSHIP_NATS_URL=url))
    assert f"JetStream is not enabled on the NATS at {url}" in one_line_error(result)


def test_missing_stream_says_how_to_declare_it(tmp_path):
    with nats_server(tmp_path, "-js", "-sd", str(tmp_path / "store")) as url:
        result = run_cli("dlq", "list", env=cli_env(tmp_path, MENTORSHIP_NATS_URL=url))
    line = one_line_error(result)
    assert f"stream MENTORSHIP does not exist on {url}" in line
    assert "`mentorship streams`" in line


def test_wrong_credentials_say_where_to_put_the_right_ones(tmp_path):
    with nats_server(tmp_path, config=DENY_ALL) as url:
        wrong = url.replace("nats://", "nats://reader:wrong@")
        result = run_cli("streams", env=cli_env(tmp_path, MENTORSHIP_NATS_URL=wrong))
    line = one_line_error(result)
    assert "refused the credentials (authorization violation)" in line
    assert "MENTORSHIP_NATS_URL" in line


def test_missing_permissions_name_the_violation_not_a_timeout(tmp_path):
    with nats_server(tmp_path, "-js", "-sd", str(tmp_path / "store"), config=DENY_ALL) as url:
        reader = url.replace("nats://", "nats://reader:secret@")
        result = run_cli("dlq", "list", env=cli_env(tmp_path, MENTORSHIP_NATS_URL=reader))
    line = one_line_error(result)
    assert "denied this user" in line and "permissions violation" in line.lower()
    assert "$JS.API.>" in line


def test_dlq_replay_without_seq_or_all_refuses_before_connecting(tmp_path):
    nowhere = f"nats://127.0.0.1:{free_port()}"
    result = run_cli("dlq", "replay", env=cli_env(tmp_path, MENTORSHIP_NATS_URL=nowhere))
    line = one_line_error(result)
    assert "say which dead letters to replay: --seq N" in line and "--all" in line


def test_token_create_without_insights_database_refuses_and_creates_none(tmp_path):
    env = cli_env(tmp_path)
    del env["MENTORSHIP_DATA_DIR"]
    result = run_cli("token", "create", "--program", "acme", env=env, cwd=tmp_path)
    line = one_line_error(result)
    looked_for = tmp_path / "mentorship-data" / "insights.sqlite3"
    assert f"no insights database at {looked_for}" in line
    assert "MENTORSHIP_DATA_DIR" in line
    assert result.stdout == ""
    assert not (tmp_path / "mentorship-data").exists()


def test_token_create_on_a_database_without_tokens_table_refuses(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    sqlite3.connect(data_dir / "insights.sqlite3").close()
    result = run_cli("token", "create", "--program", "acme", env=cli_env(tmp_path))
    line = one_line_error(result)
    assert f"{data_dir / 'insights.sqlite3'} has no api_tokens table" in line
    assert "`mentorship up`" in line
