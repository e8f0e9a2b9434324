"""`mentorship token create|list|revoke` on insights' database, as a coordinator's admin runs
them: a token with an expiry, listed without the token itself, revoked by its id."""

from __future__ import annotations

import os
import subprocess
import sys

from services.insights import queries
from services.insights.tokens import token_digest
from shared import migrations
from shared.db import make_engine, make_sessions
from shared.settings import Settings


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_token_is_created_listed_and_revoked(tmp_path):
    settings = Settings(data_dir=tmp_path)
    engine = make_engine(settings.database_url_for("insights"), schema="insights")
    await migrations.upgrade(engine, service="insights", create_empty=True)
    env = {**os.environ, "MENTORSHIP_DATA_DIR": str(tmp_path)}
    created = run_cli("token", "create", "--program", "acme", "--expires-in-days", "30", env=env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert "valid for 30 days" in created.stderr
    listed = run_cli("token", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    [header, row] = listed.stdout.strip().splitlines()
    assert header.split() == ["id", "program", "label", "status", "created", "expires"]
    token_id = token_digest(token)[:12]
    assert row.split()[:4] == [token_id, "acme", "coordinator", "valid"]
    assert token not in listed.stdout
    revoked = run_cli("token", "revoke", token_id, env=env)
    assert revoked.returncode == 0, revoked.stderr
    [_, row] = run_cli("token", "list", env=env).stdout.strip().splitlines()
    assert row.split()[3] == "revoked"
    async with make_sessions(engine)() as session:
        grant = await queries.grant(session, token_hash=token_digest(token))
    assert grant is not None and grant.revoked_at is not None
    unknown = run_cli("token", "revoke", "nope", env=env)
    assert unknown.returncode == 1 and "mentorship token list" in unknown.stderr
    await engine.dispose()


def test_token_commands_never_create_a_database(tmp_path):
    env = {**os.environ, "MENTORSHIP_DATA_DIR": str(tmp_path / "nowhere")}
    result = run_cli("token", "list", env=env)
    assert result.returncode == 1
    assert "no insights database" in result.stderr
    assert not (tmp_path / "nowhere" / "insights.sqlite3").exists()
