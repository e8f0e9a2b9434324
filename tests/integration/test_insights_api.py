"""The coordinators' API on a running insights fed a whole program through a real nats-server,
on SQLite and PostgreSQL: numbers, lists, CSV, pages, privacy, and who may see what."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.insights import grants
from services.insights.equity import Publication
from services.insights.tokens import new_token
from shared.events import Event, PairAtRisk
from tests.integration.test_insights_service import Insights, insights
from tests.support.factories import publish
from tests.support.waiting import eventually, messages_on, settings_for
from tests.unit.insights.scenario import PROGRAM, Program, sample_program
from tests.unit.insights.test_equity import isolated_sets

OTHER = "program-b"
LISTS = ["pairs", "at-risk", "unmatched-mentees", "sessions", "pairs/pair-1/timeline"]
ENDPOINTS = [
    "overview",
    "charts",
    "assessments",
    "equity",
    "settings",
    *LISTS,
]


async def publish_events(js: Any, events: list[Event]) -> None:
    for event in events:
        await publish(js, event.subject, json.loads(event.model_dump_json()))


async def fed(
    app: Insights, js: Any, token: str, events: list[Event], *, expected: int | None = None
) -> None:
    """Publishes the events and waits until insights has projected every one (or `expected`
    events in all)."""
    await publish_events(js, events)

    async def all_seen() -> bool:
        response = await app.client.get(f"/programs/{PROGRAM}/overview", headers=auth(token))
        seen = response.json()["events_seen"]
        seen.pop("pairs at risk", None)  # insights' own pair.at_risk comes back to it too
        return sum(seen.values()) == (len(events) if expected is None else expected)

    await eventually(all_seen, timeout=60, what="the sample program projected")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def program(tmp_path, nats_server, js, database_url) -> AsyncIterator[tuple[Insights, str]]:
    """insights fed the sample program (the 60 days before now), and a coordinator's token."""
    settings = settings_for(tmp_path, nats_server.url, database_url)
    async with insights(settings) as app:
        token = await app.token_for(PROGRAM)
        await fed(app, js, token, sample_program(now=dt.datetime.now(dt.UTC)).events)
        yield app, token


async def test_the_overview_and_lists_show_the_program_as_its_events_made_it(program, js):
    app, token = program
    overview = (await app.client.get(f"/programs/{PROGRAM}/overview", headers=auth(token))).json()
    assert overview["participants"] == {"mentee": 11, "mentor": 3}
    assert overview["checkins"] == {"due": 5, "submitted": 3, "adherence": 0.6, "overdue_now": 2}
    assert overview["emails"] == {"sent": 2, "failed": 1}

    # pair-2 heard nothing for 21 days: its contact deadline (a durable timer, done by the
    # timer loop soon after the events, not with them) passed
    async def health_settled() -> bool:
        response = await app.client.get(f"/programs/{PROGRAM}/overview", headers=auth(token))
        return bool(response.json()["pairs_by_health"] == {"at_risk": 1, "healthy": 1, "watch": 1})

    await eventually(health_settled, timeout=30, what="pair-2's contact deadline scored")

    at_risk = (await app.client.get(f"/programs/{PROGRAM}/at-risk", headers=auth(token))).json()
    assert [p["pair_id"] for p in at_risk["items"]] == ["pair-1"]
    riskiest = at_risk["items"][0]
    assert riskiest["open_overdue_checkins"] == 2 and riskiest["overdue_streak"] == 0
    assert not any("overdue" in reason or "in a row" in reason for reason in riskiest["reasons"])
    pairs = (await app.client.get(f"/programs/{PROGRAM}/pairs", headers=auth(token))).json()
    assert [p["pair_id"] for p in pairs["items"]] == ["pair-1", "pair-2", "pair-0"]
    watched = await app.client.get(
        f"/programs/{PROGRAM}/pairs", params={"health": "watch"}, headers=auth(token)
    )
    assert [(p["pair_id"], p["reasons"]) for p in watched.json()["items"]] == [
        ("pair-2", ["no contact for 21 days"])
    ]
    unmatched = await app.client.get(
        f"/programs/{PROGRAM}/unmatched-mentees", params={"limit": 1000}, headers=auth(token)
    )
    reasons = {m["participant_id"]: m["reason"] for m in unmatched.json()["items"]}
    assert len(reasons) == 8
    assert reasons["mentee-2"] == "no suitable mentor in matching round r1"
    assert reasons["mentee-3"] == "waiting for the next matching round"

    async def alerted() -> bool:
        return len(await messages_on(js, PairAtRisk.subject)) >= 1

    await eventually(alerted, what="pair.at_risk on the stream")
    # only pair-1 crosses into risk; it may cross twice when its contact deadline's timer runs
    # before the rest of its (60-day-old) events are consumed (docs/insights.md, "Known limits")
    alerts = [json.loads(m.data) for m in await messages_on(js, PairAtRisk.subject)]
    assert {alert["pair_id"] for alert in alerts} == {"pair-1"}
    assert len({alert["event_id"] for alert in alerts}) == len(alerts)  # one per crossing


