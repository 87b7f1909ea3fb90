"""Tracing spans for the core through the OpenTelemetry API alone: no-ops until a server configures an SDK.

Spans carry IDs and counts, never input values: a failed block marks its span with the exception's type name only
(an exception's message may quote the request), and records no exception event.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import StatusCode

P = ParamSpec("P")
R = TypeVar("R")

# A proxy tracer: it forwards to whichever tracer provider is installed later, and does nothing until then.
_tracer = trace.get_tracer("usageledger.core")
_sql_tracer = trace.get_tracer("usageledger.sql")


def _off() -> bool:
    """No tracer provider installed: spans would be no-ops, so skip even building them (about 10 us each)."""
    return isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[trace.Span]:
    """A span `name` (for example `ledger.store.append`) around a block, a child of the current span."""
    if _off():
        yield trace.INVALID_SPAN
        return
    with _tracer.start_as_current_span(
        name, attributes=attributes or None, record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except BaseException as err:
            current.set_status(StatusCode.ERROR, type(err).__name__)
            raise


def traced(name: str, ids: tuple[str, ...] = ()) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run the decorated function in a span `name`, with the arguments named in `ids` (identifiers such as `org_id`,
    never amounts or free text) as attributes when they are given and not None."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if _off():
                return function(*args, **kwargs)
            attributes: dict[str, Any] = {}
            if ids:
                bound = signature.bind_partial(*args, **kwargs).arguments
                attributes = {key: bound[key] for key in ids if bound.get(key) is not None}
            with span(name, **attributes):
                return function(*args, **kwargs)

        return wrapper

    return decorate


@contextmanager
def root_span(name: str, **attributes: Any) -> Iterator[trace.Span]:
    """A span that starts a trace of its own: background work (a closer pass, checkpoint signing) whose SQL and core
    spans then hang under it instead of arriving parentless."""
    token = otel_context.attach(otel_context.Context())
    try:
        with span(name, **attributes) as current:
            yield current
    finally:
        otel_context.detach(token)


@contextmanager
def untraced() -> Iterator[None]:
    """No spans inside: reads a metric collection makes, which would otherwise be parentless SQL spans on every
    export."""
    token = otel_context.attach(otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        yield
    finally:
        otel_context.detach(token)


def statement_span_fields(system: str, statement: str) -> tuple[str, dict[str, str]]:
    """A SQL span's name (`db VERB`) and attributes: the database system and the statement text (placeholders,
    never bound values)."""
    verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
    return f"db {verb}", {"db.system": system, "db.statement": statement[:2000]}


@contextmanager
def statement_span(system: str, statement: str) -> Iterator[None]:
    """A CLIENT span around SQL that storage runs on the driver's own cursor (one statement, or a pipeline of them),
    named and dressed as server/telemetry.py's trace_sql dresses the statements SQLAlchemy runs: `db VERB`, the
    database system and the statement text (placeholders, never bound values). Storage asks for it only for an
    engine whose SQL is traced (storage.sql.driver.traced)."""
    if _off() or tracing_suppressed():
        yield
        return
    name, attributes = statement_span_fields(system, statement)
    with _sql_tracer.start_as_current_span(
        name,
        kind=trace.SpanKind.CLIENT,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield
        except BaseException as err:
            current.set_status(StatusCode.ERROR, type(err).__name__)
            raise


def tracing_suppressed() -> bool:
    """Inside untraced(): instrumentation (server/telemetry.py's SQL spans) adds nothing."""
    return bool(otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY))
