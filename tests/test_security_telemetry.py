"""OpenTelemetry on a real server: RPC spans with storage spans under them, trace ids in JSON logs, append metrics."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from client.ledger_client import LedgerClient
from server.app import start_server
from server.telemetry import configure
from tests.conftest import EventFactory, FixedClock
from tests.telemetry_support import (
    JsonLines,
    capture,
    install_meter_provider,
    install_tracer_provider,
    metric_sum,
)


@pytest.fixture(scope="module", autouse=True)
def global_providers() -> None:
    """The process's global providers, installed once (OpenTelemetry allows setting them only once)."""
    install_tracer_provider()
    install_meter_provider()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with capture() as exporter:
        yield exporter


def test_an_append_is_an_rpc_span_with_storage_spans_under_it_and_its_trace_id_is_logged(
    db_url: str, make_event: EventFactory, spans: InMemorySpanExporter
) -> None:
    """Both stores run their append statements on the driver's own cursor (SQLite's plain groups, PostgreSQL's
    pipelines): those get SQL spans too, as SQLAlchemy's statements do."""
    lines = JsonLines()
    access = logging.getLogger("usageledger.access")
    access.addHandler(lines)
    previous_level = access.level
    access.setLevel(logging.INFO)
    appended_before = metric_sum("usageledger.events.appended")
    running = start_server(db_url, clock=FixedClock(), tracing=True)
    try:
        with LedgerClient(f"127.0.0.1:{running.port}", retries=0) as client:
            client.append_events(
                [
                    make_event(),
                    make_event(type="WORKLOAD_READY"),
                    make_event(type="WORKLOAD_STOPPED", stop_reason="SCALED_DOWN"),
                ]
            )
    finally:
        running.stop(grace=None)
        access.removeHandler(lines)
        access.setLevel(previous_level)

    finished: Sequence[ReadableSpan] = spans.get_finished_spans()
    [rpc] = [s for s in finished if s.name == "/usageledger.v1.LedgerService/AppendEvents"]
    assert rpc.kind is trace.SpanKind.SERVER and rpc.context is not None
    [append] = [s for s in finished if s.name == "ledger.store.append"]
    assert append.parent is not None and append.parent.span_id == rpc.context.span_id
    assert append.context is not None and append.context.trace_id == rpc.context.trace_id
    assert append.attributes is not None and append.attributes["entries"] == 3
    sql = [s for s in finished if s.name.startswith("db ") and s.parent and s.parent.span_id == append.context.span_id]
    assert {s.name for s in sql} >= {"db INSERT"}
    assert any(str((s.attributes or {}).get("db.statement", "")).startswith("INSERT INTO entries") for s in sql)
    assert all("ulk_" not in str(s.attributes) for s in finished)

    trace_id = format(rpc.context.trace_id, "032x")
    [logged] = [line for line in lines.lines if line.get("rpc_method") == rpc.name]
    assert logged["trace_id"] == trace_id and logged["code"] == "OK" and logged["level"] == "INFO"
    assert metric_sum("usageledger.events.appended") - appended_before == 3


def test_a_refused_call_is_marked_on_its_span(
    tmp_path: Path, make_event: EventFactory, spans: InMemorySpanExporter
) -> None:
    running = start_server(f"sqlite:///{tmp_path / 'ledger.db'}", clock=FixedClock(), tracing=True)
    try:
        with LedgerClient(f"127.0.0.1:{running.port}", retries=0) as client, pytest.raises(grpc.RpcError):
            client.append_events([make_event(instance_type="TPU-9000")])
    finally:
        running.stop(grace=None)
    [rpc] = [s for s in spans.get_finished_spans() if s.name.endswith("/AppendEvents")]
    assert rpc.attributes is not None and rpc.attributes["rpc.grpc.status_code"] == 3  # INVALID_ARGUMENT
    assert not [s for s in spans.get_finished_spans() if s.name == "ledger.store.append"]


def test_telemetry_is_off_unless_an_exporter_is_named() -> None:
    assert not configure({}).tracing
    assert not configure({"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}).tracing
    assert not configure({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}).tracing
    with pytest.raises(ValueError, match="zipkin"):
        configure({"OTEL_TRACES_EXPORTER": "zipkin"})
