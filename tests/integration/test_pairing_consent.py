"""Consent against a real nats-server and both databases: proposals, the signed accept/decline
links answered by pairing's HTTP, both accepted -> pair.formed, a decline or silence re-matches
that mentee alone."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx
from sqlalchemy import select

from services.pairing import store
from services.pairing.app import definition
from shared.clock import FixedClock
from shared.db import make_engine, make_sessions
from shared.links import PAIR_RESPONSE, link_signer
from shared.service import Service
from shared.settings import Settings
from tests.support.factories import envelope, publish, registration
from tests.support.waiting import bodies_on, eventually, settings_for, subject_counts

NOW = dt.datetime(2027, 3, 1, 8, tzinfo=dt.UTC)  # a Monday
FORM = {"content-type": "application/x-www-form-urlencoded"}


@contextlib.asynccontextmanager
async def pairing(settings: Settings, clock: FixedClock) -> AsyncIterator[httpx.AsyncClient]:
    """pairing started for real on the fake clock; its HTTP app served in-process."""
    service = Service(definition(), settings, clock)
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


def token(settings: Settings, proposal: dict[str, Any], who: str, expires: dt.datetime) -> str:
    data = {"program_id": "prog", "proposal_id": proposal["pair_id"], "participant_id": who}
    return link_signer(settings).sign(PAIR_RESPONSE.purpose, data, expires)


async def answer(http: httpx.AsyncClient, t: str, choice: str) -> httpx.Response:
    return await http.post(PAIR_RESPONSE.path, content=f"t={t}&answer={choice}", headers=FORM)


async def statuses(settings: Settings) -> dict[str, str]:
    """mentor>mentee: status of every stored pair."""
    engine = make_engine(settings.database_url_for("pairing"), schema="pairing")
    try:
        async with make_sessions(engine)() as session:
            rows = await session.execute(
                select(store.Pair.mentor_id, store.Pair.mentee_id, store.Pair.status)
            )
            return {f"{mentor}>{mentee}": status for mentor, mentee, status in rows}
    finally:
        await engine.dispose()


async def test_proposals_form_when_both_accept_and_a_decline_or_silence_rematches_that_mentee(
    tmp_path, nats_server, js, database_url
):
    conf = settings_for(tmp_path, nats_server.url, database_url, pairing_consent_required=True)
    clock = FixedClock(NOW)
    async with pairing(conf, clock) as http:
        await publish(js, "mentorship.participant.registered", registration(
            "prog", "m-go", role="mentor", capacity=1, skills_offered=["go"]))  # fmt: skip
        for mentor in ("m-2", "m-3"):
            await publish(js, "mentorship.participant.registered", registration(
                "prog", mentor, role="mentor", capacity=1))  # fmt: skip
        await publish(js, "mentorship.participant.registered", registration(
            "prog", "e-1", skills_sought=["go"]))  # fmt: skip
        await publish(js, "mentorship.participant.registered", registration("prog", "e-2"))
        await publish(js, "mentorship.matching.requested", envelope("prog", round_id="r1"))
        await reached(js, "matching.completed", 1)
        proposals = {p["mentee_id"]: p for p in await bodies_on(js, "mentorship.pair.proposed")}
        assert await count(js, "pair.formed") == 0
        first, second = proposals["e-1"], proposals["e-2"]
        assert first["mentor_id"] == "m-go" and first["reasons"] and first["language"] == "en"
        expires = dt.datetime.fromisoformat(first["expires_at"])
        assert expires == NOW + dt.timedelta(hours=72)

        # the page: a GET shows the proposal and changes nothing; bad links get a clear 400
        mine = token(conf, first, "e-1", expires)
        page = await http.get(PAIR_RESPONSE.path, params={"t": mine})
        assert page.status_code == 200 and 'method="post"' in page.text and "m-go" in page.text
        forged = await http.get(PAIR_RESPONSE.path, params={"t": mine[:-2] + "xx"})
        assert forged.status_code == 400 and "not valid" in forged.text
        stale = token(conf, first, "e-1", NOW - dt.timedelta(seconds=1))
        assert (await answer(http, stale, "accept")).status_code == 400
        assert await count(js, "pair.accepted") == 0

        # both accept e-1's proposal: pair.formed
        assert (await answer(http, mine, "accept")).status_code == 200
        assert (
            await answer(http, token(conf, first, "m-go", expires), "accept")
        ).status_code == 200
        await reached(js, "pair.formed", 1)
        [formed] = await bodies_on(js, "mentorship.pair.formed")
        assert (formed["pair_id"], formed["mentor_id"]) == (first["pair_id"], "m-go")
        assert await count(js, "pair.accepted") == 2

        # e-2 declines: a new proposal with another free mentor, e-1's pair untouched
        declined = await answer(http, token(conf, second, "e-2", expires), "decline")
        assert declined.status_code == 200
        await reached(js, "pair.proposed", 3)
        again = [
            p for p in await bodies_on(js, "mentorship.pair.proposed") if p["replaces_pair_id"]
        ]
        [rematch] = again
        assert rematch["replaces_pair_id"] == second["pair_id"] and rematch["mentee_id"] == "e-2"
        assert rematch["mentor_id"] not in ("m-go", second["mentor_id"])
        late = await answer(http, token(conf, second, second["mentor_id"], expires), "accept")
        assert late.status_code == 409 and "declined" in late.text

        # nobody answers the re-match: it expires on the durable timer; no mentor is left
        clock.advance(dt.timedelta(hours=73))
        await reached(js, "pair.expired", 1)
        [silence] = await bodies_on(js, "mentorship.pair.expired")
        assert silence["pair_id"] == rematch["pair_id"] and "no answer" in silence["reason"]
        assert sorted(silence["silent"]) == sorted([rematch["mentor_id"], "e-2"])
        assert await count(js, "pair.declined") == 1  # e-2's own decline only
        assert await count(js, "pair.proposed") == 3
        assert await count(js, "pair.formed") == 1
    assert await statuses(conf) == {
        "m-go>e-1": "active",
        f"{second['mentor_id']}>e-2": "declined",
        f"{rematch['mentor_id']}>e-2": "expired",
    }
