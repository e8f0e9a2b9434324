"""Engine and session factory: SQLite file per service by default, PostgreSQL by URL."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, MetaData, Table, and_, event, false, or_, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import QueryableAttribute

Sessions = async_sessionmaker[AsyncSession]


def is_sqlite(engine: AsyncEngine) -> bool:
    """Whether the engine talks to SQLite (no SKIP LOCKED, one writer)."""
    return engine.dialect.name == "sqlite"


def make_engine(url: str, *, schema: str | None = None) -> AsyncEngine:
    """An async engine; on PostgreSQL, `schema` becomes the search path of every connection."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
        # SQLite has one writer: with one pooled connection, transactions queue for it in
        # asyncio instead of spinning in SQLite's busy handler (tens of times slower)
        kwargs |= {"pool_size": 1, "max_overflow": 0, "pool_timeout": 120}
        engine = create_async_engine(parsed, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    if parsed.get_backend_name() == "postgresql":
        # custom plans always: asyncpg prepares every statement, and after five executions
        # PostgreSQL may switch a prepared statement to a generic plan, planned without the
        # parameters' values; for a 500-key lookup (IN or = ANY) on a table whose statistics
        # are not in yet (a new program, a replay into an empty database) that plan took
        # 70-150 ms an execution against 2 ms for the custom one: a third of a consumer's time
        server_settings = {"plan_cache_mode": "force_custom_plan"}
        if schema:
            server_settings["search_path"] = schema
        kwargs["connect_args"] = {"server_settings": server_settings}
    # a server connection can drop while pooled (restart, failover): ping it at checkout; a
    # SQLite file cannot, and the ping was a thread round trip before every transaction
    return create_async_engine(parsed, pool_pre_ping=True, **kwargs)


async def create_schema(engine: AsyncEngine, metadata: MetaData, *, schema: str | None) -> None:
    """Creates the service's schema (PostgreSQL) and tables if they do not exist yet."""
    async with engine.begin() as conn:
        if schema and engine.dialect.name == "postgresql":
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        await conn.run_sync(metadata.create_all)


def upsert_insert(session: AsyncSession) -> Callable[[Table], Any]:
    """The INSERT construct with ON CONFLICT clauses for the session's database."""
    dialect = session.get_bind().dialect.name
    return postgresql_insert if dialect == "postgresql" else sqlite_insert


def make_sessions(engine: AsyncEngine) -> Sessions:
    """A session factory whose objects stay usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


def keys_in(
    columns: Sequence[ColumnElement[Any] | QueryableAttribute[Any]],
    keys: Iterable[tuple[Any, ...]],
) -> Any:
    """A WHERE clause matching rows whose `columns` equal one of `keys` (composite keys).

    Not a row-value IN list: PostgreSQL plans `(a, b) IN ((..), (..), ...)` as an OR of every
    term, compared against every row the index range gives; 500 keys cost it about 70 ms a batch
    (a third of a consumer's time). Grouped by the leading columns instead (a batch's keys mostly
    share their program), each group is `a = :a AND b IN (...)`: one index range per group.
    """
    *leading, last = columns
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for key in keys:
        groups.setdefault(tuple(key[:-1]), []).append(key[-1])
    clauses = [
        and_(
            *(column == value for column, value in zip(leading, prefix, strict=True)),
            last.in_(values),
        )
        for prefix, values in groups.items()
    ]
    return or_(*clauses) if clauses else false()