async def test_every_list_pages_and_exports_csv(program):
    app, token = program
    first = await app.client.get(
        f"/programs/{PROGRAM}/sessions", params={"limit": 4}, headers=auth(token)
    )
    body = first.json()
    assert (len(body["items"]), body["next_offset"]) == (4, 4)
    seen = [s["session_id"] for s in body["items"]]
    while body["next_offset"] is not None:
        body = (
            await app.client.get(
                f"/programs/{PROGRAM}/sessions",
                params={"limit": 4, "offset": body["next_offset"]},
                headers=auth(token),
            )
        ).json()
        seen += [s["session_id"] for s in body["items"]]
    assert len(seen) == len(set(seen)) == 9
    for path in [*LISTS, "assessments", "equity"]:
        response = await app.client.get(
            f"/programs/{PROGRAM}/{path}", params={"format": "csv"}, headers=auth(token)
        )
        assert response.status_code == 200, (path, response.text)
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(response.text)))
        json_body = (
            await app.client.get(f"/programs/{PROGRAM}/{path}", headers=auth(token))
        ).json()
        items = json_body["items"] if isinstance(json_body, dict) else json_body
        assert len(rows) == 1 + len(items), path


async def test_check_in_notes_stay_with_the_pair_unless_the_program_shares_them(program):
    app, token = program
    url = f"/programs/{PROGRAM}/pairs/pair-1/timeline"
    entries = (await app.client.get(url, headers=auth(token))).json()["items"]
    [submitted] = [e for e in entries if e["kind"] == "checkin.submitted"]
    assert (submitted["scores"], submitted["content"]) == (None, None)
    assert "private notes" not in json.dumps(entries)
    settings = {"privacy": "content", "thresholds": {}}
    put = await app.client.put(f"/programs/{PROGRAM}/settings", json=settings, headers=auth(token))
    assert put.status_code == 200, put.text
    entries = (await app.client.get(url, headers=auth(token))).json()["items"]
    [submitted] = [e for e in entries if e["kind"] == "checkin.submitted"]
    assert submitted["scores"] == {"progress": 4}
    assert submitted["content"] == "private notes c1-3"
    missing = await app.client.get(f"/programs/{PROGRAM}/pairs/nope/timeline", headers=auth(token))
    assert missing.status_code == 404


async def test_small_groups_are_suppressed_in_equity(program):
    app, token = program
    rows = (await app.client.get(f"/programs/{PROGRAM}/equity", headers=auth(token))).json()
    # group b has 4 people: hidden; a alone shown would reveal b from the total, so hidden too
    assert [(r["group"], r["suppressed"], r["people"]) for r in rows] == [
        ("a", True, None),
        ("b", True, None),
    ]


async def test_no_combination_of_equity_answers_isolates_fewer_than_5_people(
    tmp_path, nats_server, js, database_url
):
    """Group g: 5 people registered in January, 5 in February, 4 in March; h: 10 in each. The
    program's view minus January's and February's used to give March's 4 people of g."""
    program_id = "program-eq"
    p = Program(program_id=program_id, start=dt.datetime(2026, 1, 10, tzinfo=dt.UTC))
    for month, counts in enumerate([{"g": 5, "h": 10}, {"g": 5, "h": 10}, {"g": 4, "h": 10}]):
        for group, n in counts.items():
            for i in range(n):
                p.register(f"{group}{month}-{i}", "mentee", 31 * month, demographics={"x": group})
    settings = settings_for(tmp_path, nats_server.url, database_url)
    async with insights(settings) as app:
        token = await app.token_for(program_id)
        await publish_events(js, p.events)

        async def registered() -> bool:
            response = await app.client.get(f"/programs/{program_id}/overview", headers=auth(token))
            return bool(response.json()["participants"] == {"mentee": 44})

        await eventually(registered, timeout=60, what="the 44 registrations projected")
        answers: dict[str, list[dict[str, Any]]] = {}
        for cohort in ["", "2026-01", "2026-02", "2026-03"]:
            response = await app.client.get(
                f"/programs/{program_id}/equity",
                params={"cohort": cohort} if cohort else {},
                headers=auth(token),
            )
            assert response.status_code == 200
            answers[cohort] = response.json()
    whole = {"g": 14, "h": 30}
    cells = {
        (g, f"2026-0{m + 1}"): n
        for g, ns in [("g", [5, 5, 4]), ("h", [10] * 3)]
        for m, n in enumerate(ns)
    }
    shown = Publication(
        groups=frozenset(r["group"] for r in answers[""] if not r["suppressed"]),
        cells=frozenset(
            (r["group"], cohort)
            for cohort, rows in answers.items()
            if cohort
            for r in rows
            if not r["suppressed"]
        ),
    )
    for cohort, rows in answers.items():  # what is shown is the true number of people
        for r in rows:
            if not r["suppressed"]:
                assert (
                    r["people"]
                    == (whole if not cohort else {g: cells[(g, cohort)] for g in whole})[r["group"]]
                )
    assert shown.groups == {"g", "h"}
    assert ("g", "2026-03") not in shown.cells
    assert isolated_sets(whole, cells, shown) == []


