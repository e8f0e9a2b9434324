"""pairing's HTTP (thin): the accept/decline page participants reach from their mails, and the
coordinator's trigger of a matching round.

GET shows the proposal with two buttons that POST the answer (mail scanners prefetch GET links;
a GET never changes anything). Tokens are shared.links tokens of kind PAIR_RESPONSE, data
{program_id, proposal_id, participant_id}.
"""

from __future__ import annotations

import html
import secrets
import uuid
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Header, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.exc import DBAPIError

from services.pairing import consent, rounds, store
from shared.events import MatchingRequested
from shared.events.pairs import RoundRules
from shared.links import PAIR_RESPONSE, LinkExpired, LinkInvalid, link_signer
from shared.service import Running

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title></head>
<body><main><h1>{title}</h1>{body}</main></body></html>"""


ANSWER_ATTEMPTS = 5


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    """An HTML page; `body` is HTML already escaped by the caller."""
    return HTMLResponse(PAGE.format(title=html.escape(title), body=body), status_code=status)


def running_of(request: Request) -> Running:
    """The started service behind the HTTP app."""
    running: Running | None = request.app.state.service.running
    if running is None:
        raise RuntimeError("pairing is starting; try again in a moment")
    return running


def _verify(request: Request, token: str) -> dict[str, Any] | HTMLResponse:
    running = running_of(request)
    try:
        return link_signer(running.settings).verify(
            token, PAIR_RESPONSE.purpose, running.clock.now()
        )
    except (LinkInvalid, LinkExpired) as exc:
        return page("This link cannot be used", f"<p>{html.escape(str(exc))}</p>", 400)


def router() -> APIRouter:
    """The accept/decline page."""
    links = APIRouter(tags=["links"])

    @links.get(PAIR_RESPONSE.path, response_class=HTMLResponse)
    async def proposal_page(request: Request, t: str) -> HTMLResponse:
        """The proposal, why it was made, and the two answers."""
        data = _verify(request, t)
        if isinstance(data, HTMLResponse):
            return data
        async with running_of(request).sessions() as session:
            pair = await session.get(store.Pair, (data["program_id"], data["proposal_id"]))
        if pair is None:
            return page("Unknown proposal", "<p>This proposal does not exist (any more).</p>", 404)
        if pair.status != rounds.PROPOSED:
            closed = consent.ALREADY.get(pair.status, "This proposal is closed.")
            return page("Already decided", f"<p>{html.escape(closed)}</p>", 409)
        you_are = "mentor" if data["participant_id"] == pair.mentor_id else "mentee"
        other = pair.mentee_id if you_are == "mentor" else pair.mentor_id
        reasons = "".join(f"<li>{html.escape(r)}</li>" for r in pair.reasons or [])
        token = html.escape(t)
        body = (
            f"<p>You are proposed as the {you_are} of {html.escape(other)}.</p>"
            f"<p>Why:</p><ul>{reasons}</ul>"
            f'<form method="post"><input type="hidden" name="t" value="{token}">'
            '<button type="submit" name="answer" value="accept">Accept</button> '
            '<label>Reason (optional) <input name="reason" maxlength="500"></label> '
            '<button type="submit" name="answer" value="decline">Decline</button></form>'
        )
        return page("A mentoring match for you", body)

    @links.post(PAIR_RESPONSE.path, response_class=HTMLResponse)
    async def respond(request: Request) -> HTMLResponse:
        """Records the answer: pair.accepted (both: pair.formed) or pair.declined (re-match)."""
        form = parse_qs((await request.body()).decode(), keep_blank_values=True)
        data = _verify(request, (form.get("t") or [""])[0])
        if isinstance(data, HTMLResponse):
            return data
        choice = (form.get("answer") or [""])[0]
        if choice not in ("accept", "decline"):
            return page("Please choose", "<p>Answer with Accept or Decline.</p>", 422)
        reason = (form.get("reason") or [""])[0].strip()[:500] or None
        running = running_of(request)
        for attempt in range(1, ANSWER_ATTEMPTS + 1):
            try:
                async with running.unit_of_work() as uow:
                    reply = await consent.answer(
                        uow, program_id=data["program_id"], pair_id=data["proposal_id"],
                        participant_id=data["participant_id"], accept=choice == "accept",
                        reason=reason,
                    )  # fmt: skip
                break
            except (store.SlotTaken, DBAPIError):
                # a decline's re-match raced another for a mentor's last slot (or PostgreSQL
                # broke a deadlock): again, on the new state; the pair's row lock serialises
                # the answers themselves
                if attempt == ANSWER_ATTEMPTS:
                    raise
        running.relay.wake()
        title = "Thank you" if reply.status == 200 else "This proposal is closed"
        return page(title, f"<p>{html.escape(reply.message)}</p>", reply.status)

    return links


class Problem(BaseModel):
    """What went wrong and what to do."""

    detail: str


COORDINATOR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "no bearer token, or not the coordinator secret"},
    403: {
        "model": Problem,
        "description": "coordinator endpoints are off: MENTORSHIP_PAIRING_COORDINATOR_SECRET "
        "is unset",
    },
}


class RoundRequest(BaseModel):
    """What a coordinator asks of a round."""

    dry_run: bool = Field(default=False, description="a preview: matching.completed, no pairs")
    round_id: str | None = Field(default=None, description="default: a new id")
    rules: RoundRules | None = Field(default=None, description="default: the default rules")


def new_round_id(program_id: str) -> str:
    """A fresh round id (a retried request with the same id runs the round once)."""
    return f"{program_id}-{uuid.uuid4().hex[:12]}"


def coordination() -> APIRouter:
    """POST /programs/{program_id}/matching: publishes matching.requested (internal use)."""
    api = APIRouter(tags=["coordination"], responses=COORDINATOR_RESPONSES)

    @api.post("/programs/{program_id}/matching", status_code=202)
    async def request_matching(
        program_id: str,
        request: Request,
        ask: RoundRequest | None = None,
        authorization: str | None = Header(default=None),
    ) -> JSONResponse:
        """Asks for a matching round (or a dry run); matching.completed reports its outcome."""
        running = running_of(request)
        refused = coordinator_refused(running, authorization)
        if refused is not None:
            return refused
        ask = ask or RoundRequest()
        async with running.unit_of_work() as uow:
            try:
                event = MatchingRequested(
                    program_id=program_id, occurred_at=uow.clock.now(),
                    round_id=ask.round_id or new_round_id(program_id),
                    requested_by="coordinator (HTTP)", dry_run=ask.dry_run, rules=ask.rules,
                )  # fmt: skip
            except ValidationError as exc:
                return JSONResponse({"detail": exc.errors(include_url=False)}, status_code=422)
            uow.emit(event)
        running.relay.wake()
        return JSONResponse({"round_id": event.round_id, "dry_run": event.dry_run}, status_code=202)

    @api.get("/programs/{program_id}/unmatched")
    async def unmatched(
        program_id: str, request: Request, authorization: str | None = Header(default=None)
    ) -> JSONResponse:
        """The mentees the program's last round left unmatched, each with why; the next round
        serves them first (the waitlist)."""
        running = running_of(request)
        refused = coordinator_refused(running, authorization)
        if refused is not None:
            return refused
        async with running.sessions() as session:
            round_id, rows = await store.unmatched_of_last_round(session, program_id=program_id)
        mentees = [{"mentee_id": r.mentee_id, "reason": r.reason, "detail": r.detail} for r in rows]
        return JSONResponse({"round_id": round_id, "unmatched": mentees})

    return api


def coordinator_refused(running: Running, authorization: str | None) -> JSONResponse | None:
    """Why a coordinator's request is refused (no secret set, a wrong token), else None."""
    secret = running.settings.pairing_coordinator_secret
    if secret is None:
        detail = "off: set MENTORSHIP_PAIRING_COORDINATOR_SECRET to use this endpoint"
        return JSONResponse({"detail": detail}, status_code=403)
    given = (authorization or "").removeprefix("Bearer ").encode()
    if not secrets.compare_digest(given, secret.get_secret_value().encode()):
        return JSONResponse({"detail": "wrong or missing bearer token"}, status_code=401)
    return None
