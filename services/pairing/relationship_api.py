"""pairing's HTTP for the relationship (JSON): the pair through its signed link, a coordinator
with MENTORSHIP_PAIRING_COORDINATOR_SECRET.

The pair's link is a shared.links token of kind RELATIONSHIP, data {program_id, pair_id,
participant_id}, given as `?t=<token>` (as the accept/decline link). A coordinator mints both
people's links (POST /programs/{p}/pairs/{pair}/links) to send them however the program does.

    GET  /links/relationship?t=                  the pair's charter, goals, milestones, offers
    POST /links/relationship/charter?t=          propose terms (a new version you agree to)
    POST /links/relationship/charter/agree?t=    {"version": n}: both agreed -> charter.agreed
    POST /links/relationship/goals?t=            a goal with milestones -> goal.set
    PUT  /links/relationship/goals/{goal}?t=     a new plan -> goal.replanned
    POST /links/relationship/milestones?t=       -> milestone.reached (public or private)
    POST /links/relationship/opportunities?t=    the mentor offers the mentee one
                                                 -> opportunity.offered

and the same for a coordinator under /programs/{p}/pairs/{pair}/... (a coordinator's charter is
a draft both still agree to), plus POST /programs/{p}/opportunities for anyone of the program.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError, IntegrityError

from services.pairing import relations, relationship
from services.pairing.api import COORDINATOR_RESPONSES, coordinator_refused, page, running_of
from services.pairing.relationship import (
    COORDINATOR,
    MENTEE,
    MENTOR,
    CharterTerms,
    Refused,
    role_in,
)
from shared.events.pairs import MilestoneKind, PlannedMilestone, Visibility
from shared.links import RELATIONSHIP, LinkExpired, LinkInvalid, link_signer, link_url
from shared.service import Running
from shared.unit_of_work import UnitOfWork

LINK_DAYS = 180  # a relationship link holds this long by default (a program's length)
ATTEMPTS = 3  # two writes to one record at once: the loser is retried on the new state


class Agreement(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1, description="the charter version you read and agree to")


class NewGoal(BaseModel):
    model_config = ConfigDict(extra="forbid")
    goal_id: str | None = Field(default=None, min_length=1, max_length=200)
    title: str = Field(min_length=1, max_length=500)
    target_date: dt.date | None = None
    milestones: list[PlannedMilestone] = Field(default_factory=list, max_length=50)


class Replan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target_date: dt.date | None = None
    milestones: list[PlannedMilestone] | None = Field(
        default=None, max_length=50, description="the whole new plan; leave out: unchanged"
    )
    reason: str | None = Field(default=None, max_length=2000)


class Reached(BaseModel):
    model_config = ConfigDict(extra="forbid")
    milestone_id: str | None = Field(default=None, min_length=1, max_length=200)
    title: str | None = Field(default=None, min_length=1, max_length=500)
    goal_id: str | None = Field(default=None, min_length=1, max_length=200)
    kind: MilestoneKind | None = None
    visibility: Visibility = "private"
    evidence: str | None = Field(default=None, max_length=2000)
    source: str | None = Field(default=None, max_length=200)


class Offer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    opportunity_id: str | None = Field(default=None, min_length=1, max_length=200)
    kind: str = Field(description=", ".join(relationship.OPPORTUNITY_KINDS))
    title: str = Field(min_length=1, max_length=500)


class CoordinatorOffer(Offer):
    participant_id: str = Field(min_length=1, max_length=200)
    pair_id: str | None = Field(default=None, min_length=1, max_length=200)


class LinkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    days: int = Field(default=LINK_DAYS, ge=1, le=366, description="how long the links hold")


def new_id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:12]}"


def refused(exc: Refused) -> JSONResponse:
    return JSONResponse({"detail": exc.message}, status_code=exc.status)


Step = Callable[[UnitOfWork], Awaitable[dict[str, Any]]]


async def run(running: Running, step: Step, status: int = 200) -> JSONResponse:
    """One unit of work (its events through the outbox); a refusal is its HTTP answer."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            async with running.unit_of_work() as uow:
                body = await step(uow)
            break
        except Refused as exc:
            return refused(exc)
        except (IntegrityError, DBAPIError):
            # the same new record written by two requests at once: again, on what won
            if attempt == ATTEMPTS:
                raise
    running.relay.wake()
    return JSONResponse(body, status_code=status)


async def respond(
    request: Request,
    act: dict[str, Callable[..., Step]] | JSONResponse,
    name: str,
    *args: Any,
    status: int = 200,
) -> JSONResponse:
    """Runs action `name` of `act` (or returns the refusal `act` already is)."""
    if isinstance(act, JSONResponse):
        return act
    return await run(running_of(request), act[name](*args), status)


