"""A program's stored round rules on a real nats-server and both databases: a coordinator sets
them over HTTP (`mentorship rules` through the same endpoints), and a round asked without rules
of its own forms what they imply."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from services.pairing.app import definition
from shared.clock import SystemClock
from shared.service import Service
from tests.integration.test_pairing_trigger import SECRET, completed, pairing
from tests.support.factories import envelope, publish, registration
from tests.support.serving import free_port, served
from tests.support.waiting import bodies_on, settings_for

AUTH = {"Authorization": f"Bearer {SECRET}"}
URL = "/programs/prog/rules"
# Berlin and New York share 10 working hours a week (15 in the weeks their clocks change apart);
# Berlin and Berlin 40: 1,000 minutes forms the first pair never, the second always
FAR_APART = {"min_weekly_minutes": 1000, "weights": {"skills": 500}}


async def register(js) -> None:
    registered = "mentorship.participant.registered"
    await publish(js, registered, registration("prog", "m-1", role="mentor", capacity=2))
    await publish(js, registered, registration("prog", "e-near"))
    await publish(js, registered, registration("prog", "e-far", timezone="America/New_York"))


async def test_a_round_without_rules_forms_what_the_programs_stored_rules_imply(
    tmp_path, nats_server, js, database_url
):
    conf = settings_for(tmp_path, nats_server.url, database_url, pairing_coordinator_secret=SECRET)
    async with pairing(conf) as http:
        await register(js)
        before = (await http.get(URL, headers=AUTH)).json()
        assert (before["source"], before["stored"], before["updated_at"]) == ("default", None, None)
        assert before["rules"]["min_weekly_minutes"] == 60
        assert before["rules"]["weights"]["skills"] == 400
        put = await http.put(URL, json=FAR_APART, headers=AUTH)
        assert put.status_code == 200, put.text
        shown = (await http.get(URL, headers=AUTH)).json()
        assert shown == put.json()
        assert (shown["source"], shown["stored"]["min_weekly_minutes"]) == ("program", 1000)
        assert shown["stored"]["objective"] is None  # not set: the default, as `rules` shows
        assert (shown["rules"]["weights"]["skills"], shown["rules"]["weights"]["goals"]) == (
            500, 150,
        )  # fmt: skip
        assert shown["updated_at"] is not None
        ask = envelope("prog", round_id="r1", requested_by="a test")
        await publish(js, "mentorship.matching.requested", ask)
        await completed(js, 1)
        [outcome] = await bodies_on(js, "mentorship.matching.completed")
        assert (outcome["rules_source"], outcome["pairs_formed"]) == ("program", 1)
        [pair] = await bodies_on(js, "mentorship.pair.formed")
        assert pair["mentee_id"] == "e-near"
        [waiting] = await bodies_on(js, "mentorship.mentee.unmatched")
        assert (waiting["participant_id"], waiting["reason"]) == ("e-far", "no_shared_time")
        # back to the defaults: the next round pairs the far mentee too
        reset = await http.delete(URL, headers=AUTH)
        assert (reset.status_code, reset.json()["source"], reset.json()["stored"]) == (
            200, "default", None,
        )  # fmt: skip
        assert (await http.get(URL, headers=AUTH)).json()["source"] == "default"
        await publish(js, "mentorship.matching.requested", envelope("prog", round_id="r2"))
        await completed(js, 2)
        second = [
            o for o in await bodies_on(js, "mentorship.matching.completed") if o["round_id"] == "r2"
        ]
        assert (second[0]["rules_source"], second[0]["pairs_formed"]) == ("default", 1)


async def test_bad_rules_are_refused_naming_the_rule_and_the_stored_ones_stay(
    tmp_path, nats_server, js, database_url
):
    conf = settings_for(tmp_path, nats_server.url, database_url, pairing_coordinator_secret=SECRET)
    async with pairing(conf) as http:
        assert (await http.put(URL, json={"min_weekly_minutes": 90}, headers=AUTH)).is_success
        bad = {"objective": "fastest", "weights": {"skils": 3}, "min_weekly_minutes": -5}
        refused = await http.put(URL, json=bad, headers=AUTH)
        assert refused.status_code == 422
        body = refused.json()
        named = {e["field"]: e["problem"] for e in body["errors"]}
        assert set(named) == {"objective", "weights.skils", "min_weekly_minutes"}
        assert "use one of: skills, goals" in named["weights.skils"]
        assert "greater than or equal to 0" in named["min_weekly_minutes"]
        assert "GET /programs/prog/rules" in body["detail"]
        not_json = await http.put(URL, content=b"{min: 1", headers=AUTH)
        assert not_json.status_code == 422 and "not JSON" in not_json.text
        kept = (await http.get(URL, headers=AUTH)).json()
        assert kept["stored"]["min_weekly_minutes"] == 90


async def test_the_rules_endpoints_need_the_coordinator_secret_and_are_documented(
    tmp_path, nats_server, js
):
    off = settings_for(tmp_path / "off", nats_server.url, None)
    async with pairing(off) as http:
        for method in ("GET", "PUT", "DELETE"):
            refused = await http.request(method, URL, json={})
            assert refused.status_code == 403 and "COORDINATOR_SECRET" in refused.text
    conf = settings_for(tmp_path, nats_server.url, None, pairing_coordinator_secret=SECRET)
    async with pairing(conf) as http:
        for method in ("GET", "PUT", "DELETE"):
            wrong = await http.request(method, URL, json={}, headers={"Authorization": "Bearer x"})
            assert wrong.status_code == 401
        assert (await http.get(URL, headers=AUTH)).json()["source"] == "default"  # none stored
        document = (await http.get("/openapi.json")).json()
    operations = document["paths"]["/programs/{program_id}/rules"]
    assert set(operations) == {"get", "put", "delete"}
    for operation in operations.values():
        assert {"200", "401", "403"} <= set(operation["responses"])
    put = operations["put"]
    assert "422" in put["responses"]
    ref = put["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.rsplit("/", 1)[-1] in document["components"]["schemas"]
    # every coordinator endpoint documents the secret's refusals
    for path, methods in document["paths"].items():
        if path.startswith("/programs/"):
            for method, operation in methods.items():
                assert {"401", "403"} <= set(operation["responses"]), (method, path)


async def mentorship(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """`mentorship ARGS` in its own process: exit code, stdout, stderr."""
    cli = Path(sys.executable).with_name("mentorship")
    proc = await asyncio.create_subprocess_exec(
        str(cli), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_mentorship_rules_set_show_reset_and_a_match_with_its_own_rules(
    tmp_path, nats_server, js
):
    conf = settings_for(tmp_path, nats_server.url, None, pairing_coordinator_secret=SECRET)
    port = free_port()
    async with served(Service(definition(), conf, SystemClock()), port):
        await register(js)
        env = {**os.environ, "MENTORSHIP_NATS_URL": nats_server.url,
               "MENTORSHIP_DATA_DIR": str(tmp_path / "cli"),
               "MENTORSHIP_PAIRING_HTTP_PORT": str(port),
               "MENTORSHIP_PAIRING_COORDINATOR_SECRET": SECRET}  # fmt: skip
        far = tmp_path / "far.json"
        far.write_text(json.dumps(FAR_APART))
        code, out, err = await mentorship(env, "rules", "set", str(far), "--program", "prog")
        assert code == 0, err
        rules, _ = json.JSONDecoder().raw_decode(out)
        assert (rules["min_weekly_minutes"], rules["weights"]["skills"]) == (1000, 500)
        assert "stored for prog at " in out and '"weights": {"skills": 500}' in out
        code, out, _ = await mentorship(env, "rules", "show", "--program", "prog")
        assert code == 0 and '"min_weekly_minutes": 1000' in out
        # a one-off round on its own rules (the defaults' 60 minutes): both mentees pair
        own = tmp_path / "own.json"
        own.write_text('{"objective": "quality"}')
        code, out, err = await mentorship(
            env, "match", "--program", "prog", "--rules", str(own), "--dry-run", "--timeout", "60"
        )
        assert code == 0, err
        outcome = json.loads(out[out.index("{") :])
        assert (outcome["rules_source"], outcome["pairs_formed"]) == ("request", 2)
        bad = tmp_path / "bad.json"
        bad.write_text('{"weights": {"skills": 99999}}')
        code, _, err = await mentorship(env, "rules", "set", str(bad), "--program", "prog")
        assert code == 1 and "weights.skills" in err and "less than or equal to 10000" in err
        wrong = {**env, "MENTORSHIP_PAIRING_COORDINATOR_SECRET": "nope"}
        code, _, err = await mentorship(wrong, "rules", "show", "--program", "prog")
        assert code == 1 and "refused the coordinator secret" in err
        code, out, _ = await mentorship(env, "rules", "reset", "--program", "prog")
        assert code == 0 and "the defaults: nothing is stored for prog" in out
