"""The coordinators' HTTP API (thin: authorise, query, shape). Every operation needs a bearer
token scoped to the program in its path: 401 without a valid one, 403 for another program."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.insights import paging, queries, writes
from services.insights.equity import GroupFigures, figures, publication
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
LINK = {
    "Link": {
        "description": '<the next page\'s path and query>; rel="next" (absent on the last page); '
        "for CSV the only way to the next page",
        "schema": {"type": "string"},
    }
}
LIST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {**CSV_RESPONSE[200], "headers": LINK, "description": "one page of the list"},
    400: {
        "model": Problem,
        "description": "a cursor this list did not hand out, or both cursor and offset",
    },
}
Limit = Annotated[int, Query(ge=1, le=1000, description="rows per page")]
Offset = Annotated[
    int,
    Query(
        ge=0,
        le=10_000_000,
        description="rows to skip (kept for compatibility; prefer cursor: deep offsets cost "
        "more, and rows inserted meanwhile shift the pages)",
    ),
]
Cursor = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=2000,
        description="the previous page's next_cursor: the rows after its last one, in order",
    ),
]
Format = Annotated[Literal["json", "csv"], Query(description="csv: the page as CSV")]
ProgramId = Annotated[str, Path(min_length=1, max_length=200)]


def running_service(request: Request) -> Running:
    running: Running | None = request.app.state.service.running
    if running is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "insights is starting")
    return running


def unauthorised(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def _grant_in(
    session: AsyncSession,
    request: Request,
    credentials: HTTPAuthorizationCredentials | None,
    now: dt.datetime,
) -> Grant:
    token = credentials.credentials if credentials else request.cookies.get(TOKEN_COOKIE)
    if not token:
        raise unauthorised(
            "send 'Authorization: Bearer <token>'; a coordinator gets one with "
            "`mentorship token create --program <id>`"
        )
    grant = await queries.grant(session, token_hash=token_digest(token))
    if grant is None:
        raise unauthorised("unknown token; create one with `mentorship token create`")
    if (refusal := grant.refusal(now)) is not None:
        raise unauthorised(refusal)
    return grant


async def valid_grant(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Grant:
    """The grant of the request's token (bearer header, or the dashboard's cookie); 401 if
    there is none valid."""
    running = running_service(request)
    async with running.sessions() as session:
        return await _grant_in(session, request, credentials, running.clock.now())


@dataclass(frozen=True)
class ProgramRead:
    """An authorised request's program, and the session its token was checked in."""

    program_id: str
    session: AsyncSession


async def authorised_program(
    request: Request,
    program_id: ProgramId,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> AsyncIterator[ProgramRead]:
    """The program in the path, if the bearer token is scoped to it (401 / 403 otherwise),
    with the session the token was checked in: the request reads on the same connection (one
    pool checkout per request)."""
    running = running_service(request)
    async with running.sessions() as session:
        grant = await _grant_in(session, request, credentials, running.clock.now())
        if grant.program_id != program_id:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "this token is for another program; use a token created for this one",
            )
        yield ProgramRead(program_id, session)


ProgramDep = Annotated[ProgramRead, Depends(authorised_program)]


def _csv_or(rows: list[BaseModel], model: type[BaseModel], fmt: str, name: str) -> Response | None:
    if fmt != "csv":
        return None
    return Response(
        to_csv(rows, model),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


def _after(
    cursor: str | None, offset: int, list_name: str, key: Sequence[paging.KeyPart]
) -> tuple[Any, ...] | None:
    """The sort key a list's page starts after (None: from the start, or by offset)."""
    if cursor is None:
        return None
    if offset:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            "send cursor or offset, not both: follow next_cursor without offset",
        )
    try:
        return paging.decode(cursor, list_name, key)
    except paging.BadCursor as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from None


