"""What a browser gets from insights: a start page, the dashboard, and the API docs (Swagger UI
from the swagger-ui-bundle package, so it works offline), all without a CDN.

The docs, the OpenAPI and AsyncAPI documents and readiness's counters need a valid token, as
the API does (bearer header, or the cookie the start page sets); without one, /readyz says only
whether insights is ready. No page here holds program data: the dashboard's script fetches it
from the API with the coordinator's token.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import swagger_ui_bundle
from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from services.insights.api import TOKEN_COOKIE, _bearer, valid_grant
from services.insights.tokens import Grant

PAGES = Path(__file__).parent / "templates"
GUARDED = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/asyncapi.json", "/readyz")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


class Login(BaseModel):
    token: str = Field(min_length=1, max_length=500)


def _routes(routes: list[Any]) -> Iterator[Any]:
    """Every route, also those of included routers (FastAPI keeps those behind a wrapper)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _routes(inner.routes)
        else:
            yield route


def setup(app: FastAPI) -> None:
    """Puts guarded docs, documents and readiness in front of FastAPI's and health's open ones
    (routes match in order), and keeps the operations routes out of the OpenAPI document."""
    found = {getattr(r, "path", None): r for r in _routes(app.router.routes)}
    readyz, asyncapi = found["/readyz"].endpoint, found["/asyncapi.json"].endpoint
    for route in found.values():
        if isinstance(route, APIRoute) and route.path in ("/healthz", *GUARDED):
            route.include_in_schema = False
    before = len(app.router.routes)

    async def grant(request: Request, credentials: Credentials) -> Grant:
        return await valid_grant(request, credentials)

    @app.get("/readyz", include_in_schema=False)
    async def guarded_readyz(request: Request, response: Response, credentials: Credentials) -> Any:
        """Readiness; its counters only with a valid token (they say nothing of programs)."""
        body: dict[str, Any] = await readyz(response)
        try:
            await valid_grant(request, credentials)
        except Exception:
            return {"status": body["status"]}
        return body

    @app.get("/asyncapi.json", include_in_schema=False, dependencies=[Depends(grant)])
    async def guarded_asyncapi() -> Response:
        result: Response = await asyncapi()
        return result

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(grant)])
    async def guarded_openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(grant)])
    async def docs() -> HTMLResponse:
        return HTMLResponse((PAGES / "docs.html").read_text())

    @app.get("/", include_in_schema=False)
    async def start() -> HTMLResponse:
        """The start page: a coordinator enters a token, then opens the dashboard or the docs."""
        return HTMLResponse((PAGES / "start.html").read_text())

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard() -> HTMLResponse:
        return HTMLResponse((PAGES / "dashboard.html").read_text())

    @app.post("/login", include_in_schema=False)
    async def login(body: Login, request: Request, response: Response) -> dict[str, str]:
        """Checks the token and keeps it in an HttpOnly cookie for this browser's GETs."""
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=body.token)
        granted = await valid_grant(request, credentials)
        response.set_cookie(
            TOKEN_COOKIE, body.token, httponly=True, samesite="strict", max_age=12 * 3600
        )
        return {"program_id": granted.program_id}

    @app.post("/logout", include_in_schema=False)
    async def logout(response: Response) -> dict[str, str]:
        response.delete_cookie(TOKEN_COOKIE)
        return {"status": "logged out"}

    app.mount(
        "/static/swagger", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), "swagger"
    )
    app.mount("/static/insights", StaticFiles(directory=PAGES), "insights-static")
    ours = app.router.routes[before:]
    app.router.routes[:] = ours + app.router.routes[:before]


def openapi_document(app: FastAPI) -> str:
    """The OpenAPI document as checked in (docs/openapi/insights.json)."""
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"
