"""Who runs on a data directory: the lock `up` holds there and the state file naming its URLs.

See docs/adr/0010-runner-state-and-lock.md for why a flock and a JSON file, and what is stale.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from shared.settings import Settings

STATE_FILE = "runtime.json"
LOCK_FILE = "runtime.lock"
# Readers probe the lock with a shared flock for microseconds; `up` retries this long before
# taking a reader's probe for a running system.
LOCK_WAIT_SECONDS = 1.0


class RuntimeState(BaseModel):
    """What a running `up` (or `demo`) writes to <data dir>/runtime.json."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    command: str
    pid: int
    started_at: str
    data_dir: str
    ready: bool = False
    nats_url: str | None = None
    smtp: str | None = None
    http_urls: dict[str, str] = {}
    processes: dict[str, int] = {}

    def summary(self) -> str:
        """`mentorship up` (pid, start, URLs) in one line, for messages."""
        urls = [f"NATS {self.nats_url}"] if self.nats_url else []
        urls += [f"SMTP {self.smtp}"] if self.smtp else []
        urls += [f"{name} {url}" for name, url in self.http_urls.items()]
        state = "" if self.ready else ", still starting"
        details = ", ".join([f"pid {self.pid}", f"started {self.started_at}{state}", *urls])
        return f"`mentorship {self.command}` ({details})"


def without_credentials(urls: str | None) -> str | None:
    """NATS URL(s) without user:password@ or token@: the state file is readable by others."""
    if urls is None:
        return None
    return ",".join(re.sub(r"//[^/@]*@", "//", url.strip()) for url in urls.split(","))


class DataDirInUse(Exception):
    """Another `up` or `demo` holds the data directory; the message names it and what to do."""


def _lock_is_held(data_dir: Path) -> bool:
    """Whether some process holds the data directory's lock (probed without waiting)."""
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _read_state(data_dir: Path) -> RuntimeState | None:
    """The state file's content, None when missing or unreadable."""
    try:
        return RuntimeState.model_validate_json((data_dir / STATE_FILE).read_bytes())
    except (OSError, ValidationError):
        return None


def running_in(data_dir: Path) -> RuntimeState | None:
    """The `up` or `demo` running on data_dir; None if none (a file whose lock is free is stale)."""
    data_dir = data_dir.resolve()
    if not (data_dir / STATE_FILE).exists() or not _lock_is_held(data_dir):
        return None
    return _read_state(data_dir)


