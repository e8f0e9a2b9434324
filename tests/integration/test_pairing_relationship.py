"""The relationship against a real nats-server and both databases: the pair's signed links and
a coordinator's secret on pairing's HTTP (charter agreed by both to one version, goals with
milestones and a re-plan, a milestone reached, an opportunity offered), and the same records as
events from outside systems, where another program's pair or an unknown pair is dead-lettered."""

from __future__ import annotations

import contextlib
import datetime as dt
import html
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from services.pairing.app import definition
from shared.clock import FixedClock
from shared.links import PAIR_RESPONSE, RELATIONSHIP, link_signer
from shared.service import Service
from shared.settings import Settings
from tests.support.factories import envelope, publish, registration
from tests.support.waiting import (
    bodies_on,
    eventually,
    messages_on,
    settings_for,
    subject_counts,
)

NOW = dt.datetime(2027, 3, 1, 8, tzinfo=dt.UTC)  # a Monday
SECRET = "coordinator-secret-for-tests"
BEARER = {"Authorization": f"Bearer {SECRET}"}
TERMS = {
    "purpose": "grow into a tech lead",
    "success_metrics": ["leads one design review"],
    "communication": [
        {"exchange": "quick question", "channel": "chat", "response_hours": 24},
        {"exchange": "code review", "channel": "email", "response_hours": 72},
    ],
    "decision_rights": "the mentee owns the goals; the mentor may say no to a request",
    "cadence_days": 14,
    "session_minutes": 45,
}


