"""OpenTelemetry tracing: setup, and carrying trace context through headers and the outbox."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import IO

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)

from shared.settings import Settings

_open_files: list[IO[str]] = []


def _one_line(span: ReadableSpan) -> str:
    return str(span.to_json(indent=None)) + "\n"


def setup_tracing(service: str, settings: Settings) -> TracerProvider:
    """Installs a tracer provider; exporters only where configured (console off by default)."""
    provider = TracerProvider(resource=Resource.create({"service.name": f"mentorship-{service}"}))
    if settings.trace_console:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    if settings.trace_file is not None:
        path = Path(str(settings.trace_file).replace("{service}", service))
        path.parent.mkdir(parents=True, exist_ok=True)
        out = path.open("a", encoding="utf-8", buffering=1)
        _open_files.append(out)
        exporter = ConsoleSpanExporter(out=out, formatter=_one_line)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(settings.otlp_endpoint)))
        _setup_metrics(provider.resource, settings.otlp_endpoint)
    trace.set_tracer_provider(provider)
    return provider


def _setup_metrics(resource: Resource, traces_endpoint: str) -> None:
    """Counters (dead letters ...) go to the same collector, on its /v1/metrics path."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    endpoint = traces_endpoint.removesuffix("/v1/traces") + "/v1/metrics"
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint))
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))


def tracer() -> trace.Tracer:
    """The project's tracer."""
    return trace.get_tracer("mentorship")


def current_traceparent() -> str | None:
    """The W3C traceparent of the active span, to store beside an outbox row."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def context_from(headers: Mapping[str, str] | None) -> otel_context.Context:
    """The trace context carried by message headers (or a stored traceparent)."""
    return propagate.extract(dict(headers or {}))


def context_from_traceparent(traceparent: str | None) -> otel_context.Context:
    """The trace context of a stored traceparent."""
    return context_from({"traceparent": traceparent} if traceparent else None)
