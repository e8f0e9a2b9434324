"""A local SMTP catcher (aiosmtpd): every message is kept as a .eml file. Both catchers offer
PIPELINING, so the sender pipelines into them as it does into a real server."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class _OffersPipelining:
    """Says PIPELINING in its EHLO (RFC 2920), as Postfix, Exim and Mailpit do: aiosmtpd reads
    commands in order, so it takes them pipelined; it only does not say so."""

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]


class _KeepAsFiles(_OffersPipelining):
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


class _LogMessageIds(_OffersPipelining):
    """Appends each message's Message-ID to a file: a sink that counts, for tests and bench."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content: Any = envelope.original_content or envelope.content or b""
        data = content if isinstance(content, bytes) else str(content).encode()
        head = data.split(b"\r\n\r\n", 1)[0]
        found = next(
            (
                line[11:].strip()
                for line in head.split(b"\r\n")
                if line[:11].lower() == b"message-id:"
            ),
            b"<none>",
        )
        os.write(self._fd, found + b"\n")  # before the 250: counted whenever it was accepted
        return "250 Message accepted for delivery"


class MessageIdSink:
    """An SMTP server on host:port (a background thread) logging Message-IDs to a file."""

    def __init__(self, path: Path, *, host: str = "127.0.0.1", port: int = 8025) -> None:
        self.path = path
        self.host = host
        self.port = port
        self._controller: Controller | None = None

    def start(self) -> None:
        """Starts accepting mail (again, after stop)."""
        self._controller = Controller(_LogMessageIds(self.path), hostname=self.host, port=self.port)
        self._controller.start()

    def stop(self) -> None:
        """Stops accepting mail: connections are refused until start."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def message_ids(self) -> list[str]:
        """Every Message-ID received so far, in order (duplicates included)."""
        if not self.path.exists():
            return []
        return [line for line in self.path.read_text().splitlines() if line]


def serve_message_ids(path: str, port: int) -> None:
    """Runs a MessageIdSink until killed (for a sink in a process of its own)."""
    sink = MessageIdSink(Path(path), port=port)
    sink.start()
    try:
        while True:
            time.sleep(3600)
    finally:
        sink.stop()
