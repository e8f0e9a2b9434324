"""The AsyncAPI documents describe what each service really consumes and emits."""

from __future__ import annotations

import pytest

from cli.main import asyncapi_documents
from shared.clock import SystemClock
from shared.service import Service
from shared.settings import SERVICES, Settings


def _service(name: str) -> Service:
    module = __import__(f"services.{name}.app", fromlist=["definition"])
    settings = Settings()
    return Service(module.definition(), settings, SystemClock())


@pytest.mark.parametrize("name", SERVICES)
def test_every_subscription_and_emitted_event_is_a_channel_with_its_schema(name):
    service = _service(name)
    document = service.asyncapi()
    addresses = {channel["address"] for channel in document["channels"].values()}
    definition = service.definition
    wanted = {s.event.subject for s in definition.subscriptions} | {
        e.subject for e in definition.emits
    }
    assert addresses == wanted
    # one operation per consumed subject and one per emitted one, also for a subject that a
    # service both consumes and emits (nothing overwritten)
    actions = sorted(
        (op["action"], document["channels"][op["channel"]["$ref"].rsplit("/", 1)[-1]]["address"])
        for op in document["operations"].values()
    )
    assert actions == sorted(
        [("receive", s.event.subject) for s in definition.subscriptions]
        + [("send", e.subject) for e in definition.emits]
    )
    schemas = document["components"]["schemas"]
    for event in [s.event for s in definition.subscriptions] + list(definition.emits):
        assert event.__name__ in schemas
        assert {"event_id", "occurred_at", "program_id"} <= set(schemas[event.__name__]["required"])


@pytest.mark.parametrize("name", SERVICES)
def test_every_message_documents_the_dedupe_and_cloudevents_headers(name):
    messages = _service(name).asyncapi()["components"]["messages"].values()
    for message in messages:
        assert message["headers"]["required"] == ["Nats-Msg-Id"]
        assert "ce-type" in message["headers"]["properties"]


def test_committed_documents_match_the_code():
    from pathlib import Path

    folder = Path(__file__).parents[3] / "docs" / "asyncapi"
    for name, text in asyncapi_documents().items():
        assert (folder / f"{name}.json").read_text() == text, f"run `mentorship asyncapi` ({name})"