@contextlib.asynccontextmanager
async def pairing(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    service = Service(definition(), settings, FixedClock(NOW))
    async with service.started():
        transport = httpx.ASGITransport(app=service.http_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://pairing") as client:
            yield client


async def count(js: Any, subject: str) -> int:
    return (await subject_counts(js)).get(f"mentorship.{subject}", 0)


async def reached(js: Any, subject: str, n: int) -> None:
    async def check() -> bool:
        return await count(js, subject) >= n

    await eventually(check, what=f"{n} {subject}")


async def dead_letters(js: Any) -> list[str]:
    """Each dead letter's headers joined, to look for its reason."""
    counts = await subject_counts(js)
    letters = [
        message
        for subject in sorted(counts)
        if subject.startswith("mentorship.dlq.")
        for message in await messages_on(js, subject)
    ]
    return [" ".join(str(v) for v in (m.headers or {}).values()) for m in letters]


async def formed_pair(js: Any, program_id: str, round_id: str, n: int) -> dict[str, Any]:
    await publish(js, "mentorship.matching.requested", envelope(program_id, round_id=round_id))
    await reached(js, "pair.formed", n)
    return next(
        p for p in await bodies_on(js, "mentorship.pair.formed") if p["program_id"] == program_id
    )


async def test_a_pair_agrees_its_charter_sets_goals_and_reaches_milestones_through_its_links(
    tmp_path, nats_server, js, database_url
):
    conf = settings_for(tmp_path, nats_server.url, database_url, pairing_coordinator_secret=SECRET)
    async with pairing(conf) as http:
        for program in ("prog", "prog-b"):
            await publish(js, "mentorship.participant.registered", registration(
                program, f"{program}-m", role="mentor", capacity=1))  # fmt: skip
            await publish(js, "mentorship.participant.registered", registration(
                program, f"{program}-e"))  # fmt: skip
        pair = await formed_pair(js, "prog", "r1", 1)
        other = await formed_pair(js, "prog-b", "rb", 2)
        pid = pair["pair_id"]

        # links: only for a coordinator with the secret
        assert (await http.post(f"/programs/prog/pairs/{pid}/links")).status_code == 401
        minted = await http.post(f"/programs/prog/pairs/{pid}/links", headers=BEARER)
        assert minted.status_code == 201, minted.text
        mentor_t, mentee_t = (
            parse_qs(urlsplit(minted.json()[role]).query)["t"][0] for role in ("mentor", "mentee")
        )
        assert urlsplit(minted.json()["mentor"]).path == RELATIONSHIP.path
        unknown = await http.post("/programs/prog/pairs/nope/links", headers=BEARER)
        assert unknown.status_code == 404 and "unknown" in unknown.json()["detail"]
        wrong = await http.post(f"/programs/prog-b/pairs/{pid}/links", headers=BEARER)
        assert wrong.status_code == 422 and "another program" in wrong.json()["detail"]
        forged = await http.get(RELATIONSHIP.path, params={"t": mentor_t[:-2] + "xx"})
        assert forged.status_code == 400 and "not valid" in forged.json()["detail"]
        accept_link = link_signer(conf).sign(PAIR_RESPONSE.purpose, {
            "program_id": "prog", "pair_id": pid, "participant_id": "prog-e"},
            NOW + dt.timedelta(days=1))  # fmt: skip
        elsewhere = await http.get(RELATIONSHIP.path, params={"t": accept_link})
        assert elsewhere.status_code == 400 and "something else" in elsewhere.json()["detail"]

        # the charter: agreed once both agreed to the same version
        path = RELATIONSHIP.path
        daily = {**TERMS, "rhythms": {"coffee_chat": "daily"}}
        refused = await http.post(f"{path}/charter", params={"t": mentee_t}, json=daily)
        assert refused.status_code == 422 and "coffee_chat" in refused.text
        first = await http.post(f"{path}/charter", params={"t": mentee_t}, json=TERMS)
        assert first.status_code == 201 and first.json()["version"] == 1
        changed = {**TERMS, "cadence_days": 7, "rhythms": {"coffee_chat": "biweekly"}}
        second = await http.post(f"{path}/charter", params={"t": mentor_t}, json=changed)
        assert second.json() == {
            "version": 2, "mentor_agreed_version": 2, "mentee_agreed_version": None,
            "agreed": False,
        }  # fmt: skip
        stale = await http.post(
            f"{path}/charter/agree", params={"t": mentee_t}, json={"version": 1}
        )
        assert stale.status_code == 409 and "version 2" in stale.json()["detail"]
        agreed = await http.post(
            f"{path}/charter/agree", params={"t": mentee_t}, json={"version": 2}
        )
        assert agreed.status_code == 200 and agreed.json()["agreed"] is True
        await reached(js, "charter.agreed", 1)
        [charter] = await bodies_on(js, "mentorship.charter.agreed")
        assert (charter["pair_id"], charter["version"], charter["cadence_days"]) == (pid, 2, 7)
        assert charter["communication"][1] == TERMS["communication"][1]
        assert charter["decision_rights"] == TERMS["decision_rights"]
        assert charter["rhythms"]["coffee_chat"] == "biweekly"  # scheduling plans from it

        # a goal with milestones tied to real work, then a re-plan (the project pivoted)
        goal = {
            "goal_id": "g-1", "title": "lead a design review", "target_date": "2027-05-31",
            "milestones": [
                {"milestone_id": "g-1-a", "title": "draft reviewed", "kind": "review",
                 "due_date": "2027-04-15"},
                {"milestone_id": "g-1-b", "title": "talk with the architect",
                 "kind": "conversation"},
            ],
        }  # fmt: skip
        made = await http.post(f"{path}/goals", params={"t": mentee_t}, json=goal)
        assert made.status_code == 201 and made.json() == {"goal_id": "g-1", "revision": 1}
        again = await http.post(f"{path}/goals", params={"t": mentee_t}, json=goal)
        assert again.status_code == 201  # the same goal again: nothing new
        same = await http.put(
            f"{path}/goals/g-1", params={"t": mentor_t}, json={"target_date": "2027-05-31"}
        )
        assert same.json()["revision"] == 1  # the same plan is no re-plan
        moved = await http.put(f"{path}/goals/g-1", params={"t": mentor_t}, json={
            "target_date": "2027-06-30", "reason": "the project pivoted"})  # fmt: skip
        assert moved.json() == {"goal_id": "g-1", "revision": 2}
        await reached(js, "goal.replanned", 1)
        assert await count(js, "goal.set") == 1
        [replanned] = await bodies_on(js, "mentorship.goal.replanned")
        assert (replanned["previous_target_date"], replanned["target_date"]) == (
            "2027-05-31", "2027-06-30"
        )  # fmt: skip
        assert [m["milestone_id"] for m in replanned["milestones"]] == ["g-1-a", "g-1-b"]

        # a planned milestone reached, public: title and kind from the plan
        done = await http.post(f"{path}/milestones", params={"t": mentee_t}, json={
            "milestone_id": "g-1-a", "goal_id": "g-1", "visibility": "public",
            "evidence": "https://git.example.org/pr/12"})  # fmt: skip
        assert done.status_code == 201, done.text
        await reached(js, "milestone.reached", 1)
        [milestone] = await bodies_on(js, "mentorship.milestone.reached")
        assert (milestone["title"], milestone["kind"], milestone["visibility"]) == (
            "draft reviewed", "review", "public"
        )  # fmt: skip
        bad = await http.post(f"{path}/milestones", params={"t": mentee_t}, json={
            "title": "x", "visibility": "everyone"})  # fmt: skip
        assert bad.status_code == 422

        # opportunities: the mentor offers the mentee one; the mentee cannot
        offered = await http.post(f"{path}/opportunities", params={"t": mentor_t}, json={
            "kind": "Stretch assignment", "title": "run the next retro"})  # fmt: skip
        assert offered.status_code == 201 and offered.json()["kind"] == "stretch assignment"
        mine = await http.post(f"{path}/opportunities", params={"t": mentee_t}, json={
            "kind": "sponsorship", "title": "x"})  # fmt: skip
        assert mine.status_code == 403
        odd = await http.post(f"{path}/opportunities", params={"t": mentor_t}, json={
            "kind": "free lunch", "title": "x"})  # fmt: skip
        assert odd.status_code == 422 and "stretch assignment" in odd.json()["detail"]
        introduction = {"participant_id": "prog-e", "kind": "introduction", "title": "the CTO"}
        by_coordinator = await http.post(
            "/programs/prog/opportunities", headers=BEARER, json=introduction
        )
        assert by_coordinator.status_code == 201
        await reached(js, "opportunity.offered", 2)
        [first_offer, _] = await bodies_on(js, "mentorship.opportunity.offered")
        assert (first_offer["participant_id"], first_offer["offered_by"]) == ("prog-e", "prog-m")

        # a coordinator cannot write into a pair through another program
        cross = await http.post(
            f"/programs/prog-b/pairs/{pid}/goals", headers=BEARER, json={"title": "x"}
        )
        assert cross.status_code == 422 and "another program" in cross.json()["detail"]

        # from outside systems: a milestone kept; another program's pair and an unknown pair
        # dead-lettered with the reason
        await publish(js, "mentorship.milestone.reached", envelope(
            "prog", pair_id=pid, milestone_id="jira-7", title="ticket shipped", kind="task",
            source="jira"))  # fmt: skip
        await publish(js, "mentorship.milestone.reached", envelope(
            "prog-b", pair_id=pid, milestone_id="jira-8", title="x"))  # fmt: skip
        await publish(js, "mentorship.goal.set", envelope(
            "prog", pair_id="no-such-pair", goal_id="g-x", title="x"))  # fmt: skip

        async def two_dead() -> bool:
            return len(await dead_letters(js)) >= 2

        await eventually(two_dead, what="two dead letters", timeout=30)
        letters = await dead_letters(js)
        assert any("another program" in letter for letter in letters), letters
        assert any("no-such-pair" in letter and "unknown" in letter for letter in letters)

        async def jira_kept() -> bool:
            view = await http.get(f"/programs/prog/pairs/{pid}/relationship", headers=BEARER)
            return "jira-7" in {m["milestone_id"] for m in view.json()["milestones"]}

        await eventually(jira_kept, what="the outside milestone kept")
        view = (await http.get(path, params={"t": mentee_t})).json()
        assert view["you_are"] == "mentee" and view["charter"]["agreed_version"] == 2
        assert [(g["goal_id"], g["revision"]) for g in view["goals"]] == [("g-1", 2)]
        assert {m["milestone_id"]: m["visibility"] for m in view["milestones"]} == {
            "g-1-a": "public", "jira-7": "private"
        }  # fmt: skip
        assert len(view["opportunities"]) == 2
        # the link clicked in a mail opens a page to read, not JSON
        browser = {"Accept": "text/html,application/xhtml+xml"}
        shown = await http.get(path, params={"t": mentee_t}, headers=browser)
        assert shown.headers["content-type"].startswith("text/html")
        assert "You are the mentee" in shown.text and "agreed by both (version 2)" in shown.text
        assert html.escape(TERMS["purpose"]) in shown.text and "lead a design review" in shown.text
        bad = await http.get(path, params={"t": mentee_t[:-2] + "xx"}, headers=browser)
        assert bad.status_code == 400 and "not valid" in bad.text and "<html" in bad.text
        other_view = await http.get(
            f"/programs/prog-b/pairs/{other['pair_id']}/relationship", headers=BEARER
        )
        assert other_view.json()["milestones"] == []  # jira-8 was never applied
        # pairing's own events came back to it and changed nothing: only the two dead letters
        assert len(await dead_letters(js)) == 2