def participant_of(request: Request, t: str) -> dict[str, Any] | JSONResponse:
    """The link's data (program_id, pair_id, participant_id), or the 400 that says why not."""
    running = running_of(request)
    try:
        return link_signer(running.settings).verify(t, RELATIONSHIP.purpose, running.clock.now())
    except (LinkInvalid, LinkExpired) as exc:
        return JSONResponse({"detail": str(exc)}, status_code=400)


def coordinator_refusal(request: Request, authorization: str | None) -> JSONResponse | None:
    """None for the coordinator's bearer secret, else the 403/401 that says what to do."""
    return coordinator_refused(running_of(request), authorization)


async def as_actor(
    uow: UnitOfWork, program_id: str, pair_id: str, participant_id: str | None
) -> tuple[Any, str]:
    """The formed pair and who acts on it: 'mentor', 'mentee' (a link) or 'coordinator'."""
    pair = await relations.formed_pair(uow, program_id=program_id, pair_id=pair_id)
    if participant_id is None:
        return pair, COORDINATOR
    return pair, role_in(pair.mentor_id, pair.mentee_id, participant_id)


def charter_body(state: relationship.CharterState) -> dict[str, Any]:
    return {
        "version": state.version,
        "mentor_agreed_version": state.mentor_version,
        "mentee_agreed_version": state.mentee_version,
        "agreed": state.agreed,
    }


def actions(
    program_id: str, pair_id: str, participant_id: str | None
) -> dict[str, Callable[..., Step]]:
    """What the pair or a coordinator can do to one pair's relationship, as units of work."""
    by_whom = participant_id or COORDINATOR

    def show() -> Step:
        async def step(uow: UnitOfWork) -> dict[str, Any]:
            pair, role = await as_actor(uow, program_id, pair_id, participant_id)
            return await relations.view(uow, pair, for_role=role)

        return step

    def charter(terms: CharterTerms) -> Step:
        async def step(uow: UnitOfWork) -> dict[str, Any]:
            pair, role = await as_actor(uow, program_id, pair_id, participant_id)
            return charter_body(await relations.propose(uow, pair, terms, by=role))

        return step

    def agree(agreement: Agreement) -> Step:
        async def step(uow: UnitOfWork) -> dict[str, Any]:
            pair, role = await as_actor(uow, program_id, pair_id, participant_id)
            state = await relations.agree(uow, pair, agreement.version, by=role)
            return charter_body(state)

        return step

    def goal(new: NewGoal) -> Step:
        goal_id = new.goal_id or new_id("goal")

        async def step(uow: UnitOfWork) -> dict[str, Any]:
            pair, _ = await as_actor(uow, program_id, pair_id, participant_id)
            row = await relations.set_goal(
                uow, pair, goal_id=goal_id, title=new.title, target_date=new.target_date,
                milestones=new.milestones,
            )  # fmt: skip
            return {"goal_id": row.goal_id, "revision": row.revision}

        return step

    def replan(goal_id: str, plan: Replan) -> Step:
        async def step(uow: UnitOfWork) -> dict[str, Any]:
            pair, _ = await as_actor(uow, program_id, pair_id, participant_id)
            row = await relations.replan_goal(
                uow, pair, goal_id, target_date=plan.target_date, milestones=plan.milestones,
                reason=plan.reason,
            )  # fmt: skip
            return {"goal_id": row.goal_id, "revision": row.revision}

        return step

    def milestone(reached: Reached) -> Step:
        milestone_id = reached.milestone_id or new_id("milestone")

        async def step(uow: UnitOfWork) -> dict[str, Any]:
            pair, _ = await as_actor(uow, program_id, pair_id, participant_id)
            row = await relations.reach_milestone(
                uow, pair, milestone_id=milestone_id, title=reached.title,
                goal_id=reached.goal_id, kind=reached.kind, visibility=reached.visibility,
                evidence=reached.evidence, source=reached.source,
            )  # fmt: skip
            return {"milestone_id": row.milestone_id, "visibility": row.visibility}

        return step

    def opportunity(offer: Offer) -> Step:
        opportunity_id = offer.opportunity_id or new_id("opportunity")

        async def step(uow: UnitOfWork) -> dict[str, Any]:
            pair, role = await as_actor(uow, program_id, pair_id, participant_id)
            if role == MENTEE:
                raise Refused(403, "the mentor (or a coordinator) offers the mentee opportunities")
            row = await relations.offer(
                uow, program_id=program_id, opportunity_id=opportunity_id,
                participant_id=pair.mentee_id, pair_id=pair.pair_id, kind=offer.kind,
                title=offer.title, offered_by=by_whom if role == MENTOR else COORDINATOR,
            )  # fmt: skip
            return {"opportunity_id": row.opportunity_id, "kind": row.kind}

        return step

    return {
        "show": show,
        "charter": charter,
        "agree": agree,
        "goal": goal,
        "replan": replan,
        "milestone": milestone,
        "opportunity": opportunity,
    }


