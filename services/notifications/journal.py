"""The sent journal: a local record of each SMTP 250, written the moment it arrives.

The database records a send in the transaction after it; a crash or a database outage in
between must not send that mail again. Each process appends to its own file (held with an
exclusive lock while it lives); a process that starts replays the files no live process holds
into the database, then deletes them. A file is emptied whenever all its lines are recorded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SentRecord:
    """A delivery the SMTP server accepted, at an instant, on an attempt."""

    program_id: str
    delivery_id: str
    sent_at: dt.datetime
    attempt: int


class SentJournal:
    """This process's journal file in `folder`, and the orphans of dead processes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{os.getpid()}-{uuid.uuid4().hex[:12]}.sent"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.unrecorded = 0

    def append(self, record: SentRecord) -> None:
        """Notes a 250 at once (one write: it survives the process being killed)."""
        line = json.dumps(
            [record.program_id, record.delivery_id, record.sent_at.isoformat(), record.attempt]
        )
        os.write(self._fd, (line + "\n").encode())
        self.unrecorded += 1

    def recorded(self, count: int) -> None:
        """`count` records are in the database; empties the file when none is left."""
        self.unrecorded = max(0, self.unrecorded - count)
        if self.unrecorded == 0:
            os.ftruncate(self._fd, 0)

    def orphans(self) -> tuple[list[SentRecord], list[Path]]:
        """The records of journals no live process holds, and those files (delete when done)."""
        records, files = [], []
        for path in sorted(self.folder.glob("*.sent")):
            if path == self.path:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # a live process holds it
            with os.fdopen(fd) as file:
                for line in file:
                    with contextlib.suppress(ValueError, IndexError):  # a torn last line
                        program, delivery, at, attempt = json.loads(line)
                        records.append(
                            SentRecord(program, delivery, dt.datetime.fromisoformat(at), attempt)
                        )
            files.append(path)
        return records, files

    def close(self) -> None:
        """Closes the file; it is deleted when nothing in it is unrecorded."""
        os.close(self._fd)
        if self.unrecorded == 0:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
