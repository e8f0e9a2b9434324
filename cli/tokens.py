"""Creating coordinators' tokens in insights' database."""

from __future__ import annotations

import datetime as dt

from services.insights import store
from services.insights.tokens import new_token, token_digest
from shared.db import create_schema, make_engine, make_sessions
from shared.settings import Settings


async def create_token(settings: Settings, *, program_id: str, label: str) -> str:
    """Stores a new token's digest for the program and returns the token itself."""
    engine = make_engine(settings.database_url_for("insights"), schema="insights")
    try:
        await create_schema(engine, store.Base.metadata, schema="insights")
        token = new_token()
        async with make_sessions(engine)() as session, session.begin():
            await store.add_token(
                session,
                token_hash=token_digest(token),
                program_id=program_id,
                label=label,
                created_at=dt.datetime.now(dt.UTC),
            )
        return token
    finally:
        await engine.dispose()
