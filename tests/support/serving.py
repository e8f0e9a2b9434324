"""A service's HTTP app on a real port, for tests that drive it over real HTTP (the CLI,
schemathesis, a List-Unsubscribe POST)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import uvicorn

from shared.service import Service


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def served(service: Service, port: int | None = None) -> AsyncIterator[str]:
    """The service's HTTP app on a real port (its lifespan starts the service); its base URL."""
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(service.http_app(), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
