"""Observability: OpenTelemetry traces and metrics from the standard OTEL_* variables, JSON logs, an access log.

Everything is off unless configured: `configure(os.environ)` installs an SDK only when OTEL_TRACES_EXPORTER or
OTEL_METRICS_EXPORTER names an exporter (`otlp`, `console`; `none` or unset: off), so tests and the quick start
pay nothing. The core records its spans through ledger/tracing.py, which needs only the API.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import StatusCode as SpanStatusCode

from ledger.tracing import statement_span_fields, tracing_suppressed
from server.exporters import (
    MetricsListen,
    ScrapeEndpoint,
    exporter_names,
    log_exporter,
    metric_exporter,
    otlp_protocol,
    prometheus_endpoint,
    span_exporter,
)
from server.guard import Behavior, Continuation, rewrap

log = logging.getLogger("usageledger.telemetry")
access_log = logging.getLogger("usageledger.access")

SERVICE_NAME = "usage-ledger"

# -- metrics ------------------------------------------------------------------------------------------------------
# Instruments of the global meter: proxies that record nothing until configure() installs a meter provider.

_meter = metrics.get_meter("usageledger")
events_appended = _meter.create_counter(
    "usageledger.events.appended", unit="{event}", description="Usage events appended as new entries"
)
events_duplicate = _meter.create_counter(
    "usageledger.events.duplicates", unit="{event}", description="Usage events answered as duplicates (R24)"
)
append_batch_size = _meter.create_histogram(
    "usageledger.append.batch_size", unit="{event}", description="Events per AppendEvents call or StreamEvents batch"
)
append_duration = _meter.create_histogram(
    "usageledger.append.duration", unit="s", description="Time to serve an append call, by gRPC status code"
)
# Per RPC, every method (OpenTelemetry's RPC semantic conventions): latency by service, method and status code, so
# error and RESOURCE_EXHAUSTED rates are counts of its points by rpc.grpc.status_code.
rpc_server_duration = _meter.create_histogram(
    "rpc.server.duration", unit="ms", description="Time to serve each RPC, by service, method and gRPC status code"
)


# -- configuration ------------------------------------------------------------------------------------------------


@dataclass
class Telemetry:
    """What configure() installed; `tracing` says whether the server should add its RPC and SQL spans, and
    `metrics_port` is the Prometheus scrape endpoint's port when one serves."""

    tracing: bool = False
    shutdown: Callable[[], None] = lambda: None
    metrics_port: int | None = None


def configure(environ: Mapping[str, str], metrics_listen: MetricsListen | None = None) -> Telemetry:
    """Install tracer, meter and logger providers as the OTEL_* variables say, and a Prometheus scrape endpoint at
    `metrics_listen`; nothing when they name no exporter and no endpoint is asked for.

    OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER / OTEL_LOGS_EXPORTER: `otlp` (over gRPC, or HTTP with
    OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf; server/exporters.py), `console` (stdout), or both comma-separated.
    OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES name the resource; OTEL_SDK_DISABLED=true turns everything off.
    """
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return Telemetry()
    trace_names = exporter_names(environ, "traces")
    metric_names = exporter_names(environ, "metrics")
    log_names = exporter_names(environ, "logs")
    if not (trace_names or metric_names or log_names or metrics_listen):
        return Telemetry()

    from opentelemetry.sdk.resources import Resource

    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    shutdowns: list[Callable[[], None]] = []
    if trace_names:
        shutdowns.append(_install_tracing(resource, trace_names, otlp_protocol(environ, "traces")))
    scrape = prometheus_endpoint(metrics_listen) if metrics_listen is not None else None
    if metric_names or scrape is not None:
        shutdowns.append(_install_metrics(resource, metric_names, otlp_protocol(environ, "metrics"), scrape))
    if log_names:
        shutdowns.append(_install_logs(resource, log_names, otlp_protocol(environ, "logs")))
    log.info(
        "telemetry on: traces %s, metrics %s%s, logs %s",
        trace_names or "off",
        metric_names or "off",
        f" and /metrics on port {scrape.port}" if scrape is not None else "",
        log_names or "off",
    )

    def shutdown() -> None:
        for stop in shutdowns:
            stop()

    return Telemetry(
        tracing=bool(trace_names), shutdown=shutdown, metrics_port=scrape.port if scrape is not None else None
    )


