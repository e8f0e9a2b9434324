"""Finding NATS and PostgreSQL for tests: env vars, then testcontainers (Docker), then local.

Under CI=true a missing server is a failure, never a skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.launcher import NatsServer, free_port, wait_for_port

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(message: str) -> None:
    """Skips locally; fails loudly in CI."""
    if IN_CI:
        pytest.fail(f"{message} (CI=true: tests that need it must not skip)")
    pytest.skip(message)


def docker_answers() -> bool:
    """Whether a Docker engine responds (testcontainers needs one)."""
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


# --- NATS ----------------------------------------------------------------------------------


@contextlib.contextmanager
def local_nats(tmp: Path) -> Iterator[NatsServer]:
    """A nats-server with JetStream on a free port, storing in tmp."""
    server = NatsServer(free_port(), tmp / "nats-store", tmp / "nats.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def container_nats() -> Iterator[str]:
    """A NATS container with JetStream (testcontainers)."""
    from testcontainers.core.container import DockerContainer

    container = DockerContainer("nats:2.10").with_command("-js").with_exposed_ports(4222)
    with container:
        host = container.get_container_host_ip()
        port = int(container.get_exposed_port(4222))
        wait_for_port(port, timeout=30)
        yield f"nats://{host}:{port}"


# --- PostgreSQL ----------------------------------------------------------------------------


def _pg_bindir() -> Path | None:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, check=True, text=True)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@contextlib.contextmanager
def local_postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster made with initdb and started with pg_ctl."""
    bindir = _pg_bindir()
    if bindir is None:
        raise RuntimeError(
            "no initdb found: install PostgreSQL or set MENTORSHIP_TEST_DATABASE_URL"
        )
    tmp = Path(tempfile.mkdtemp(prefix="mentorship-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        user = pwd.getpwnam("postgres")
        os.chown(tmp, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = tmp / "data"
    subprocess.run(
        [
            *run_as,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *run_as,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(tmp / "pg.log"),
            "-w",
            "-o",
            f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
        )
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def container_postgres() -> Iterator[str]:
    """A PostgreSQL container (testcontainers)."""
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:16", driver=None) as pg:
        yield pg.get_connection_url()


def asyncpg_url(url: str) -> str:
    """The SQLAlchemy asyncpg form of a postgresql:// URL."""
    for prefix in (
        "postgresql+asyncpg://",
        "postgresql+psycopg2://",
        "postgresql://",
        "postgres://",
    ):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def plain_url(url: str) -> str:
    """The asyncpg-driver form (postgresql://) of a URL."""
    return "postgresql://" + asyncpg_url(url)[len("postgresql+asyncpg://") :]


def wait_for_postgres(url: str, timeout: float = 30) -> None:
    """Blocks until the server accepts a connection."""
    import asyncio

    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(plain_url(url), timeout=5)
        await conn.close()

    deadline = time.monotonic() + timeout
    while True:
        try:
            asyncio.run(probe())
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