def index_dir() -> Path:
    """Where this user's running systems are listed, so commands run elsewhere can name them."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"mentorship-{os.getuid()}"


def _index_entry(data_dir: Path) -> Path:
    return index_dir() / hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]


def running_elsewhere(data_dir: Path) -> list[RuntimeState]:
    """The systems this user runs on other data directories (stale index entries are removed)."""
    data_dir = data_dir.resolve()
    found = []
    for entry in sorted(index_dir().glob("*")) if index_dir().is_dir() else []:
        with contextlib.suppress(OSError):
            other = Path(entry.read_text().strip())
            state = running_in(other)
            if state is None:
                entry.unlink(missing_ok=True)
            elif other != data_dir:
                found.append(state)
    return found


def where_others_run(data_dir: Path) -> str:
    """A hint naming the data directories of systems running elsewhere, or ''."""
    others = running_elsewhere(data_dir)
    if not others:
        return ""
    dirs = " or ".join(f"MENTORSHIP_DATA_DIR={state.data_dir}" for state in others)
    return f"; a `mentorship up` runs elsewhere: set {dirs}"


def _in_use_message(data_dir: Path) -> str:
    """One line: who holds data_dir and what to do about it."""
    elsewhere = "or set MENTORSHIP_DATA_DIR to another directory"
    state = _read_state(data_dir)
    if state is None:
        return (
            f"{data_dir} is in use by another `mentorship up` or `demo` (still starting, or its "
            f"processes outlived it): wait and retry, stop it, {elsewhere}"
        )
    if _pid_alive(state.pid):
        todo = f"stop it (Ctrl-C where it runs, or `kill {state.pid}`)"
    else:
        pids = " ".join(str(pid) for pid in state.processes.values())
        todo = f"it is gone but the processes it started still run: `kill {pids}`"
    return f"{data_dir} is in use by {state.summary()}: {todo}, {elsewhere}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


class DataDirLock:
    """The exclusive flock `up` holds on its data directory for its whole life, and its state."""

    def __init__(self, data_dir: Path, fd: int) -> None:
        self.data_dir = data_dir
        self.fd = fd  # children inherit it, so the lock outlives an `up` killed with SIGKILL

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        """Takes the lock, or raises DataDirInUse naming the system that holds it."""
        data_dir = data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise DataDirInUse(_in_use_message(data_dir)) from None
                time.sleep(0.05)
        # a state file left by an `up` that died is stale: nobody held its lock
        (data_dir / STATE_FILE).unlink(missing_ok=True)
        return cls(data_dir, fd)

    def publish(self, state: RuntimeState) -> None:
        """Writes the state file (replacing a stale one) and lists it in this user's index."""
        _write_atomically(self.data_dir / STATE_FILE, state.model_dump_json(indent=2) + "\n")
        with contextlib.suppress(OSError):  # the index only improves messages elsewhere
            index_dir().mkdir(mode=0o700, parents=True, exist_ok=True)
            _write_atomically(_index_entry(self.data_dir), str(self.data_dir))

    def release(self) -> None:
        """Removes the state file and the index entry, then lets go of the lock."""
        (self.data_dir / STATE_FILE).unlink(missing_ok=True)
        _index_entry(self.data_dir).unlink(missing_ok=True)
        # closing, not LOCK_UN: a child that outlived its stop still holds the directory
        os.close(self.fd)


@dataclass(frozen=True)
class NatsTarget:
    """The NATS a command talks to, and how it was chosen (for error messages)."""

    url: str
    origin: str


def nats_target(settings: Settings) -> NatsTarget:
    """MENTORSHIP_NATS_URL if set, else the NATS of the `up` running here, else the default."""
    if "nats_url" in settings.model_fields_set:
        return NatsTarget(settings.nats_url, "MENTORSHIP_NATS_URL")
    data_dir = settings.data_dir.resolve()
    state = running_in(data_dir)
    if state is not None and state.nats_url:
        return NatsTarget(state.nats_url, f"from {data_dir / STATE_FILE}")
    return NatsTarget(
        settings.nats_url,
        f"the default: MENTORSHIP_NATS_URL is unset and no `mentorship up` runs on {data_dir}"
        + where_others_run(data_dir),
    )


@dataclass(frozen=True)
class HttpTarget:
    """A service's HTTP a command talks to, and how it was chosen (for error messages)."""

    url: str
    origin: str


def http_target(settings: Settings, service: str) -> HttpTarget:
    """MENTORSHIP_<SERVICE>_PUBLIC_URL or _HTTP_PORT if set, else the service of the `up`
    running here, else the default port."""
    name = service.upper()
    if f"{service}_public_url" in settings.model_fields_set:
        return HttpTarget(settings.public_url_for(service), f"MENTORSHIP_{name}_PUBLIC_URL")
    port = settings.http_port_for(service)
    if f"{service}_http_port" in settings.model_fields_set:
        return HttpTarget(f"http://127.0.0.1:{port}", f"MENTORSHIP_{name}_HTTP_PORT")
    data_dir = settings.data_dir.resolve()
    state = running_in(data_dir)
    if state is not None and service in state.http_urls:
        return HttpTarget(state.http_urls[service], f"from {data_dir / STATE_FILE}")
    return HttpTarget(
        f"http://127.0.0.1:{port}",
        f"the default: MENTORSHIP_{name}_HTTP_PORT is unset and no `mentorship up` runs on "
        f"{data_dir}" + where_others_run(data_dir),
    )
