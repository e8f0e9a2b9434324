"""Module-level warm-ups for CPU-pool tests (a worker imports them by name)."""

from __future__ import annotations

import os

WARMED: set[int] = set()  # in a worker: whether its warm-up ran there


def note_pid() -> None:
    WARMED.add(os.getpid())


def fail() -> None:
    raise RuntimeError("this warm-up always fails")


def warmed_here() -> tuple[int, bool]:
    return os.getpid(), os.getpid() in WARMED
