"""A pair's timeline as a coordinator may see it: what each program lets out of the pair.

Counts and the fact that something happened are always visible; what people wrote (check-in
notes and progress, feedback comments, session takeaways) stays with the pair unless the
program's privacy level lets coordinators see it.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands instants back without their zone; every instant insights keeps is UTC
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


Instant = Annotated[dt.datetime, AfterValidator(_utc)]


class Privacy(StrEnum):
    """How much of a pair's own words coordinators see (per program; default COUNTS)."""

    COUNTS = "counts"  # that a check-in came, never what it says
    SCORES = "scores"  # also progress and ratings (numbers)
    CONTENT = "content"  # also notes, comments and takeaways


class TimelineEntry(BaseModel):
    """One thing that happened to the pair."""

    model_config = ConfigDict(frozen=True)

    at: Instant
    kind: str
    summary: str
    scores: dict[str, Any] | None = None
    content: str | None = None


def visible(
    *,
    at: dt.datetime,
    kind: str,
    summary: str,
    scores: dict[str, Any] | None,
    content: str | None,
    privacy: Privacy,
) -> TimelineEntry:
    """The entry with what the program's privacy level hides left out."""
    return TimelineEntry(
        at=at,
        kind=kind,
        summary=summary,
        scores=scores if privacy in (Privacy.SCORES, Privacy.CONTENT) else None,
        content=content if privacy is Privacy.CONTENT else None,
    )
