"""The coordinators' HTTP API (thin: authorise, query, shape). Every operation needs a bearer
token scoped to the program in its path: 401 without a valid one, 403 for another program."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.insights import queries, writes
from services.insights.equity import GroupFigures, figures
from services.insights.health import Health
from services.insights.overview import Overview, WeekPoint, build_overview, weekly
from services.insights.schemas import (
    AssessmentRow,
    Page,
    PairRow,
    Problem,
    ProgramSettingsBody,
    SessionRow,
    UnmatchedRow,
    page,
    to_csv,
)
from services.insights.store import ProgramSettings
from services.insights.timeline import TimelineEntry, visible
from services.insights.tokens import Grant, token_digest
from shared.db import Sessions
from shared.service import Running

_bearer = HTTPBearer(auto_error=False, description="a token from `mentorship token create`")
TOKEN_COOKIE = "mentorship_token"

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "no token, or an unknown, expired or revoked one"},
    403: {"model": Problem, "description": "the token is for another program"},
}
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "the list"}
}
Limit = Annotated[int, Query(ge=1, le=1000, description="rows per page")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="rows to skip")]
Format = Annotated[Literal["json", "csv"], Query(description="csv: the page as CSV")]
ProgramId = Annotated[str, Path(min_length=1, max_length=200)]


def running_service(request: Request) -> Running:
    running: Running | None = request.app.state.service.running
    if running is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "insights is starting")
    return running


def _sessions(request: Request) -> Sessions:
    sessions: Sessions = running_service(request).sessions
    return sessions


SessionsDep = Annotated[Sessions, Depends(_sessions)]


def unauthorised(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def valid_grant(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Grant:
    """The grant of the request's token (bearer header, or the dashboard's cookie); 401 if
    there is none valid."""
    token = credentials.credentials if credentials else request.cookies.get(TOKEN_COOKIE)
    if not token:
        raise unauthorised(
            "send 'Authorization: Bearer <token>'; a coordinator gets one with "
            "`mentorship token create --program <id>`"
        )
    running = running_service(request)
    async with running.sessions() as session:
        grant = await queries.grant(session, token_hash=token_digest(token))
    if grant is None:
        raise unauthorised("unknown token; create one with `mentorship token create`")
    if (refusal := grant.refusal(running.clock.now())) is not None:
        raise unauthorised(refusal)
    return grant


async def authorised_program(
    request: Request,
    program_id: ProgramId,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The program in the path, if the bearer token is scoped to it (401 / 403 otherwise)."""
    grant = await valid_grant(request, credentials)
    if grant.program_id != program_id:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "this token is for another program; use a token created for this one",
        )
    return program_id


ProgramDep = Annotated[str, Depends(authorised_program)]


