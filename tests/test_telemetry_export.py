"""Telemetry leaving a real `ledger-server` process: the Prometheus scrape endpoint over loopback, and OTLP over
HTTP (traces and logs, the access log line carrying its RPC's trace id) into a receiver this test runs."""

from __future__ import annotations

import re
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from client.ledger_client import LedgerClient
from tests.billing_support import event
from tests.server_support import ledger_server, module_command

METRICS_RE = re.compile(r"metrics on (http://[^ ]+/metrics)")


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


def recent_events() -> list[dict[str, object]]:
    """A closed session an hour ago (the server runs on the wall clock)."""
    from ledger.timeutil import MICROS_PER_SECOND, system_clock

    now = system_clock()
    return [
        event("acme", "wl-1", "WORKLOAD_UP", now - 3600 * MICROS_PER_SECOND),
        event("acme", "wl-1", "WORKLOAD_STOPPED", now - 1800 * MICROS_PER_SECOND, stop_reason="COMPLETED"),
    ]


def test_prometheus_scrapes_rpc_latency_and_ledger_metrics_over_loopback(database_url: str) -> None:
    with ledger_server(database_url, "--no-signing", "--metrics-listen", "127.0.0.1:0") as server:
        [url] = [m.group(1) for line in server.lines if (m := METRICS_RE.search(line))]
        assert url.startswith("http://127.0.0.1:")
        with LedgerClient(server.target, retries=0) as client:
            client.append_events(recent_events())
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            text = response.read().decode()
    series = [line for line in text.splitlines() if line.startswith("rpc_server_duration_milliseconds_count{")]
    [append] = [line for line in series if 'rpc_method="AppendEvents"' in line]
    assert 'rpc_grpc_status_code="0"' in append and 'rpc_service="usageledger.v1.LedgerService"' in append
    assert float(append.rsplit(" ", 1)[1]) == 1
    assert re.search(r"^usageledger_events_appended_total(\{[^}]*\})? 2(\.0)?$", text, re.M), "appended events"
    assert re.search(r'^usageledger_rollup_lag\{[^}]*org_id="acme"[^}]*\} 2(\.0)?$', text, re.M), "rollup lag"


def test_metrics_listen_is_off_by_default_and_refused_off_loopback(database_url: str) -> None:
    with ledger_server(database_url, "--no-signing") as server:
        assert not [line for line in server.lines if "metrics on" in line]
    refused = subprocess.run(
        [*module_command(), "--database-url", database_url, "--no-signing", "--metrics-listen", "0.0.0.0:0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "--metrics-allow-remote" in refused.stderr
    bad = subprocess.run(
        [*module_command(), "--database-url", database_url, "--metrics-listen", "9464"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "HOST:PORT" in bad.stderr


class _Receiver(BaseHTTPRequestHandler):
    posts: ClassVar[list[tuple[str, bytes]]] = []  # each receiver gets its own list (otlp_receiver)
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.lock:
            self.posts.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *_: object) -> None:  # the test's output stays quiet
        pass


@pytest.fixture
def otlp_receiver() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    posts: list[tuple[str, bytes]] = []
    handler = type("Receiver", (_Receiver,), {"posts": posts})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", posts
    server.shutdown()
    server.server_close()


def test_otlp_over_http_carries_traces_and_logs_with_the_rpc_trace_id(
    database_url: str, otlp_receiver: tuple[str, list[tuple[str, bytes]]]
) -> None:
    endpoint, posts = otlp_receiver
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
    }
    with ledger_server(database_url, "--no-signing", env=env) as server:
        with LedgerClient(server.target, retries=0) as client:
            client.append_events(recent_events())
        deadline = time.monotonic() + 30
        append_span, access_line = None, None
        while time.monotonic() < deadline and not (append_span and access_line):
            for path, body in list(posts):
                if path == "/v1/traces":
                    traces = ExportTraceServiceRequest.FromString(body)
                    for span in (s for r in traces.resource_spans for sc in r.scope_spans for s in sc.spans):
                        if span.name == "/usageledger.v1.LedgerService/AppendEvents":
                            append_span = span
                elif path == "/v1/logs":
                    logs = ExportLogsServiceRequest.FromString(body)
                    for record in (x for r in logs.resource_logs for sc in r.scope_logs for x in sc.log_records):
                        if "AppendEvents OK" in record.body.string_value:
                            access_line = record
            time.sleep(0.05)
    assert append_span is not None, f"no AppendEvents span among {[p for p, _ in posts]}"
    assert access_line is not None, "no access-log record over OTLP"
    assert access_line.trace_id == append_span.trace_id and access_line.span_id == append_span.span_id


def test_the_otlp_protocol_is_chosen_per_signal_and_unknown_ones_are_refused() -> None:
    from server.exporters import MetricsListen, exporter_names, otlp_protocol

    assert otlp_protocol({}, "logs") == "grpc"  # this server's default: collectors on port 4317 keep working
    both = {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}
    assert (otlp_protocol(both, "traces"), otlp_protocol(both, "metrics")) == ("grpc", "http/protobuf")
    with pytest.raises(ValueError, match="http/json"):
        otlp_protocol({"OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "http/json"}, "logs")
    assert exporter_names({"OTEL_LOGS_EXPORTER": "otlp, console"}, "logs") == ["otlp", "console"]
    with pytest.raises(ValueError, match="OTEL_LOGS_EXPORTER"):
        exporter_names({"OTEL_LOGS_EXPORTER": "syslog"}, "logs")
    assert MetricsListen.parse("[::1]:9464") == MetricsListen("::1", 9464)
