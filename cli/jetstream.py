"""Running a CLI command's work on NATS: one short-lived connection, and one line per failure."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlparse

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext

from cli.runtime import NatsTarget, nats_target
from shared.bus import STREAM, StreamMissing, connect_once
from shared.settings import Settings

__all__ = ["NATS_ERRORS", "CommandFailed", "JetStreamWork", "nats_problem", "on_jetstream"]

PERMISSIONS_VIOLATION = "permissions violation"
JetStreamWork = Callable[[JetStreamContext, NatsTarget], Awaitable[int]]


class CommandFailed(Exception):
    """A command could not do its work; the message is the one line the user sees."""


def _connect_failure(url: str) -> str:
    """Why nothing NATS answered at url, as far as a plain TCP connection can tell."""
    first = urlparse(url.split(",")[0].strip())
    address = (first.hostname or "127.0.0.1", first.port or 4222)
    try:
        with socket.create_connection(address, timeout=2):
            return "it accepts TCP connections but no NATS handshake completed"
    except ConnectionRefusedError:
        return "connection refused"
    except TimeoutError:
        return "no answer within 2s"
    except OSError as exc:
        return exc.strerror or str(exc)


def _unreachable(target: NatsTarget) -> str:
    return (
        f"cannot reach NATS at {target.url} ({_connect_failure(target.url)}; {target.origin}): "
        "is `mentorship up` running? set MENTORSHIP_NATS_URL to your server"
    )


def nats_problem(
    exc: Exception, target: NatsTarget, last_error: Exception | None, *, connecting: bool
) -> str:
    """One line for any NATS or JetStream failure: what went wrong, where, and what to do."""
    url = f"{target.url} ({target.origin})"
    said = f"{exc} {last_error or ''}".lower()
    if isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in said:
        return (
            f"NATS at {url} refused the credentials (authorization violation): put the right "
            "user:password@ or token@ in MENTORSHIP_NATS_URL"
        )
    if PERMISSIONS_VIOLATION in said:
        return (
            f"NATS at {url} denied this user ({last_error or exc}): grant it publish and "
            "subscribe on $JS.API.> and mentorship.>, or use another user in MENTORSHIP_NATS_URL"
        )
    if connecting:
        return _unreachable(target)
    if isinstance(exc, StreamMissing):
        return str(exc)
    if isinstance(exc, nats.js.errors.ServiceUnavailableError):
        return (
            f"JetStream is not enabled on the NATS at {url}: start nats-server with -js, or set "
            "MENTORSHIP_NATS_URL to a server with JetStream"
        )
    if isinstance(exc, nats.js.errors.NotFoundError):
        return (
            f"stream {STREAM} does not exist on {url}: declare it with `mentorship streams` "
            "(its owner's step), or start `mentorship up`"
        )
    if isinstance(exc, nats.js.errors.APIError):
        return (
            f"JetStream at {url} refused the request: {exc.description} (error {exc.err_code}); "
            "see the server's log"
        )
    if isinstance(exc, TimeoutError):
        return (
            f"NATS at {url} did not answer in time: retry; if it persists, check that JetStream "
            "is up there (a cluster without quorum answers nothing) and the server's log"
        )
    if isinstance(exc, OSError | nats.errors.ConnectionClosedError | nats.errors.NoServersError):
        return f"lost the connection to NATS at {url} ({exc!r}): retry, or check the server's log"
    return f"NATS at {url} failed: {type(exc).__name__}: {exc}; see the server's log"


NATS_ERRORS = (nats.errors.Error, OSError, StreamMissing)


def on_jetstream(settings: Settings, work: JetStreamWork) -> int:
    """Runs one command's work on a short-lived connection to the NATS the command should use."""
    target = nats_target(settings)

    async def run() -> int:
        try:
            nc = await connect_once(target.url)
        except NATS_ERRORS as exc:
            raise CommandFailed(nats_problem(exc, target, None, connecting=True)) from exc
        try:
            return await work(nc.jetstream(), target)
        except NATS_ERRORS as exc:
            # a permissions violation arrives asynchronously; the request only times out
            raise CommandFailed(nats_problem(exc, target, nc.last_error, connecting=False)) from exc
        finally:
            with contextlib.suppress(*NATS_ERRORS):
                await nc.drain()

    return asyncio.run(run())