async def tokens_of_every_kind(app: Insights) -> dict[str, str | None]:
    running = app.service.running
    assert running is not None
    now = running.clock.now()
    made: dict[str, str | None] = {"no token": None}
    async with running.sessions() as session, session.begin():
        for kind, program_id, expires, revoked in [
            ("expired", PROGRAM, now - dt.timedelta(minutes=1), None),
            ("revoked", PROGRAM, None, now),
            ("other program", OTHER, now + dt.timedelta(days=1), None),
            ("right program", PROGRAM, now + dt.timedelta(days=1), None),
        ]:
            made[kind] = token = new_token()
            row = await grants.add_token(
                session,
                token=token,
                program_id=program_id,
                label=kind,
                created_at=now,
                expires_at=expires,
            )
            row.revoked_at = revoked
    return made


EXPECTED = {
    "no token": 401,
    "expired": 401,
    "revoked": 401,
    "other program": 403,
    "right program": 200,
}


async def test_every_endpoint_answers_only_a_valid_token_of_its_program(program):
    app, _ = program
    tokens = await tokens_of_every_kind(app)
    found = {}
    for endpoint in ENDPOINTS:
        for kind, token in tokens.items():
            headers = auth(token) if token else {}
            response = await app.client.get(f"/programs/{PROGRAM}/{endpoint}", headers=headers)
            found[(endpoint, kind)] = response.status_code
            if response.status_code != 200:
                assert "detail" in response.json()
                assert "insights" not in response.text.lower() or "token" in response.text
        put = await app.client.put(
            f"/programs/{PROGRAM}/settings", json={}, headers=auth(token) if token else {}
        )
        found[("PUT settings", kind)] = put.status_code
    assert found == {
        (endpoint, kind): EXPECTED[kind]
        for endpoint in [*ENDPOINTS, "PUT settings"]
        for kind in EXPECTED
        if endpoint != "PUT settings" or kind == "right program"
    } | {("PUT settings", "right program"): 200}


async def test_docs_documents_and_readiness_need_a_token_and_work_offline(program):
    app, token = program
    for path in ("/docs", "/openapi.json", "/asyncapi.json"):
        assert (await app.client.get(path)).status_code == 401, path
        assert (await app.client.get(path, headers=auth(token))).status_code == 200, path
    docs = (await app.client.get("/docs", headers=auth(token))).text
    assert "/static/swagger/swagger-ui-bundle.js" in docs and "http" not in docs.split("<body>")[1]
    bundle = await app.client.get("/static/swagger/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.content) > 100_000
    ready = (await app.client.get("/readyz")).json()
    assert ready == {"status": "ready"}
    assert "processed" in (await app.client.get("/readyz", headers=auth(token))).json()
    start = await app.client.get("/")
    assert start.status_code == 200 and "mentorship token create" in start.text
    login = await app.client.post("/login", json={"token": token})
    assert login.json() == {"program_id": PROGRAM}
    # the browser's cookie opens the docs and the program's data, for GETs only
    assert (await app.client.get("/docs")).status_code == 200
    assert (await app.client.get(f"/programs/{PROGRAM}/overview")).status_code == 200


async def test_every_operation_documents_401_and_403(program):
    app, token = program
    document = (await app.client.get("/openapi.json", headers=auth(token))).json()
    operations = [
        (path, method, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
    ]
    assert len(operations) == 11
    for path, method, op in operations:
        assert {"401", "403"} <= set(op["responses"]), (method, path)
        assert op["responses"]["401"]["content"]["application/json"]["schema"]
