"""Back-pressure: a server interceptor that bounds in-flight appends and answers RESOURCE_EXHAUSTED beyond the bound."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from usageledger.v1 import ledger_pb2

from server.errors import DOMAIN

# Each append holds a pooled database connection (8 + 8 overflow on PostgreSQL) and, on SQLite, waits for the one
# write lock: a few more in flight only lengthen the queue, they never add throughput.
DEFAULT_MAX_INFLIGHT = 8
REASON = "APPEND_CAPACITY_EXHAUSTED"
# What the status suggests as a first backoff; the client library jitters and doubles from its own 50 ms anyway.
RETRY_DELAY_SECONDS = 0.1

_LEDGER_SERVICE = ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"].full_name
APPEND_METHODS = frozenset(f"/{_LEDGER_SERVICE}/{name}" for name in ("AppendEvents", "StreamEvents"))


class AppendLimit(grpc.ServerInterceptor):  # type: ignore[misc]
    """Admit at most `max_inflight` append RPCs at once; refuse the rest at once rather than queueing them.

    Without it every append beyond the thread pool waits in the executor's unbounded queue, holding its request
    in memory, while its client's deadline runs out; a refusal instead tells the client to back off and resend
    the same event IDs, which R24 makes safe. Reads, health checks and reflection are not counted: they are
    short and are what an operator needs while the server is saturated. A StreamEvents call holds its slot for
    the whole stream, since it appends until the client closes it.
    """

    def __init__(self, max_inflight: int, methods: Iterable[str] = APPEND_METHODS) -> None:
        if max_inflight < 1:
            raise ValueError(f"max_inflight must be at least 1, got {max_inflight}")
        self.max_inflight = max_inflight
        self.methods = frozenset(methods)
        self._slots = threading.BoundedSemaphore(max_inflight)

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None], details: Any
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None or details.method not in self.methods:
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._bounded(handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._bounded(handler.stream_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _bounded(self, behavior: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
        def bounded(request: Any, context: grpc.ServicerContext) -> Any:
            # The slot is taken on the worker thread, so a call can never leak one by being cancelled while
            # still queued: only a call that actually starts its append holds a slot.
            if not self._slots.acquire(blocking=False):
                context.abort_with_status(self._exhausted())
            try:
                return behavior(request, context)
            finally:
                self._slots.release()

        return bounded

    def _exhausted(self) -> grpc.Status:
        info = error_details_pb2.ErrorInfo(
            reason=REASON, domain=DOMAIN, metadata={"max_inflight": str(self.max_inflight)}
        )
        retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=int(RETRY_DELAY_SECONDS * 1e9)))
        details = []
        for detail in (info, retry):
            holder = any_pb2.Any()
            holder.Pack(detail)
            details.append(holder)
        message = (
            f"the server is already running its limit of {self.max_inflight} concurrent appends "
            "(--max-inflight / LEDGER_MAX_INFLIGHT); nothing was appended: retry after a backoff with the same "
            "event IDs (R24 answers any already appended with their original entries)"
        )
        return rpc_status.to_status(
            status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=message, details=details)
        )