def _install_tracing(resource: Any, names: list[str], protocol: str) -> Callable[[], None]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=resource)
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(span_exporter(name, protocol)))
    trace.set_tracer_provider(provider)
    return provider.shutdown


def _install_metrics(
    resource: Any, names: list[str], protocol: str, scrape: ScrapeEndpoint | None
) -> Callable[[], None]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader

    readers: list[MetricReader] = [PeriodicExportingMetricReader(metric_exporter(name, protocol)) for name in names]
    if scrape is not None:
        readers.append(scrape.reader)
    provider = MeterProvider(resource=resource, metric_readers=readers)
    metrics.set_meter_provider(provider)

    def shutdown() -> None:
        provider.shutdown()
        if scrape is not None:
            scrape.stop()

    return shutdown


def _install_logs(resource: Any, names: list[str], protocol: str) -> Callable[[], None]:
    """Every log record of the process also goes to the log exporters, with the trace and span it was logged in."""
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    provider = LoggerProvider(resource=resource)
    for name in names:
        provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter(name, protocol)))
    set_logger_provider(provider)
    handler = LoggingHandler(logger_provider=provider)
    logging.getLogger().addHandler(handler)

    def shutdown() -> None:
        logging.getLogger().removeHandler(handler)
        provider.shutdown()

    return shutdown


def trace_sql(engine: Any) -> None:
    """A CLIENT span around every SQL statement on `engine`: the storage spans under an RPC or core span.

    Spans carry the statement text (placeholders, never bound values) and the database system.
    """
    from sqlalchemy import event

    from storage.sql.driver import trace_statements

    trace_statements(engine)  # and what storage runs on the driver's own cursors, past SQLAlchemy
    tracer = trace.get_tracer("usageledger.sql")
    system = engine.dialect.name

    def before(conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool) -> None:
        if tracing_suppressed():  # a metric collection's reads, say: no trace for them
            return
        name, attributes = statement_span_fields(system, statement)
        current = tracer.start_span(name, kind=trace.SpanKind.CLIENT, attributes=attributes)
        conn.info.setdefault("usageledger_spans", []).append(current)

    def after(conn: Any, *_: Any) -> None:
        spans = conn.info.get("usageledger_spans")
        if spans and not tracing_suppressed():
            spans.pop().end()

    def failed(context: Any) -> None:
        spans = context.connection.info.get("usageledger_spans") if context.connection is not None else None
        if spans and not tracing_suppressed():
            current = spans.pop()
            current.set_status(SpanStatusCode.ERROR, type(context.original_exception).__name__)
            current.end()

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    event.listen(engine, "handle_error", failed)


# -- structured logs ----------------------------------------------------------------------------------------------

_STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, trace_id/span_id inside a span, and extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="microseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = format(context.trace_id, "032x")
            entry["span_id"] = format(context.span_id, "016x")
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextLogFormatter(logging.Formatter):
    """Readable lines for a person, ending in the trace and span ids when logged inside a span."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            line += f" trace_id={context.trace_id:032x} span_id={context.span_id:016x}"
        return line


def configure_logging(level: str, fmt: str = "json") -> None:
    """Root logging to stderr: JSON lines (the default) or plain text for a person at a terminal; either way with
    the trace and span ids of the span a line was logged in."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter() if fmt == "json" else TextLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


# -- the access log, append metrics and span status, per call -------------------------------------------------------


@dataclass
class _Call:
    caller: str | None = None


_CALL: ContextVar[_Call | None] = ContextVar("usageledger_call", default=None)


def note_caller(name: str) -> None:
    """Name the authenticated caller of the current call in its access-log line (server/auth.py calls this)."""
    call = _CALL.get()
    if call is not None:
        call.caller = name


