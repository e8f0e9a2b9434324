"""pairing's HTTP for a program's round rules (a coordinator, with the coordinator secret).

    GET    /programs/{p}/rules   the rules a round without rules of its own uses, and whether
                                 they are the program's stored ones or the defaults
    PUT    /programs/{p}/rules   stores the program's rules (a RoundRules object; what it leaves
                                 unset is the default)
    DELETE /programs/{p}/rules   back to the defaults

A round's own rules (matching.requested.rules) still win over the stored ones.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from services.pairing import rounds, store
from services.pairing.api import COORDINATOR_RESPONSES, coordinator_refused, running_of
from shared.events.pairs import RoundRules


class ProgramRulesView(BaseModel):
    """A program's round rules as a coordinator reads them."""

    program_id: str
    source: Literal["program", "default"] = Field(
        description="program: the rules stored with PUT; default: none are stored"
    )
    rules: RoundRules = Field(description="every rule, as a round without its own rules uses it")
    stored: RoundRules | None = Field(
        description="what PUT stored (a field it left unset is the default); null: nothing"
    )
    updated_at: dt.datetime | None = Field(description="when the stored rules were set")


class FieldProblem(BaseModel):
    field: str = Field(description="the rule, e.g. weights.skills; empty: the whole body")
    problem: str = Field(description="what is wrong with it and what to send instead")


class RulesProblem(BaseModel):
    """Why the rules were not stored, field by field."""

    detail: str
    errors: list[FieldProblem]


def refused_rules(program_id: str, exc: ValidationError) -> JSONResponse:
    """422 naming each bad rule and what to send instead."""
    problems = [FieldProblem(field=f, problem=p) for f, p in rounds.rule_problems(exc)]
    said = "; ".join(f"{p.field}: {p.problem}" if p.field else p.problem for p in problems)
    detail = (
        f"the rules were not stored: {said}. GET /programs/{program_id}/rules shows every rule "
        "and its value"
    )
    body = RulesProblem(detail=detail, errors=problems)
    return JSONResponse(body.model_dump(), status_code=422)


def view(program_id: str, row: store.ProgramRules | None) -> dict[str, Any]:
    """The program's rules: stored (and what a round makes of them) or the defaults."""
    stored = store.rules_of_row(row)
    rules, source = rounds.chosen_rules(None, stored)
    shown = ProgramRulesView(
        program_id=program_id,
        source="program" if source == "program" else "default",
        rules=rounds.as_round_rules(rules),
        stored=stored,
        updated_at=None if row is None else row.updated_at,
    )
    return shown.model_dump(mode="json", exclude_none=False)


BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RoundRules"}}},
    }
}


def coordination() -> APIRouter:
    """GET, PUT and DELETE /programs/{program_id}/rules."""
    api = APIRouter(tags=["coordination"], responses=COORDINATOR_RESPONSES)

    @api.get("/programs/{program_id}/rules", response_model=ProgramRulesView)
    async def show(
        program_id: str, request: Request, authorization: str | None = Header(default=None)
    ) -> JSONResponse:
        """The rules a round of the program uses when its request brings none: the stored
        ones, or the defaults (`source` says which)."""
        running = running_of(request)
        refused = coordinator_refused(running, authorization)
        if refused is not None:
            return refused
        async with running.sessions() as session:
            row = await store.program_rules(session, program_id=program_id)
        return JSONResponse(view(program_id, row))

    @api.put(
        "/programs/{program_id}/rules",
        response_model=ProgramRulesView,
        responses={422: {"model": RulesProblem, "description": "a rule is not valid"}},
        openapi_extra=BODY,
    )
    async def store_rules(
        program_id: str, request: Request, authorization: str | None = Header(default=None)
    ) -> JSONResponse:
        """Stores the program's round rules (the whole set: a field left out is the default);
        every later round without rules of its own uses them."""
        running = running_of(request)
        refused = coordinator_refused(running, authorization)
        if refused is not None:
            return refused
        try:
            rules = RoundRules.model_validate_json(await request.body())
        except ValidationError as exc:
            return refused_rules(program_id, exc)
        async with running.unit_of_work() as uow:
            await store.store_program_rules(
                uow.session, program_id=program_id, rules=rules, now=uow.clock.now()
            )
            row = await store.program_rules(uow.session, program_id=program_id)
        return JSONResponse(view(program_id, row))

    @api.delete("/programs/{program_id}/rules", response_model=ProgramRulesView)
    async def reset(
        program_id: str, request: Request, authorization: str | None = Header(default=None)
    ) -> JSONResponse:
        """Forgets the program's stored rules: rounds use the defaults again."""
        running = running_of(request)
        refused = coordinator_refused(running, authorization)
        if refused is not None:
            return refused
        async with running.unit_of_work() as uow:
            await store.forget_program_rules(uow.session, program_id=program_id)
        return JSONResponse(view(program_id, None))

    return api
