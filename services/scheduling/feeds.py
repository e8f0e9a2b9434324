"""Per-person ICS feeds: unguessable tokens kept only as hashes, revocable, and what they show."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.scheduling import announcements, invitations, meetings, store
from shared.unit_of_work import UnitOfWork

PATH = "/feeds/{token}.ics"


def token_hash(token: str) -> str:
    """What is stored of a token: a leaked database does not leak working feed URLs."""
    return hashlib.sha256(token.encode()).hexdigest()


async def create(
    session: AsyncSession, *, program_id: str, participant_id: str, now: dt.datetime
) -> str:
    """A new feed token for the person (shown once; only its hash is kept)."""
    await store.person_or_raise(session, program_id=program_id, participant_id=participant_id)
    token = secrets.token_urlsafe(32)
    session.add(
        store.Feed(
            token_hash=token_hash(token), program_id=program_id,
            participant_id=participant_id, created_at=now,
        )
    )  # fmt: skip
    return token


async def revoke(
    session: AsyncSession, *, program_id: str, participant_id: str, now: dt.datetime
) -> int:
    """Revokes every feed of the person; returns how many were live."""
    result = await session.execute(
        update(store.Feed)
        .where(
            store.Feed.program_id == program_id,
            store.Feed.participant_id == participant_id,
            store.Feed.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def owner(session: AsyncSession, token: str) -> store.Feed | None:
    """The live feed a token opens, if any."""
    feed = await session.scalar(
        select(store.Feed).where(store.Feed.token_hash == token_hash(token))
    )
    return feed if feed is not None and feed.revoked_at is None else None


async def calendar(uow: UnitOfWork, feed: store.Feed) -> str:
    """Every session of the person, moves and cancellations included."""
    entries = []
    for meeting in await store.person_meetings(
        uow.session, program_id=feed.program_id, participant_id=feed.participant_id
    ):
        rows = await store.occurrences(uow.session, meeting)
        shown = announcements.feed_entry(
            await meetings.view(uow, meeting), [meetings.occurrence(r) for r in rows],
            uow.clock.now(),
        )  # fmt: skip
        if shown is not None:
            entries.append(shown)
    return invitations.feed("Mentorship sessions", entries)
