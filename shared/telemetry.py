"""OpenTelemetry tracing: setup, and carrying trace context through headers and the outbox."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
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
_exporting = False  # set by setup_tracing when spans go somewhere


def _one_line(span: ReadableSpan) -> str:
    return str(span.to_json(indent=None)) + "\n"


def setup_tracing(service: str, settings: Settings) -> TracerProvider | None:
    """Installs a tracer provider when an exporter is configured (console off by default).

    Without one, no spans are recorded at all (a span per event costs more than it is worth
    unexported); trace context still travels from consumed events to the events they cause.
    """
    global _exporting
    if not (settings.trace_console or settings.trace_file or settings.otlp_endpoint):
        return None
    _exporting = True
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


@functools.cache
def tracer() -> trace.Tracer:
    """The project's tracer (a proxy until a provider is installed, then that provider's)."""
    return trace.get_tracer("mentorship")


_NOTHING = contextlib.nullcontext()


def consumer_span(
    name: str,
    headers: Mapping[str, str] | None,
    attributes: Callable[[], Mapping[str, object]],
) -> contextlib.AbstractContextManager[object]:
    """The span of processing one consumed event, child of the publisher's trace.

    When spans are not exported, only the publisher's trace context is made current, so the
    events this one causes still carry it (and without one, nothing is done at all; the
    attributes are only asked for when a span is made).
    """
    parent = context_from(headers) if headers and "traceparent" in headers else None
    if _exporting:
        return tracer().start_as_current_span(
            name,
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={key: str(value) for key, value in attributes().items()},
        )
    if parent is not None:
        return _attached(parent)
    return _NOTHING


@contextlib.contextmanager
def _attached(context: otel_context.Context) -> Iterator[None]:
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


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
