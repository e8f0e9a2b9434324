"""A local SMTP catcher (aiosmtpd): every message is kept as a .eml file."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class _KeepAsFiles:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._counter = itertools.count(1)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content: Any = envelope.original_content or envelope.content or b""
        data = content if isinstance(content, bytes) else str(content).encode()
        name = f"{time.time_ns()}-{os.getpid()}-{next(self._counter):06d}.eml"
        tmp = self.folder / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(self.folder / name)  # readers never see half a message
        return "250 Message accepted for delivery"


class MailCatcher:
    """Runs the catcher in a background thread on host:port."""

    def __init__(self, folder: Path, *, host: str = "127.0.0.1", port: int = 8025) -> None:
        self.folder = folder
        self.host = host
        self.port = port
        self._controller = Controller(_KeepAsFiles(folder), hostname=host, port=port)

    def start(self) -> None:
        """Starts accepting mail."""
        self._controller.start()

    def stop(self) -> None:
        """Stops accepting mail."""
        self._controller.stop()

    def messages(self) -> list[Path]:
        """The caught messages, oldest first."""
        return sorted(self.folder.glob("*.eml"))
