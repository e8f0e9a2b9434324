"""Stored coordinators' tokens: created, configured, listed and revoked (digests only)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.insights.store import ApiToken, utc
from services.insights.tokens import token_digest, token_id

CONFIGURED = "configured"


async def add_token(
    session: AsyncSession,
    *,
    token: str,
    program_id: str,
    label: str,
    created_at: dt.datetime,
    expires_at: dt.datetime | None = None,
) -> ApiToken:
    """Stores a new token's digest; returns its row (the token itself is not kept)."""
    digest = token_digest(token)
    row = ApiToken(
        token_hash=digest,
        token_id=token_id(digest),
        program_id=program_id,
        label=label,
        created_at=created_at,
        expires_at=expires_at,
    )
    session.add(row)
    return row


async def store_configured(
    session: AsyncSession, configured: dict[str, str], *, now: dt.datetime
) -> None:
    """Makes the configured tokens (token -> program) the valid configured ones: new ones
    stored, changed ones re-scoped, those no longer configured revoked."""
    wanted = {token_digest(token): program for token, program in configured.items()}
    rows = await session.scalars(select(ApiToken).where(ApiToken.label == CONFIGURED))
    for row in rows.all():
        program = wanted.pop(row.token_hash, None)
        if program is None:
            row.revoked_at = row.revoked_at or now
        else:
            row.program_id, row.revoked_at = program, None
    for digest, program in wanted.items():
        session.add(
            ApiToken(
                token_hash=digest,
                token_id=token_id(digest),
                program_id=program,
                label=CONFIGURED,
                created_at=now,
            )
        )


async def list_tokens(session: AsyncSession, *, program_id: str | None = None) -> list[ApiToken]:
    """Every stored token (of one program), oldest first."""
    query = select(ApiToken).order_by(ApiToken.created_at, ApiToken.token_hash)
    if program_id is not None:
        query = query.where(ApiToken.program_id == program_id)
    return list((await session.scalars(query)).all())


async def revoke(session: AsyncSession, *, token_id: str, now: dt.datetime) -> ApiToken | None:
    """Revokes the token with this public id (or a token's full text); None if there is none."""
    key = token_digest(token_id)[:12] if len(token_id) > 12 else token_id
    row = await session.scalar(select(ApiToken).where(ApiToken.token_id == key))
    if row is not None and row.revoked_at is None:
        row.revoked_at = now
    return row


def status_of(row: ApiToken, now: dt.datetime) -> str:
    """'valid', 'expired' or 'revoked'."""
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and utc(row.expires_at) <= now:
        return "expired"
    return "valid"