def _listed(
    request: Request,
    response: Response,
    result: Page[Any],
    model: type[BaseModel],
    fmt: str,
    name: str,
) -> Any:
    """The page as JSON or CSV, with a Link header to the next page."""
    headers: dict[str, str] = {}
    if result.next_cursor is not None:
        url = request.url.remove_query_params(["offset", "cursor"]).include_query_params(
            cursor=result.next_cursor
        )
        headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
    csv = _csv_or(list(result.items), model, fmt, name)
    if csv is not None:
        csv.headers.update(headers)
        return csv
    response.headers.update(headers)
    return result


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
    async def overview(program: ProgramDep, request: Request) -> Overview:
        """Participants, matching, pairs by state and health, sessions, check-ins, milestones,
        feedback, assessments and emails of one program."""
        return await _overview(program.session, program.program_id, _today(request))

    @api.get("/charts", response_model=Charts)
    async def charts(
        program: ProgramDep,
        request: Request,
        weeks: Annotated[int, Query(ge=1, le=104)] = 12,
    ) -> Charts:
        """Sessions held and check-in adherence per week, and pairs by health."""
        today = _today(request)
        daily = await queries.daily(
            program.session,
            program_id=program.program_id,
            metrics=("sessions.held", "checkins.due", "checkins.submitted"),
            since=today - dt.timedelta(weeks=weeks, days=7),
        )
        counters = await queries.counters(program.session, program_id=program.program_id)
        by_health = {
            h.value: int(counters.get(f"pairs.health.{h.value}", 0))
            for h in (Health.HEALTHY, Health.WATCH, Health.AT_RISK)
        }
        return Charts(weeks=weekly(daily, today=today, weeks=weeks), pairs_by_health=by_health)

    async def pair_page(
        program: ProgramRead,
        request: Request,
        response: Response,
        health: Health | None,
        limit: int,
        offset: int,
        cursor: str | None,
        fmt: str,
        name: str,
    ) -> Any:
        list_name = f"pairs:{health.value if health else ''}"
        after = _after(cursor, offset, list_name, (int, str))
        rows = await queries.pairs(
            program.session,
            program_id=program.program_id,
            health=health.value if health else None,
            limit=limit + 1,
            offset=offset,
            after=after,
        )
        result = page(
            rows,
            PairRow,
            limit=limit,
            offset=offset,
            by_cursor=after is not None,
            next_cursor=lambda r: paging.encode(list_name, (r.risk_score, r.pair_id)),
        )
        return _listed(request, response, result, PairRow, fmt, name)

    @api.get("/pairs", response_model=Page[PairRow], responses=LIST_RESPONSES)
    async def pairs(
        program: ProgramDep,
        request: Request,
        response: Response,
        health: Annotated[Health | None, Query(description="only pairs of this health")] = None,
        limit: Limit = 100,
        offset: Offset = 0,
        cursor: Cursor = None,
        format: Format = "json",
    ) -> Any:
        """The program's pairs, riskiest first, with the reasons of their health."""
        return await pair_page(
            program, request, response, health, limit, offset, cursor, format, "pairs"
        )

    @api.get("/at-risk", response_model=Page[PairRow], responses=LIST_RESPONSES)
    async def at_risk(
        program: ProgramDep,
        request: Request,
        response: Response,
        limit: Limit = 100,
        offset: Offset = 0,
        cursor: Cursor = None,
        format: Format = "json",
    ) -> Any:
        """The pairs at risk now, riskiest first, with their reasons."""
        return await pair_page(
            program, request, response, Health.AT_RISK, limit, offset, cursor, format, "at-risk"
        )

    @api.get("/unmatched-mentees", response_model=Page[UnmatchedRow], responses=LIST_RESPONSES)
    async def unmatched(
        program: ProgramDep,
        request: Request,
        response: Response,
        limit: Limit = 100,
        offset: Offset = 0,
        cursor: Cursor = None,
        format: Format = "json",
    ) -> Any:
        """Mentees without a pair, each with the reason insights knows."""
        after = _after(cursor, offset, "unmatched", (str,))
        rows = await queries.unmatched_mentees(
            program.session,
            program_id=program.program_id,
            limit=limit + 1,
            offset=offset,
            after=after,
        )
        result = page(
            rows,
            UnmatchedRow,
            limit=limit,
            offset=offset,
            by_cursor=after is not None,
            next_cursor=lambda r: paging.encode("unmatched", (r.participant_id,)),
        )
        return _listed(request, response, result, UnmatchedRow, format, "unmatched-mentees")

    @api.get("/sessions", response_model=Page[SessionRow], responses=LIST_RESPONSES)
    async def sessions_list(
        program: ProgramDep,
        request: Request,
        response: Response,
        status_: Annotated[
            Literal["planned", "held", "missed", "cancelled"] | None, Query(alias="status")
        ] = None,
        limit: Limit = 100,
        offset: Offset = 0,
        cursor: Cursor = None,
        format: Format = "json",
    ) -> Any:
        """The program's sessions, latest first."""
        list_name = f"sessions:{status_ or ''}"
        after = _after(cursor, offset, list_name, (dt.datetime, str))
        rows = await queries.sessions(
            program.session,
            program_id=program.program_id,
            status=status_,
            limit=limit + 1,
            offset=offset,
            after=after,
        )
        result = page(
            rows,
            SessionRow,
            limit=limit,
            offset=offset,
            by_cursor=after is not None,
            next_cursor=lambda r: paging.encode(list_name, (r.start, r.session_id)),
        )
        return _listed(request, response, result, SessionRow, format, "sessions")

    @api.get(
        "/pairs/{pair_id}/timeline",
        response_model=Page[TimelineEntry],
        responses={**LIST_RESPONSES, 404: {"model": Problem, "description": "no such pair"}},
    )
    async def pair_timeline(
        program: ProgramDep,
        request: Request,
        response: Response,
        pair_id: Annotated[str, Path(min_length=1, max_length=200)],
        limit: Limit = 100,
        offset: Offset = 0,
        cursor: Cursor = None,
        format: Format = "json",
    ) -> Any:
        """What happened to one pair, at the level of detail the program allows."""
        session, program_id = program.session, program.program_id
        list_name = f"timeline:{pair_id}"
        after = _after(cursor, offset, list_name, (dt.datetime, str))
        if await queries.pair(session, program_id=program_id, pair_id=pair_id) is None:
            raise HTTPException(404, f"program {program_id!r} has no pair {pair_id!r}")
        privacy, _ = await writes.program_settings(session, program_id)
        rows = await queries.timeline(
            session,
            program_id=program_id,
            pair_id=pair_id,
            limit=limit + 1,
            offset=offset,
            after=after,
        )
        result = page(
            rows,
            TimelineEntry,
            limit=limit,
            offset=offset,
            by_cursor=after is not None,
            next_cursor=lambda r: paging.encode(list_name, (r.at, r.event_id)),
            shown=lambda r: visible(
                at=r.at,
                kind=r.kind,
                summary=r.summary,
                scores=r.scores,
                content=r.content,
                privacy=privacy,
            ),
        )
        return _listed(request, response, result, TimelineEntry, format, f"timeline-{pair_id}")

    @api.get("/assessments", response_model=list[AssessmentRow], responses=CSV_RESPONSE)
    async def assessment_list(program: ProgramDep, format: Format = "json") -> Any:
        """Average assessment scores (relevance, impact, satisfaction, fairness ...) by cohort
        and month."""
        cells = await queries.assessment_cells(program.session, program_id=program.program_id)
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
        program: ProgramDep,
        cohort: Annotated[str | None, Query(max_length=200)] = None,
        format: Format = "json",
    ) -> Any:
        """Opportunities per capita, match quality and session adherence per consented
        demographic group; groups under 5 people suppressed, and so is whatever would let
        any combination of this program's equity answers (every cohort's and the whole's)
        isolate fewer than 5 people; gaps flagged."""
        session, program_id = program.session, program.program_id
        whole = await queries.equity_totals(session, program_id=program_id, cohort="")
        part = (
            await queries.equity_totals(session, program_id=program_id, cohort=cohort)
            if cohort
            else whole
        )
        table = await queries.equity_people(session, program_id=program_id)
        rows: list[GroupFigures] = []
        for attribute, totals in sorted(part.items()):
            sizes = {g: t.people for g, t in whole.get(attribute, {}).items()}
            shown = publication(sizes, table.get(attribute, {}))
            rows += figures(
                attribute, totals, shown=shown.of_cohort(cohort) if cohort else set(shown.groups)
            )
        return _csv_or(list(rows), GroupFigures, format, "equity") or rows

    @api.get("/settings", response_model=ProgramSettingsBody)
    async def get_settings(program: ProgramDep) -> ProgramSettingsBody:
        """The program's privacy level and health thresholds."""
        privacy, thresholds = await writes.program_settings(program.session, program.program_id)
        return ProgramSettingsBody(privacy=privacy, thresholds=thresholds)

    @api.put("/settings", response_model=ProgramSettingsBody)
    async def put_settings(
        program: ProgramDep, body: ProgramSettingsBody, request: Request
    ) -> ProgramSettingsBody:
        """Sets the program's privacy level and thresholds (pairs are scored with the new
        thresholds as their next event arrives)."""
        now = running_service(request).clock.now()
        session, program_id = program.session, program.program_id
        row = await session.get(ProgramSettings, program_id)
        values = body.thresholds.model_dump(mode="json")
        if row is None:
            session.add(
                ProgramSettings(
                    program_id=program_id, privacy=body.privacy, thresholds=values, updated_at=now
                )
            )
        else:
            row.privacy, row.thresholds, row.updated_at = body.privacy, values, now
        await session.commit()
        return body

    return api
