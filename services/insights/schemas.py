"""The shapes of the coordinators' API: pages of rows, rows as CSV, errors."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.insights.health import Thresholds
from services.insights.timeline import Instant, Privacy

Row = TypeVar("Row", bound=BaseModel)


class Problem(BaseModel):
    """What went wrong and what to do."""

    detail: str


class Page(BaseModel, Generic[Row]):
    """One page of a list. Ask again with cursor=next_cursor for the next page (null: no
    more); the response's Link header (rel="next") is that request. offset/next_offset still
    work, but a deep offset costs more and can repeat or skip rows inserted meanwhile."""

    items: list[Row]
    limit: int
    offset: int
    next_offset: int | None = Field(
        description="offset of the next page (null: no more, or the page was asked by cursor)"
    )
    next_cursor: str | None = Field(
        description="opaque; pass as cursor for the rows after this page (null: no more)"
    )


class PairRow(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    pair_id: str
    mentor_id: str
    mentee_id: str
    state: str
    health: str
    risk_score: int
    reasons: list[str]
    formed_at: Instant
    sessions_planned: int
    sessions_held: int
    sessions_missed: int
    checkins_due: int
    checkins_submitted: int
    open_overdue_checkins: int
    overdue_streak: int = Field(
        description="check-ins missed in a row (overdue, unanswered) since the last answered one"
    )
    last_contact_at: Instant | None
    milestones: int
    unschedulable_reason: str | None

    @field_validator("overdue_streak", mode="before")
    @classmethod
    def _streak_length(cls, value: Any) -> Any:
        """The read model keeps the streak's check-ins; the API shows how many."""
        return len(value) if isinstance(value, list) else value


class UnmatchedRow(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    participant_id: str
    display_name: str | None
    timezone: str
    cohort: str | None
    reason: str = Field(validation_alias="unmatched_reason")


class SessionRow(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    session_id: str
    pair_id: str
    kind: str
    start: Instant
    status: str
    held_at: Instant | None


class AssessmentRow(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    cohort: str
    period: str
    dimension: str
    average: float
    responses: int


class ProgramSettingsBody(BaseModel):
    """What coordinators may set for their program."""

    model_config = ConfigDict(extra="forbid")

    privacy: Privacy = Field(
        default=Privacy.COUNTS,
        description="counts: coordinators see that check-ins and feedback came, never what "
        "they say; scores: also progress and ratings; content: also notes and comments",
    )
    thresholds: Thresholds = Thresholds()


def page(
    rows: Sequence[Any],
    model: type[Row],
    *,
    limit: int,
    offset: int,
    by_cursor: bool,
    next_cursor: Callable[[Any], str],
    shown: Callable[[Any], Any] | None = None,
) -> Page[Row]:
    """A page of `limit` rows (one more was asked for, to know whether there is a next);
    `next_cursor` makes the cursor after a row, `shown` what of a row the page shows."""
    more = len(rows) > limit
    items = [model.model_validate(shown(row) if shown else row) for row in rows[:limit]]
    return Page[model](  # type: ignore[valid-type]
        items=items,
        limit=limit,
        offset=offset,
        next_offset=offset + limit if more and not by_cursor else None,
        next_cursor=next_cursor(rows[limit - 1]) if more else None,
    )


def to_csv(rows: Sequence[BaseModel], model: type[BaseModel]) -> str:
    """Rows as CSV with a header (lists joined with '; ', dicts as key=value)."""
    out = io.StringIO()
    writer = csv.writer(out)
    names = list(model.model_fields)
    writer.writerow(names)
    for row in rows:
        values = row.model_dump(mode="json")
        writer.writerow([_cell(values[name]) for name in names])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "; ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}={_cell(v)}" for k, v in value.items())
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value  # a cell starting like a formula is not run by a spreadsheet
    return str(value)
