"""insights against a real nats-server and database: raw events in, the overview API out."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx

from services.insights import grants
from services.insights.app import definition
from services.insights.tokens import new_token
from shared.clock import SystemClock
from shared.service import Service
from tests.support.factories import envelope, publish, registration
from tests.support.waiting import eventually, messages_on, settings_for, subject_counts

REGISTERED = "mentorship.participant.registered"
FORMED = "mentorship.pair.formed"
SENT = "mentorship.notification.sent"
FAILED = "mentorship.notification.failed"
DLQ = "mentorship.dlq.insights"


class Insights:
    """A running insights service and an HTTP client on its app, in this process."""

    def __init__(self, service: Service, client: httpx.AsyncClient) -> None:
        self.service = service
        self.client = client

    async def token_for(self, program_id: str) -> str:
        """A coordinator's token for the program, stored as `mentorship token create` does."""
        token = new_token()
        running = self.service.running
        assert running is not None
        async with running.sessions() as session, session.begin():
            await grants.add_token(
                session,
                token=token,
                program_id=program_id,
                label="test",
                created_at=running.clock.now(),
            )
        return token

    async def overview(self, program_id: str, token: str) -> dict[str, Any]:
        """GET /programs/{program_id}/overview with the token."""
        response = await self.client.get(
            f"/programs/{program_id}/overview", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@contextlib.asynccontextmanager
async def insights(settings: Any) -> AsyncIterator[Insights]:
    """insights started for real; its HTTP app served in-process (no port)."""
    service = Service(definition(), settings, SystemClock())
    async with service.started():
        transport = httpx.ASGITransport(app=service.http_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://insights") as client:
            yield Insights(service, client)


def delivery_report(subject: str, program_id: str, delivery_id: str) -> dict[str, Any]:
    """A notification.sent or notification.failed body, as notifications publishes it."""
    about = {
        "delivery_id": delivery_id,
        "recipient_id": "mentee-0",
        "kind": "session.kickoff",
        "channel": "email",
        "source_event_id": str(uuid.uuid4()),
    }
    if subject == SENT:
        return envelope(program_id, **about, message_id=f"<{delivery_id}@mentorship>")
    return envelope(program_id, **about, attempts=5, reason="550 mailbox unavailable")


async def test_registrations_and_a_pair_formed_show_in_the_overview(
    tmp_path, nats_server, js, database_url
):
    settings = settings_for(tmp_path, nats_server.url, database_url)
    async with insights(settings) as app:
        token_a = await app.token_for("prog-a")
        for i in range(3):
            await publish(js, REGISTERED, registration("prog-a", f"mentor-{i}", role="mentor"))
        for i in range(5):
            zone = "Asia/Tokyo" if i % 2 else "Europe/Berlin"
            await publish(js, REGISTERED, registration("prog-a", f"mentee-{i}", timezone=zone))
        await publish(js, REGISTERED, registration("prog-b", "mentee-0"))
        pair = envelope(
            "prog-a",
            pair_id="pair-1",
            round_id="r1",
            mentor_id="mentor-0",
            mentee_id="mentee-0",
            language="en",
        )
        await publish(js, FORMED, pair)

        async def projected() -> bool:
            overview = await app.overview("prog-a", token_a)
            return overview["participants"].get("mentee") == 5 and overview["mentees_matched"]

        await eventually(projected, what="prog-a's registrations and pair in the overview")
        overview = await app.overview("prog-a", token_a)
        assert overview["participants"] == {"mentor": 3, "mentee": 5}
        assert (overview["match_rate"], overview["pairs_by_state"]) == (0.2, {"formed": 1})
        assert overview["events_seen"] == {"pairs formed": 1, "participants registered": 8}
        # the token is scoped to its program
        other = await app.client.get(
            "/programs/prog-b/overview", headers={"Authorization": f"Bearer {token_a}"}
        )
        assert other.status_code == 403
        assert (await app.client.get("/programs/prog-a/overview")).status_code == 401


async def test_a_failure_report_of_another_program_naming_a_delivery_is_dead_lettered(
    tmp_path, nats_server, js, database_url
):
    settings = settings_for(tmp_path, nats_server.url, database_url)
    async with insights(settings) as app:
        token_a, token_b = await app.token_for("prog-a"), await app.token_for("prog-b")
        await publish(js, SENT, delivery_report(SENT, "prog-a", "d-1"))
        await publish(js, FAILED, delivery_report(FAILED, "prog-a", "d-2"))

        async def both_reported() -> bool:
            overview = await app.overview("prog-a", token_a)
            return overview["emails"] == {"sent": 1, "failed": 1}

        await eventually(both_reported, what="prog-a's two deliveries")
        before = await app.overview("prog-a", token_a)
        await publish(js, FAILED, delivery_report(FAILED, "prog-b", "d-1"))

        async def dead_lettered() -> bool:
            return (await subject_counts(js)).get(DLQ, 0) == 1

        await eventually(dead_lettered, what="the failure report's dead letter")
        [letter] = await messages_on(js, DLQ)
        headers = letter.headers or {}
        assert FAILED in headers.values()
        [reason] = [v for v in headers.values() if "belongs to another program" in v]
        assert "delivery 'd-1'" in reason and "'prog-b'" in reason
        assert await app.overview("prog-a", token_a) == before
        overview_b = await app.overview("prog-b", token_b)
        assert overview_b["emails"] == {"sent": 0, "failed": 0}
        assert overview_b["events_seen"] == {}
