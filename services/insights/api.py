"""The coordinators' HTTP API (thin: authorise, query, shape)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.insights import store
from services.insights.overview import Overview, build_overview
from services.insights.tokens import token_digest
from shared.db import Sessions

_bearer = HTTPBearer(auto_error=False, description="a token from `mentorship token create`")


def _sessions(request: Request) -> Sessions:
    running = request.app.state.service.running
    if running is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "insights is starting")
    sessions: Sessions = running.sessions
    return sessions


SessionsDep = Annotated[Sessions, Depends(_sessions)]


async def authorised_program(
    sessions: SessionsDep,
    program_id: Annotated[str, Path(min_length=1, max_length=200)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The program in the path, if the bearer token is scoped to it (401 / 403 otherwise)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "send 'Authorization: Bearer <token>'; create one with "
            "`mentorship token create --program <id>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    async with sessions() as session:
        scope = await store.token_program(session, token_hash=token_digest(credentials.credentials))
    if scope is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "unknown token; create one with `mentorship token create`",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    if scope != program_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this token is for another program")
    return program_id


ProgramDep = Annotated[str, Depends(authorised_program)]


def router() -> APIRouter:
    """The /programs endpoints."""
    api = APIRouter(prefix="/programs", tags=["programs"])

    @api.get("/{program_id}/overview", response_model=Overview)
    async def overview(program_id: ProgramDep, sessions: SessionsDep) -> Overview:
        """Participants, pairs formed, sessions scheduled and emails sent for one program."""
        async with sessions() as session:
            counts = await store.overview_counts(session, program_id=program_id)
            seen = await store.events_seen(session, program_id=program_id)
        return build_overview(program_id, counts, seen)

    return api
