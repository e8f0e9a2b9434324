"""insights' read models (typed tables with the indexes their queries need) and API tokens.

Every record is keyed by (program_id, id). Counters are split in shards, one per consumer
(the consumer's task), summed when read: concurrent consumers never wait for, or deadlock on,
one another's counter rows on PostgreSQL. Counters (`program_counters`, `daily_counters`,
`equity_counters`, `assessment_sums`) are added to with `uow.upsert(..., add=...)`, so a batch
writes them in one statement per table and an overview reads a few dozen rows whatever the size
of the program. Reads for the API are in queries.py, writes from events in writes.py.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.outbox import add_delivery_tables
from shared.timers import add_timer_table


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


delivery = add_delivery_tables(Base.metadata)
timers = add_timer_table(Base.metadata)


def utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands DateTime(timezone=True) back naive; every instant stored here is UTC."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class EventCount(Base):
    """How many events of each type a program has seen."""

    __tablename__ = "event_counts"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    subject: Mapped[str] = mapped_column(String(200), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class ProgramCounter(Base):
    """One number of a program's overview (participants.mentee, pairs.state.formed, ...)."""

    __tablename__ = "program_counters"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    metric: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[float] = mapped_column(Float, default=0)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True, default=0, server_default="0")


class DailyCounter(Base):
    """One number per day (sessions held on that day, ...): windows and weekly charts."""

    __tablename__ = "daily_counters"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    metric: Mapped[str] = mapped_column(String(80), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True, default=0, server_default="0")
    value: Mapped[int] = mapped_column(Integer, default=0)


class ParticipantView(Base):
    """A participant: role, zone, whether matched, consented demographics."""

    __tablename__ = "participants"
    __table_args__ = (
        Index("ix_participants_unmatched", "program_id", "role", "matched", "participant_id"),
    )

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    participant_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    role: Mapped[str] = mapped_column(String(10))
    timezone: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    cohort: Mapped[str | None] = mapped_column(String(200), nullable=True)
    matched: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    registered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    unmatched_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    unmatched_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    demographics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


# pair, session and delivery ids are minted by the services from program-scoped ids, so one id
# names one record in one program: unique on its own, it is found (or refused) in one lookup


class PairView(Base):
    """A pair, with the facts its health is computed from and the health itself."""

    __tablename__ = "pairs"
    __table_args__ = (
        UniqueConstraint("pair_id", name="uq_pairs_pair_id"),
        Index("ix_pairs_risk", "program_id", "risk_score", "pair_id"),
        Index("ix_pairs_health_risk", "program_id", "health", "risk_score", "pair_id"),
    )

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    pair_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    mentor_id: Mapped[str] = mapped_column(String(200))
    mentee_id: Mapped[str] = mapped_column(String(200))
    formed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(12), default="formed", server_default="formed")
    state_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    proposal_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    quality_counted: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    first_session_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_contact_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    sessions_planned: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    sessions_held: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    sessions_missed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    no_shows_mentor: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    no_shows_mentee: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    checkins_due: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    checkins_submitted: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    open_overdue_checkins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # the check-ins missed in a row: [due (ISO), check-in id] of each overdue, unanswered one
    # due after the latest answered one (reported_due_at); projections.streak_missed/answered
    overdue_streak: Mapped[list[list[str]]] = mapped_column(JSON, default=list, server_default="[]")
    reported_due_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    feedback_from_mentor: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    feedback_from_mentee: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    fit_rating_sum: Mapped[float] = mapped_column(Float, default=0, server_default="0")
    fit_rating_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    milestones: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    unschedulable_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    unschedulable_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    risk_score: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    health: Mapped[str] = mapped_column(String(10), default="healthy", server_default="healthy")
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    at_risk_crossings: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # the latest instant of any event about the pair: health is scored as of then, so the
    # score does not depend on the order events of several subjects arrived in
    scored_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class SessionView(Base):
    __tablename__ = "sessions"
    __table_args__ = (
        UniqueConstraint("session_id", name="uq_sessions_session_id"),
        Index("ix_sessions_program_start", "program_id", "start", "session_id"),
        Index("ix_sessions_status_start", "program_id", "status", "start", "session_id"),
    )

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    pair_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    start: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    sequence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    status: Mapped[str] = mapped_column(String(10), default="planned", server_default="planned")
    held_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class CheckinView(Base):
    __tablename__ = "checkins"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    checkin_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    pair_id: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10))
    due_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # reported overdue at some point (counted once, whether before or after its answer)
    was_overdue: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class TimelineRow(Base):
    """One entry of a pair's timeline; `scores` and `content` are shown per program privacy."""

    __tablename__ = "timeline"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    pair_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(60))
    summary: Mapped[str] = mapped_column(Text)
    scores: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    content: Mapped[str | None] = mapped_column(Text, nullable=True)


class AssessmentSum(Base):
    """Sums of one assessment dimension per cohort and month."""

    __tablename__ = "assessment_sums"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    cohort: Mapped[str] = mapped_column(String(200), primary_key=True)
    period: Mapped[str] = mapped_column(String(7), primary_key=True)  # YYYY-MM
    dimension: Mapped[str] = mapped_column(String(80), primary_key=True)
    total: Mapped[float] = mapped_column(Float, default=0)
    responses: Mapped[int] = mapped_column(Integer, default=0)


class EquityCounter(Base):
    """One sum per demographic group: people, opportunities, matches, sessions."""

    __tablename__ = "equity_counters"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    cohort: Mapped[str] = mapped_column(String(200), primary_key=True)
    attribute: Mapped[str] = mapped_column(String(80), primary_key=True)
    group: Mapped[str] = mapped_column(String(200), primary_key=True)
    metric: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[float] = mapped_column(Float, default=0)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True, default=0, server_default="0")


class DeliveryView(Base):
    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("delivery_id", name="uq_deliveries_delivery_id"),)

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    status: Mapped[str] = mapped_column(String(20))


class RoundView(Base):
    __tablename__ = "matching_rounds"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    round_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    pairs_formed: Mapped[int] = mapped_column(Integer)
    unmatched_mentees: Mapped[int] = mapped_column(Integer)
    completed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class ProgramSettings(Base):
    """A program's privacy level and health thresholds, set by its coordinators."""

    __tablename__ = "program_settings"

    program_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    privacy: Mapped[str] = mapped_column(String(10))
    thresholds: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class ApiToken(Base):
    """A coordinator's bearer token, stored as its SHA-256 digest, scoped to one program."""

    __tablename__ = "api_tokens"
    __table_args__ = (UniqueConstraint("token_id", name="uq_api_tokens_token_id"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    program_id: Mapped[str] = mapped_column(String(200), index=True)
    label: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    # a short public name to list and revoke it by (the digest's first 12 hex digits)
    token_id: Mapped[str | None] = mapped_column(String(12), nullable=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