def _csv_or(rows: list[BaseModel], model: type[BaseModel], fmt: str, name: str) -> Response | None:
    if fmt != "csv":
        return None
    return Response(
        to_csv(rows, model),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


def _today(request: Request) -> dt.date:
    return running_service(request).clock.now().date()


async def _overview(session: AsyncSession, program_id: str, today: dt.date) -> Overview:
    since = today - dt.timedelta(days=90)
    return build_overview(
        program_id,
        await queries.counters(session, program_id=program_id),
        await queries.daily(
            session,
            program_id=program_id,
            metrics=("sessions.planned", "sessions.held", "sessions.missed"),
            since=since,
        ),
        await queries.assessments(session, program_id=program_id),
        await queries.events_seen(session, program_id=program_id),
        today=today,
    )


class Charts(BaseModel):
    """What the dashboard draws."""

    weeks: list[WeekPoint]
    pairs_by_health: dict[str, int]


def router() -> APIRouter:
    """The /programs endpoints."""
    api = APIRouter(prefix="/programs/{program_id}", tags=["programs"], responses=AUTH_RESPONSES)

    @api.get("/overview", response_model=Overview)
    async def overview(program_id: ProgramDep, sessions: SessionsDep, request: Request) -> Overview:
        """Participants, matching, pairs by state and health, sessions, check-ins, milestones,
        feedback, assessments and emails of one program."""
        async with sessions() as session:
            return await _overview(session, program_id, _today(request))

    @api.get("/charts", response_model=Charts)
    async def charts(
        program_id: ProgramDep,
        sessions: SessionsDep,
        request: Request,
        weeks: Annotated[int, Query(ge=1, le=104)] = 12,
    ) -> Charts:
        """Sessions held and check-in adherence per week, and pairs by health."""
        today = _today(request)
        async with sessions() as session:
            daily = await queries.daily(
                session,
                program_id=program_id,
                metrics=("sessions.held", "checkins.due", "checkins.submitted"),
                since=today - dt.timedelta(weeks=weeks, days=7),
            )
            counters = await queries.counters(session, program_id=program_id)
        by_health = {
            h.value: int(counters.get(f"pairs.health.{h.value}", 0))
            for h in (Health.HEALTHY, Health.WATCH, Health.AT_RISK)
        }
        return Charts(weeks=weekly(daily, today=today, weeks=weeks), pairs_by_health=by_health)

    @api.get("/pairs", response_model=Page[PairRow], responses=CSV_RESPONSE)
    async def pairs(
        program_id: ProgramDep,
        sessions: SessionsDep,
        health: Annotated[Health | None, Query(description="only pairs of this health")] = None,
        limit: Limit = 100,
        offset: Offset = 0,
        format: Format = "json",
    ) -> Any:
        """The program's pairs, riskiest first, with the reasons of their health."""
        async with sessions() as session:
            rows = await queries.pairs(
                session,
                program_id=program_id,
                health=health.value if health else None,
                limit=limit + 1,
                offset=offset,
            )
        result = page(rows, PairRow, limit=limit, offset=offset)
        return _csv_or(list(result.items), PairRow, format, "pairs") or result

    @api.get("/at-risk", response_model=Page[PairRow], responses=CSV_RESPONSE)
    async def at_risk(
        program_id: ProgramDep,
        sessions: SessionsDep,
        limit: Limit = 100,
        offset: Offset = 0,
        format: Format = "json",
    ) -> Any:
        """The pairs at risk now, riskiest first, with their reasons."""
        async with sessions() as session:
            rows = await queries.pairs(
                session,
                program_id=program_id,
                health=Health.AT_RISK,
                limit=limit + 1,
                offset=offset,
            )
        result = page(rows, PairRow, limit=limit, offset=offset)
        return _csv_or(list(result.items), PairRow, format, "at-risk") or result

    @api.get("/unmatched-mentees", response_model=Page[UnmatchedRow], responses=CSV_RESPONSE)
    async def unmatched(
        program_id: ProgramDep,
        sessions: SessionsDep,
        limit: Limit = 100,
        offset: Offset = 0,
        format: Format = "json",
    ) -> Any:
        """Mentees without a pair, each with the reason insights knows."""
        async with sessions() as session:
            rows = await queries.unmatched_mentees(
                session, program_id=program_id, limit=limit + 1, offset=offset
            )
        result = page(rows, UnmatchedRow, limit=limit, offset=offset)
        return _csv_or(list(result.items), UnmatchedRow, format, "unmatched-mentees") or result

    @api.get("/sessions", response_model=Page[SessionRow], responses=CSV_RESPONSE)
    async def sessions_list(
        program_id: ProgramDep,
        sessions: SessionsDep,
        status_: Annotated[
            Literal["planned", "held", "missed", "cancelled"] | None, Query(alias="status")
        ] = None,
        limit: Limit = 100,
        offset: Offset = 0,
        format: Format = "json",
    ) -> Any:
        """The program's sessions, latest first."""
        async with sessions() as session:
            rows = await queries.sessions(
                session, program_id=program_id, status=status_, limit=limit + 1, offset=offset
            )
        result = page(rows, SessionRow, limit=limit, offset=offset)
        return _csv_or(list(result.items), SessionRow, format, "sessions") or result

    @api.get(
        "/pairs/{pair_id}/timeline",
        response_model=Page[TimelineEntry],
        responses={**CSV_RESPONSE, 404: {"model": Problem, "description": "no such pair"}},
    )
    async def pair_timeline(
        program_id: ProgramDep,
        sessions: SessionsDep,
        pair_id: Annotated[str, Path(min_length=1, max_length=200)],
        limit: Limit = 100,
        offset: Offset = 0,
        format: Format = "json",
    ) -> Any:
        """What happened to one pair, at the level of detail the program allows."""
        async with sessions() as session:
            if await queries.pair(session, program_id=program_id, pair_id=pair_id) is None:
                raise HTTPException(404, f"program {program_id!r} has no pair {pair_id!r}")
            privacy, _ = await writes.program_settings(session, program_id)
            rows = await queries.timeline(
                session, program_id=program_id, pair_id=pair_id, limit=limit + 1, offset=offset
            )
        entries = [
            visible(
                at=row.at,
                kind=row.kind,
                summary=row.summary,
                scores=row.scores,
                content=row.content,
                privacy=privacy,
            )
            for row in rows
        ]
        result = page(entries, TimelineEntry, limit=limit, offset=offset)
        return _csv_or(list(result.items), TimelineEntry, format, f"timeline-{pair_id}") or result

    @api.get("/assessments", response_model=list[AssessmentRow], responses=CSV_RESPONSE)
    async def assessment_list(
        program_id: ProgramDep, sessions: SessionsDep, format: Format = "json"
    ) -> Any:
        """Average assessment scores (relevance, impact, satisfaction, fairness ...) by cohort
        and month."""
        async with sessions() as session:
            cells = await queries.assessment_cells(session, program_id=program_id)
        rows = [
            AssessmentRow(
                cohort=c.cohort,
                period=c.period,
                dimension=c.dimension,
                average=round(c.total / c.responses, 2),
                responses=c.responses,
            )
            for c in cells
            if c.responses
        ]
        return _csv_or(list(rows), AssessmentRow, format, "assessments") or rows

    @api.get("/equity", response_model=list[GroupFigures], responses=CSV_RESPONSE)
    async def equity(
        program_id: ProgramDep,
        sessions: SessionsDep,
        cohort: Annotated[str | None, Query(max_length=200)] = None,
        format: Format = "json",
    ) -> Any:
        """Opportunities per capita, match quality and session adherence per consented
        demographic group; groups under 5 people (or inferable as such) suppressed, gaps
        flagged."""
        async with sessions() as session:
            whole = await queries.equity_totals(session, program_id=program_id, cohort="")
            part = (
                await queries.equity_totals(session, program_id=program_id, cohort=cohort)
                if cohort
                else whole
            )
        rows: list[GroupFigures] = []
        for attribute, totals in sorted(part.items()):
            sizes = {g: t.people for g, t in whole.get(attribute, {}).items()} if cohort else None
            rows += figures(attribute, totals, whole=sizes)
        return _csv_or(list(rows), GroupFigures, format, "equity") or rows

    @api.get("/settings", response_model=ProgramSettingsBody)
    async def get_settings(program_id: ProgramDep, sessions: SessionsDep) -> ProgramSettingsBody:
        """The program's privacy level and health thresholds."""
        async with sessions() as session:
            privacy, thresholds = await writes.program_settings(session, program_id)
        return ProgramSettingsBody(privacy=privacy, thresholds=thresholds)

    @api.put("/settings", response_model=ProgramSettingsBody)
    async def put_settings(
        program_id: ProgramDep, body: ProgramSettingsBody, request: Request, sessions: SessionsDep
    ) -> ProgramSettingsBody:
        """Sets the program's privacy level and thresholds (pairs are scored with the new
        thresholds as their next event arrives)."""
        now = running_service(request).clock.now()
        async with sessions() as session, session.begin():
            row = await session.get(ProgramSettings, program_id)
            values = body.thresholds.model_dump(mode="json")
            if row is None:
                session.add(
                    ProgramSettings(
                        program_id=program_id,
                        privacy=body.privacy,
                        thresholds=values,
                        updated_at=now,
                    )
                )
            else:
                row.privacy, row.thresholds, row.updated_at = body.privacy, values, now
        return body

    return api
