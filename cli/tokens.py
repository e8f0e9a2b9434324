"""Creating coordinators' tokens in the database of the insights that runs, never in a new one."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import Connection, make_url

from cli.runtime import running_in, where_others_run
from services.insights import store
from services.insights.tokens import new_token, token_digest
from shared.clock import Clock, SystemClock
from shared.db import make_engine, make_sessions
from shared.settings import Settings

TOKENS_TABLE = store.ApiToken.__tablename__


class TokenStoreMissing(Exception):
    """Insights' database or its tokens table is not there; the message says where we looked."""


def _pointers(settings: Settings) -> str:
    """How to point the command at the database of the insights that runs."""
    data_dir = settings.data_dir.resolve()
    here = running_in(data_dir)
    if here is not None:
        return f"{here.summary()} runs on {data_dir}: wait until it is ready, then retry"
    return (
        f"run it where `mentorship up` runs or set MENTORSHIP_DATA_DIR to its data directory "
        f"(now {data_dir}), or MENTORSHIP_INSIGHTS_DATABASE_URL / MENTORSHIP_DATABASE_URL to "
        f"insights' database{where_others_run(data_dir)}"
    )


def _has_tokens_table(connection: Connection, schema: str | None) -> bool:
    return bool(inspect(connection).has_table(TOKENS_TABLE, schema=schema))


def existing_insights_database(settings: Settings) -> str:
    """Insights' database URL; for SQLite only if the file exists (never make an empty one)."""
    url = settings.database_url_for("insights")
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not (
        parsed.database and Path(parsed.database).is_file()
    ):
        # connecting would create an empty database the running insights never reads
        raise TokenStoreMissing(f"no insights database at {parsed.database}: {_pointers(settings)}")
    return url


async def create_token(
    settings: Settings, *, program_id: str, label: str, clock: Clock | None = None
) -> str:
    """Stores a new token's digest for the program and returns the token itself."""
    url = existing_insights_database(settings)
    sqlite = make_url(url).get_backend_name() == "sqlite"
    engine = make_engine(url, schema="insights")
    try:
        async with engine.connect() as conn:
            schema = None if sqlite else "insights"
            if not await conn.run_sync(_has_tokens_table, schema):
                raise TokenStoreMissing(
                    f"insights' database {engine.url.render_as_string(hide_password=True)} has "
                    f"no {TOKENS_TABLE} table (insights never started on it, or it is another "
                    f"database): start insights once (`mentorship up`) or run "
                    f"`mentorship migrate --service insights`; {_pointers(settings)}"
                )
        token = new_token()
        async with make_sessions(engine)() as session, session.begin():
            await store.add_token(
                session,
                token_hash=token_digest(token),
                program_id=program_id,
                label=label,
                created_at=(clock or SystemClock()).now(),
            )
        return token
    finally:
        await engine.dispose()