def esc(value: object) -> str:
    return html.escape(str(value))


def relationship_html(view: dict[str, Any]) -> str:
    """The pair's own view (relations.view) as HTML; every value escaped."""
    parts = [f"<p>You are the {esc(view['you_are'])} in this pair ({esc(view['status'])}).</p>"]
    charter = view["charter"]
    parts.append("<h2>Charter</h2>")
    if charter is None:
        parts.append("<p>No charter proposed yet.</p>")
    else:
        terms = charter["terms"]
        state = (
            f"agreed by both (version {esc(charter['agreed_version'])})"
            if charter["agreed"]
            else f"version {esc(charter['version'])}, waiting for both to agree"
        )
        parts.append(f"<p>{state}</p><dl>")
        parts.append(f"<dt>Purpose</dt><dd>{esc(terms['purpose'])}</dd>")
        metrics = "".join(f"<li>{esc(m)}</li>" for m in terms.get("success_metrics") or [])
        if metrics:
            parts.append(f"<dt>Success metrics</dt><dd><ul>{metrics}</ul></dd>")
        if terms.get("cadence_days"):
            parts.append(f"<dt>Meeting every</dt><dd>{esc(terms['cadence_days'])} days</dd>")
        parts.append("</dl>")
    parts.append("<h2>Goals</h2>")
    goals = "".join(
        f"<li>{esc(g['title'])}" + (f" (by {esc(g['target_date'])})" if g["target_date"] else "")
        + "</li>"
        for g in view["goals"]
    )  # fmt: skip
    parts.append(f"<ul>{goals}</ul>" if goals else "<p>No goals set yet.</p>")
    parts.append("<h2>Milestones reached</h2>")
    reached = "".join(
        f"<li>{esc(m['title'])} ({esc(m['reached_at'][:10])})</li>" for m in view["milestones"]
    )
    parts.append(f"<ul>{reached}</ul>" if reached else "<p>None yet.</p>")
    if view["opportunities"]:
        offers = "".join(
            f"<li>{esc(o['title'])} ({esc(o['kind'])})</li>" for o in view["opportunities"]
        )
        parts.append(f"<h2>Opportunities offered</h2><ul>{offers}</ul>")
    return "".join(parts)


def links() -> APIRouter:
    """The pair's own relationship endpoints, authenticated by their signed link."""
    api = APIRouter(prefix=RELATIONSHIP.path, tags=["relationship"])

    def of(request: Request, t: str) -> dict[str, Callable[..., Step]] | JSONResponse:
        data = participant_of(request, t)
        if isinstance(data, JSONResponse):
            return data
        return actions(data["program_id"], data["pair_id"], data["participant_id"])

    @api.get("", response_model=None)
    async def show(request: Request, t: str) -> JSONResponse | HTMLResponse:
        """The pair's charter, goals, milestones and the opportunities offered.

        JSON for programs; a browser (Accept: text/html, as when the link in a mail is clicked)
        gets the same as a page to read. Changes go through the POST endpoints below.
        """
        act = of(request, t)
        answer = await respond(request, act, "show")
        if "text/html" not in request.headers.get("accept", ""):
            return answer
        body = json.loads(bytes(answer.body))
        if answer.status_code != 200:
            return page("This link cannot be used", f"<p>{esc(body['detail'])}</p>", 400)
        return page("Your mentoring relationship", relationship_html(body))

    @api.post("/charter")
    async def charter(request: Request, t: str, terms: CharterTerms) -> JSONResponse:
        """Proposes terms: a new version, agreed by you; the other person agrees to it."""
        return await respond(request, of(request, t), "charter", terms, status=201)

    @api.post("/charter/agree")
    async def agree(request: Request, t: str, agreement: Agreement) -> JSONResponse:
        """Agrees to the charter's version; once both did: charter.agreed."""
        act = of(request, t)
        return await respond(request, act, "agree", agreement)

    @api.post("/goals")
    async def goal(request: Request, t: str, new: NewGoal) -> JSONResponse:
        """A goal with its milestones: goal.set."""
        act = of(request, t)
        return await respond(request, act, "goal", new, status=201)

    @api.put("/goals/{goal_id}")
    async def replan(request: Request, goal_id: str, t: str, plan: Replan) -> JSONResponse:
        """A new plan for the goal: goal.replanned (no penalty)."""
        act = of(request, t)
        return await respond(request, act, "replan", goal_id, plan)

    @api.post("/milestones")
    async def milestone(request: Request, t: str, reached: Reached) -> JSONResponse:
        """A milestone reached: milestone.reached."""
        act = of(request, t)
        return await respond(request, act, "milestone", reached, status=201)

    @api.post("/opportunities")
    async def opportunity(request: Request, t: str, offer: Offer) -> JSONResponse:
        """The mentor offers the mentee an opportunity: opportunity.offered."""
        act = of(request, t)
        return await respond(request, act, "opportunity", offer, status=201)

    return api


