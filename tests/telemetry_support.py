"""The process's one in-memory metric reader and span exporter: OpenTelemetry lets a process set its meter and tracer
providers only once, so every test module that reads exported points or spans shares these; and the helpers those
tests drive a server with."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from client.ledger_client import LedgerClient
from server.telemetry import JsonLogFormatter

reader = InMemoryMetricReader()


def install_meter_provider() -> None:
    """Install the global meter provider reading into `reader`, unless this process already has it."""
    if not isinstance(metrics.get_meter_provider(), MeterProvider):
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))


def metric_sum(name: str) -> int:
    """The sum of every data point of the counter or histogram count `name` exported so far (cumulative)."""
    data = reader.get_metrics_data()
    total = 0
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    total += sum(int(point.value) for point in metric.data.data_points)  # type: ignore[union-attr]
    return total


# -- spans ---------------------------------------------------------------------------------------------------------


class _WhileRecording(SpanProcessor):
    """Exports only while a test listens: the global tracer provider outlives each test."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.inner = SimpleSpanProcessor(exporter)
        self.on = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.on:
            self.inner.on_end(span)


span_exporter = InMemorySpanExporter()
_switch = _WhileRecording(span_exporter)


def install_tracer_provider() -> None:
    """Install the global SDK tracer provider (unless installed) and the recording exporter on it."""
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(TracerProvider())
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "another test installed a tracer provider this test cannot use"
    if _switch not in provider._active_span_processor._span_processors:
        provider.add_span_processor(_switch)


@contextmanager
def capture() -> Iterator[InMemorySpanExporter]:
    """Record the spans that end inside the block."""
    install_tracer_provider()
    span_exporter.clear()
    _switch.on = True
    try:
        yield span_exporter
    finally:
        _switch.on = False


# -- logs and servers ------------------------------------------------------------------------------------------------


class JsonLines(logging.Handler):
    """Formats at emit time, in the thread (and span) that logged, as the server's stderr handler does."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonLogFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


def append(port: int, *events: dict[str, Any]) -> None:
    """Append `events` in one batch to the server on 127.0.0.1:`port`."""
    with LedgerClient(f"127.0.0.1:{port}", retries=0) as client:
        client.append_events(list(events))


def eventually(done: Callable[[], bool], what: str, seconds: float = 20.0) -> None:
    """Wait for a background thread's work (the closer, the signer): poll `done` until true."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
