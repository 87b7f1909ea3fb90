"""The process's one tracer provider for tests that read spans: OpenTelemetry lets a process set it only once, so
every module that captures spans adds its exporter through `capture`, which records only while a test listens."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class _WhileRecording(SpanProcessor):
    """Exports only while a test listens: the global tracer provider outlives each test."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.inner = SimpleSpanProcessor(exporter)
        self.on = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.on:
            self.inner.on_end(span)


exporter = InMemorySpanExporter()
_switch = _WhileRecording(exporter)


def install_tracer_provider() -> None:
    """Install the global SDK tracer provider (unless installed) and this module's recording exporter on it."""
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
    exporter.clear()
    _switch.on = True
    try:
        yield exporter
    finally:
        _switch.on = False
