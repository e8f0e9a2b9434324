"""Trace context travels from a consumed event to the events it causes, spans exported or not."""

from __future__ import annotations

from shared import telemetry

TRACE = "0af7651916cd43dd8448eb211c80319c"
HEADERS = {"traceparent": f"00-{TRACE}-b7ad6b7169203331-01"}


def test_without_exported_spans_the_publishers_trace_is_current_while_handling():
    assert not telemetry._exporting
    with telemetry.consumer_span("x process", HEADERS, dict):
        inside = telemetry.current_traceparent()
    assert inside is not None and inside.split("-")[1] == TRACE
    assert telemetry.current_traceparent() is None  # detached afterwards


def test_an_event_without_trace_context_gets_none():
    with telemetry.consumer_span("x process", {"Nats-Msg-Id": "1"}, dict):
        assert telemetry.current_traceparent() is None
