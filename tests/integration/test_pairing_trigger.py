"""The coordinator's trigger against a real nats-server: pairing's HTTP endpoint and
`mentorship match` publish matching.requested; a dry run previews and forms nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from services.pairing.app import definition
from shared.clock import SystemClock
from shared.service import Service
from shared.settings import Settings
from tests.support.factories import publish, registration
from tests.support.waiting import bodies_on, eventually, settings_for, subject_counts

SECRET = "s3cret-for-coordinators"


@contextlib.asynccontextmanager
async def pairing(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    service = Service(definition(), settings, SystemClock())
    async with service.started():
        transport = httpx.ASGITransport(app=service.http_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://pairing") as client:
            yield client


async def completed(js, n: int) -> None:
    async def check() -> bool:
        return (await subject_counts(js)).get("mentorship.matching.completed", 0) >= n

    await eventually(check, what=f"{n} matching.completed")


async def register(js) -> None:
    await publish(js, "mentorship.participant.registered",
                  registration("prog", "m-1", role="mentor", capacity=2))  # fmt: skip
    for i in range(3):
        await publish(js, "mentorship.participant.registered", registration("prog", f"e-{i}"))


async def test_the_endpoint_needs_the_coordinator_secret_and_publishes_the_round(
    tmp_path, nats_server, js
):
    off = settings_for(tmp_path / "off", nats_server.url, None)
    async with pairing(off) as http:
        refused = await http.post("/programs/prog/matching", json={})
        assert refused.status_code == 403 and "COORDINATOR_SECRET" in refused.text
    conf = settings_for(tmp_path, nats_server.url, None, pairing_coordinator_secret=SECRET)
    async with pairing(conf) as http:
        await register(js)
        url = "/programs/prog/matching"
        wrong = await http.post(url, json={}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        auth = {"Authorization": f"Bearer {SECRET}"}
        preview = await http.post(url, json={"dry_run": True}, headers=auth)
        assert preview.status_code == 202 and preview.json()["dry_run"] is True
        await completed(js, 1)
        [outcome] = await bodies_on(js, "mentorship.matching.completed")
        assert (outcome["dry_run"], outcome["pairs_formed"], outcome["unmatched_mentees"]) == (
            True, 2, 1,
        )  # fmt: skip
        assert outcome["round_id"] == preview.json()["round_id"]
        assert (await subject_counts(js)).get("mentorship.pair.formed", 0) == 0
        real = await http.post(url, json={"round_id": "r-real"}, headers=auth)
        assert real.status_code == 202 and real.json()["round_id"] == "r-real"
        await completed(js, 2)
        assert (await subject_counts(js))["mentorship.pair.formed"] == 2


async def test_unmatched_mentees_are_announced_and_served_with_why(
    tmp_path, nats_server, js, database_url
):
    conf = settings_for(tmp_path, nats_server.url, database_url, pairing_coordinator_secret=SECRET)
    async with pairing(conf) as http:
        registered = "mentorship.participant.registered"
        await publish(js, registered, registration("prog", "m-1", role="mentor", capacity=1))
        await publish(js, registered, registration("prog", "e-0"))
        await publish(js, registered, registration("prog", "e-1"))
        await publish(js, registered, registration("prog", "e-fr", languages=["fr"]))
        auth = {"Authorization": f"Bearer {SECRET}"}
        before = await http.get("/programs/prog/unmatched", headers=auth)
        assert before.json() == {"round_id": None, "unmatched": []}
        await http.post("/programs/prog/matching", json={"round_id": "r1"}, headers=auth)
        await completed(js, 1)
        [formed] = await bodies_on(js, "mentorship.pair.formed")
        full = "e-1" if formed["mentee_id"] == "e-0" else "e-0"
        sent = await bodies_on(js, "mentorship.mentee.unmatched")
        assert sorted((e["participant_id"], e["reason"], e["round_id"]) for e in sent) == sorted(
            [(full, "capacity", "r1"), ("e-fr", "no_language", "r1")]
        )
        assert all(e["detail"] for e in sent)
        served = (await http.get("/programs/prog/unmatched", headers=auth)).json()
        assert served["round_id"] == "r1"
        assert {(u["mentee_id"], u["reason"]) for u in served["unmatched"]} == {
            (full, "capacity"),
            ("e-fr", "no_language"),
        }
        refused = await http.get("/programs/prog/unmatched", headers={"Authorization": "Bearer x"})
        assert refused.status_code == 401


async def test_a_round_uses_the_rules_it_is_asked_for(tmp_path, nats_server, js, database_url):
    conf = settings_for(tmp_path, nats_server.url, database_url, pairing_coordinator_secret=SECRET)
    async with pairing(conf) as http:
        registered = "mentorship.participant.registered"
        for program in ("default", "strict"):
            mentor = registration(program, "m", role="mentor", capacity=2, department="eng")
            await publish(js, registered, mentor)
            await publish(js, registered, registration(program, "same", department="eng"))
            await publish(js, registered, registration(program, "other", department="ops"))
        auth = {"Authorization": f"Bearer {SECRET}"}
        await http.post("/programs/default/matching", json={"round_id": "r"}, headers=auth)
        strict = {"round_id": "r", "rules": {"separate_departments": True}}
        await http.post("/programs/strict/matching", json=strict, headers=auth)
        await completed(js, 2)
        formed = await bodies_on(js, "mentorship.pair.formed")
        pairs = sorted((p["program_id"], p["mentee_id"]) for p in formed)
        # by default a department may pair within itself; the strict program's rule forbids it
        assert pairs == [("default", "other"), ("default", "same"), ("strict", "other")]
        [waiting] = await bodies_on(js, "mentorship.mentee.unmatched")
        assert (waiting["program_id"], waiting["participant_id"], waiting["reason"]) == (
            "strict", "same", "ruled_out"
        )  # fmt: skip
        bad = {"rules": {"objective": "fastest"}}
        refused = await http.post("/programs/strict/matching", json=bad, headers=auth)
        assert refused.status_code == 422


async def test_mentorship_match_dry_run_prints_the_preview_and_forms_nothing(
    tmp_path, nats_server, js
):
    conf = settings_for(tmp_path, nats_server.url, None)
    async with pairing(conf):
        await register(js)
        env = {**os.environ, "MENTORSHIP_NATS_URL": nats_server.url,
               "MENTORSHIP_DATA_DIR": str(tmp_path / "cli")}  # fmt: skip
        cli = Path(sys.executable).with_name("mentorship")
        proc = await asyncio.create_subprocess_exec(
            str(cli), "match", "--program", "prog", "--dry-run", "--timeout", "60",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert "(dry run)" in text
    shown = json.loads(text[text.index("{") :])
    assert (shown["dry_run"], shown["pairs_formed"], shown["unmatched_mentees"]) == (True, 2, 1)
    assert (await subject_counts(js)).get("mentorship.pair.formed", 0) == 0
