"""Tracing spans for the core through the OpenTelemetry API alone: no-ops until a server configures an SDK."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

try:
    from opentelemetry import trace
except ImportError:  # the API is a dependency, but the core must never fail for want of telemetry

    def span(name: str, **attributes: Any) -> AbstractContextManager[Any]:
        return nullcontext()

else:
    # A proxy tracer: it forwards to whichever tracer provider is installed later, and does nothing until then.
    _tracer = trace.get_tracer("usageledger.core")

    def span(name: str, **attributes: Any) -> AbstractContextManager[Any]:
        """A span `name` (for example `ledger.store.append`) around a block, a child of the current span."""
        return _tracer.start_as_current_span(name, attributes=attributes or None)
