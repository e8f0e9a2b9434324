"""Engine and session factory: SQLite file per service by default, PostgreSQL by URL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, Table, event, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

Sessions = async_sessionmaker[AsyncSession]


def is_sqlite(engine: AsyncEngine) -> bool:
    """Whether the engine talks to SQLite (no SKIP LOCKED, one writer)."""
    return engine.dialect.name == "sqlite"


def make_engine(url: str, *, schema: str | None = None) -> AsyncEngine:
    """An async engine; on PostgreSQL, `schema` becomes the search path of every connection."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
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
    if schema and parsed.get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"server_settings": {"search_path": schema}}
    return create_async_engine(parsed, **kwargs)


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
