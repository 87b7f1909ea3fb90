"""Which OpenTelemetry exporters the standard OTEL_* variables name, for traces, metrics and logs, and the
Prometheus scrape endpoint (`--metrics-listen`).

OTLP goes over gRPC unless OTEL_EXPORTER_OTLP_PROTOCOL (or the signal's own OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL)
says `http/protobuf`; each exporter then reads its endpoint, headers and certificates from the OTEL_EXPORTER_OTLP_*
variables itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Signal = Literal["traces", "metrics", "logs"]

_PROTOCOLS = ("grpc", "http/protobuf")
_NAMES = ("otlp", "console")


def exporter_names(environ: Mapping[str, str], signal: Signal) -> list[str]:
    """The exporters OTEL_<SIGNAL>_EXPORTER names (`none` and unset: none); ValueError for one not supported."""
    variable = f"OTEL_{signal.upper()}_EXPORTER"
    names = [n.strip().lower() for n in environ.get(variable, "").split(",") if n.strip()]
    for name in names:
        if name not in (*_NAMES, "none"):
            raise ValueError(f"{variable}: {name!r} is not supported here (use otlp, console or none)")
    return [n for n in names if n != "none"]


def otlp_protocol(environ: Mapping[str, str], signal: Signal) -> str:
    """The OTLP transport for `signal`: its own variable, else the general one, else gRPC (this server's default,
    so an endpoint on port 4317 keeps working)."""
    for variable in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        chosen = environ.get(variable, "").strip().lower()
        if chosen:
            if chosen not in _PROTOCOLS:
                raise ValueError(f"{variable}: {chosen!r} is not supported here (use grpc or http/protobuf)")
            return chosen
    return "grpc"


def span_exporter(name: str, protocol: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

        return HttpSpanExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def metric_exporter(name: str, protocol: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter

        return HttpMetricExporter()
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter()


def log_exporter(name: str, protocol: str) -> Any:
    if name == "console":
        from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter

        return ConsoleLogRecordExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter

        return HttpLogExporter()
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

    return OTLPLogExporter()


# -- the Prometheus scrape endpoint --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricsListen:
    """Where `--metrics-listen HOST:PORT` serves /metrics (port 0: any free one)."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> MetricsListen:
        host, sep, port = text.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"--metrics-listen: expected HOST:PORT such as 127.0.0.1:9464, got {text!r}")
        return cls(host, int(port))


@dataclass
class ScrapeEndpoint:
    """A running /metrics endpoint: the port it bound, and how to stop it."""

    port: int
    reader: Any
    _server: Any

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def prometheus_endpoint(listen: MetricsListen) -> ScrapeEndpoint:
    """A Prometheus metric reader with its own registry, served over HTTP at `listen` (its /metrics path)."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry)
    server, _ = start_http_server(listen.port, listen.host, registry=registry)
    return ScrapeEndpoint(int(server.server_port), reader, server)