_APPEND = "/usageledger.v1.LedgerService/AppendEvents"
_STREAM = "/usageledger.v1.LedgerService/StreamEvents"
_rpc_tracer = trace.get_tracer("usageledger.rpc")
_QUIET_PREFIXES = ("/grpc.health.", "/grpc.reflection.")
# Codes that mean the server failed, not the caller (OpenTelemetry's rule for marking server spans as errors).
_SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class RpcObserver(grpc.ServerInterceptor):  # type: ignore[misc]
    """Per call: with `tracing`, its SERVER span (OpenTelemetry RPC conventions, continuing a W3C `traceparent`);
    one access-log line (method, status, duration, caller, peer; no payload or credentials); its
    `rpc.server.duration` point; append metrics.

    The span is ours rather than opentelemetry-instrumentation-grpc's, which records every abort as an exception
    event whose traceback quotes the refused input, and misses the status of `abort_with_status`.
    """

    def __init__(self, tracing: bool = False) -> None:
        self.tracing = tracing

    def intercept_service(self, continuation: Continuation, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method

        def wrap(behavior: Behavior, request_streaming: bool, response_streaming: bool) -> Behavior:
            if response_streaming:
                return self._observed_stream(method, behavior)
            return self._observed(method, behavior, request_streaming)

        return rewrap(handler, wrap)

    def _span(self, method: str, context: grpc.ServicerContext) -> AbstractContextManager[Any]:
        if not self.tracing:
            return nullcontext()
        carrier = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
        service, _, name = method.lstrip("/").rpartition("/")
        return _rpc_tracer.start_as_current_span(
            method,
            context=propagate.extract(carrier),
            kind=trace.SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
            record_exception=False,
            set_status_on_exception=False,
        )

    def _observed(self, method: str, behavior: Behavior, request_streaming: bool) -> Behavior:
        def observed(request: Any, context: grpc.ServicerContext) -> Any:
            call = _Call()
            token = _CALL.set(call)
            started = time.perf_counter()
            code = grpc.StatusCode.UNKNOWN
            with self._span(method, context):
                try:
                    if method == _STREAM and request_streaming:
                        request = _batch_sizes(request)
                    response = behavior(request, context)
                    code = grpc.StatusCode.OK
                    _append_metrics(method, request, response)
                    return response
                except BaseException:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                finally:
                    _CALL.reset(token)
                    elapsed = time.perf_counter() - started
                    if method in (_APPEND, _STREAM):
                        append_duration.record(elapsed, {"rpc.method": method.rsplit("/", 1)[1], "code": code.name})
                    _finish(method, code, elapsed, call, context)

        return observed

    def _observed_stream(self, method: str, behavior: Behavior) -> Behavior:
        def observed(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            call = _Call()
            started = time.perf_counter()
            code = grpc.StatusCode.UNKNOWN
            with self._span(method, context):
                try:
                    token = _CALL.set(call)
                    try:
                        responses = behavior(request, context)
                    finally:
                        _CALL.reset(token)
                    yield from responses
                    code = grpc.StatusCode.OK
                except BaseException:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                finally:
                    _finish(method, code, time.perf_counter() - started, call, context)

        return observed


def _batch_sizes(batches: Iterator[Any]) -> Iterator[Any]:
    for batch in batches:
        events = getattr(batch, "events", None)  # None: a batch the guard will refuse as undecodable
        if events is not None:
            append_batch_size.record(len(events), {"rpc.method": "StreamEvents"})
        yield batch


def _append_metrics(method: str, request: Any, response: Any) -> None:
    if method == _APPEND:
        append_batch_size.record(len(request.events), {"rpc.method": "AppendEvents"})
        duplicates = sum(1 for result in response.results if result.duplicate)
        events_appended.add(len(response.results) - duplicates)
        events_duplicate.add(duplicates)
    elif method == _STREAM:
        events_appended.add(response.appended)
        events_duplicate.add(response.duplicates)


def _rpc_attributes(method: str, code: grpc.StatusCode) -> dict[str, str | int]:
    """RPC semantic-convention attributes of a call to `method` (`/package.Service/Method`) that ended in `code`."""
    service, _, name = method.lstrip("/").rpartition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name, "rpc.grpc.status_code": code.value[0]}


def _finish(method: str, code: grpc.StatusCode, elapsed: float, call: _Call, context: grpc.ServicerContext) -> None:
    rpc_server_duration.record(elapsed * 1000, _rpc_attributes(method, code))
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code in _SERVER_FAULTS:
            span.set_status(SpanStatusCode.ERROR, code.name)
    level = logging.DEBUG if method.startswith(_QUIET_PREFIXES) else logging.INFO
    if access_log.isEnabledFor(level):
        access_log.log(
            level,
            "%s %s %.1f ms",
            method,
            code.name,
            elapsed * 1000,
            extra={
                "rpc_method": method,
                "code": code.name,
                "duration_ms": round(elapsed * 1000, 3),
                "caller": call.caller,
                "peer": context.peer(),
            },
        )
