"""The dashboard in a real browser (Debian's headless Chromium, driven by Playwright): a
coordinator enters a token on the start page, the charts show the API's numbers, no console
errors; a screenshot is kept in test-artifacts/dashboard.png."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import httpx
import pytest
from playwright.async_api import async_playwright

from services.insights.app import definition
from shared.clock import SystemClock
from shared.service import Service
from tests.integration.test_insights_api import auth, fed
from tests.integration.test_insights_checks import served
from tests.integration.test_insights_service import Insights
from tests.support.waiting import eventually, settings_for
from tests.unit.insights.scenario import PROGRAM, sample_program

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("MENTORSHIP_TEST_ARTIFACTS", "test-artifacts"))


@pytest.fixture
def chromium() -> str:
    if not CHROMIUM.exists():
        pytest.fail("no /usr/bin/chromium: apt-get install -y chromium (.ci/run does)")
    return str(CHROMIUM)


def keep(shot: Path) -> None:
    """Copies the screenshot where CI keeps artefacts."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "dashboard.png")


async def test_the_dashboard_shows_the_programs_numbers_in_a_real_browser(
    tmp_path, nats_server, js, chromium
):
    service = Service(definition(), settings_for(tmp_path, nats_server.url, None), SystemClock())
    async with served(service) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        app = Insights(service, client)
        token = await app.token_for(PROGRAM)
        await fed(app, js, token, sample_program(now=dt.datetime.now(dt.UTC)).events)

        # pair-2's contact deadline (a durable timer, done soon after the events) moves it to
        # "watch": read the charts once it has, so the page and the charts show the same state
        async def charts_settled() -> bool:
            response = await client.get(f"/programs/{PROGRAM}/charts?weeks=12", headers=auth(token))
            return bool(response.json()["pairs_by_health"].get("watch", 0) == 1)

        await eventually(charts_settled, timeout=30, what="pair-2's contact deadline scored")
        charts = (
            await client.get(f"/programs/{PROGRAM}/charts?weeks=12", headers=auth(token))
        ).json()
        at_risk = (await client.get(f"/programs/{PROGRAM}/at-risk", headers=auth(token))).json()
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium, headless=True)
            page = await browser.new_page(viewport={"width": 1200, "height": 1000})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            await page.goto(base_url + "/")
            await page.fill("#token", token)
            await page.click("button[type=submit]")
            await page.wait_for_selector("body[data-loaded=true]", timeout=15_000)

            async def bars(chart: str) -> dict[str, str]:
                return dict(
                    await page.eval_on_selector_all(
                        f"#{chart} rect",
                        "rs => rs.map(r => [r.dataset.label, r.dataset.value])",
                    )
                )

            held = await bars("sessions-held")
            assert held == {w["week"]: str(w["sessions_held"]) for w in charts["weeks"]}
            assert sum(int(v) for v in held.values()) == 5
            adherence = await bars("checkin-adherence")
            assert {k: float(v) if v else None for k, v in adherence.items()} == {
                w["week"]: w["checkin_adherence"] for w in charts["weeks"]
            }
            assert sorted(v for v in adherence.values() if v) == ["0.5", "0.5", "1"]
            health = await bars("health")
            assert health == {k: str(v) for k, v in charts["pairs_by_health"].items()}
            assert health["at_risk"] == "1"
            # every equity group of the sample is too small to show
            assert await bars("equity") == {}
            rows = await page.eval_on_selector_all(
                "#at-risk tbody tr", "rs => rs.map(r => r.dataset.pair)"
            )
            assert rows == [p["pair_id"] for p in at_risk["items"]] == ["pair-1"]
            shot = tmp_path / "dashboard.png"
            await page.screenshot(path=str(shot), full_page=True)
            await browser.close()
        keep(shot)
        assert problems == []


async def test_the_dashboard_without_a_token_says_what_to_do(tmp_path, nats_server, js, chromium):
    service = Service(definition(), settings_for(tmp_path, nats_server.url, None), SystemClock())
    async with served(service) as base_url, async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, headless=True)
        page = await browser.new_page()
        await page.goto(f"{base_url}/dashboard?program={PROGRAM}")
        await page.wait_for_selector("#status.error", timeout=15_000)
        text = await page.text_content("#status")
        await browser.close()
    assert text is not None and "mentorship token create" in text