def coordination() -> APIRouter:
    """A coordinator's relationship endpoints (bearer MENTORSHIP_PAIRING_COORDINATOR_SECRET)."""
    api = APIRouter(
        prefix="/programs/{program_id}", tags=["relationship"], responses=COORDINATOR_RESPONSES
    )
    Auth = Header(default=None)

    def of(
        request: Request, program_id: str, pair_id: str, authorization: str | None
    ) -> dict[str, Callable[..., Step]] | JSONResponse:
        return coordinator_refusal(request, authorization) or actions(program_id, pair_id, None)

    @api.get("/pairs/{pair_id}/relationship")
    async def show(
        request: Request, program_id: str, pair_id: str, authorization: str | None = Auth
    ) -> JSONResponse:
        """The pair's charter, goals, milestones and the opportunities offered."""
        act = of(request, program_id, pair_id, authorization)
        return await respond(request, act, "show")

    @api.post("/pairs/{pair_id}/links", status_code=201)
    async def mint(
        request: Request,
        program_id: str,
        pair_id: str,
        ask: LinkRequest | None = None,
        authorization: str | None = Auth,
    ) -> JSONResponse:
        """Both people's relationship links, to send them however the program does."""
        refusal = coordinator_refusal(request, authorization)
        if refusal is not None:
            return refusal
        running = running_of(request)
        expires = running.clock.now() + dt.timedelta(days=(ask or LinkRequest()).days)

        async def step(uow: UnitOfWork) -> dict[str, Any]:
            pair = await relations.formed_pair(uow, program_id=program_id, pair_id=pair_id)
            signer = link_signer(running.settings)
            urls = {
                role: link_url(
                    running.settings,
                    signer,
                    RELATIONSHIP,
                    {"program_id": program_id, "pair_id": pair_id, "participant_id": person},
                    expires,
                )
                for role, person in ((MENTOR, pair.mentor_id), (MENTEE, pair.mentee_id))
            }
            return {**urls, "expires_at": expires.isoformat()}

        return await run(running, step, 201)

    @api.post("/pairs/{pair_id}/charter", status_code=201)
    async def charter(
        request: Request,
        program_id: str,
        pair_id: str,
        terms: CharterTerms,
        authorization: str | None = Auth,
    ) -> JSONResponse:
        """A draft of the charter (a new version) that both people still agree to."""
        act = of(request, program_id, pair_id, authorization)
        return await respond(request, act, "charter", terms, status=201)

    @api.post("/pairs/{pair_id}/goals", status_code=201)
    async def goal(
        request: Request,
        program_id: str,
        pair_id: str,
        new: NewGoal,
        authorization: str | None = Auth,
    ) -> JSONResponse:
        """A goal with its milestones: goal.set."""
        act = of(request, program_id, pair_id, authorization)
        return await respond(request, act, "goal", new, status=201)

    @api.put("/pairs/{pair_id}/goals/{goal_id}")
    async def replan(
        request: Request,
        program_id: str,
        pair_id: str,
        goal_id: str,
        plan: Replan,
        authorization: str | None = Auth,
    ) -> JSONResponse:
        """A new plan for the goal: goal.replanned (no penalty)."""
        act = of(request, program_id, pair_id, authorization)
        return await respond(request, act, "replan", goal_id, plan)

    @api.post("/pairs/{pair_id}/milestones", status_code=201)
    async def milestone(
        request: Request,
        program_id: str,
        pair_id: str,
        reached: Reached,
        authorization: str | None = Auth,
    ) -> JSONResponse:
        """A milestone reached: milestone.reached."""
        act = of(request, program_id, pair_id, authorization)
        return await respond(request, act, "milestone", reached, status=201)

    @api.post("/opportunities", status_code=201)
    async def opportunity(
        request: Request,
        program_id: str,
        offer: CoordinatorOffer,
        authorization: str | None = Auth,
    ) -> JSONResponse:
        """An opportunity offered to anyone of the program: opportunity.offered."""
        refusal = coordinator_refusal(request, authorization)
        if refusal is not None:
            return refusal
        opportunity_id = offer.opportunity_id or new_id("opportunity")

        async def step(uow: UnitOfWork) -> dict[str, Any]:
            row = await relations.offer(
                uow, program_id=program_id, opportunity_id=opportunity_id,
                participant_id=offer.participant_id, pair_id=offer.pair_id, kind=offer.kind,
                title=offer.title, offered_by=COORDINATOR,
            )  # fmt: skip
            return {"opportunity_id": row.opportunity_id, "kind": row.kind}

        return await run(running_of(request), step, 201)

    return api
