"""Back-pressure: a server interceptor that bounds in-flight appends, queues a bounded number briefly beyond that,
and answers RESOURCE_EXHAUSTED only when the queue is full or a queued append waited its longest."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from usageledger.v1 import ledger_pb2

from wire.status import DOMAIN

# Appends in flight wait in the store's group commit (storage/sql/group_commit.py), which commits all of those
# waiting in one transaction: more in flight make bigger groups, not more transactions or connections. Each holds
# an RPC thread, so the bound keeps the thread pool (and the memory of the requests held) in check.
DEFAULT_MAX_INFLIGHT = 64
# Beyond the bound, this many more wait up to QUEUE_SECONDS (or their deadline, if sooner) for a slot rather than
# being refused at once: a burst is absorbed instead of bounced into every client's backoff.
DEFAULT_QUEUE = 64
DEFAULT_QUEUE_SECONDS = 1.0
REASON = "APPEND_CAPACITY_EXHAUSTED"
# What the status suggests as a first backoff; the client library jitters and doubles from its own 50 ms anyway.
RETRY_DELAY_SECONDS = 0.1

_LEDGER_SERVICE = ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"].full_name
APPEND_METHODS = frozenset(f"/{_LEDGER_SERVICE}/{name}" for name in ("AppendEvents", "StreamEvents"))


class AppendLimit(grpc.ServerInterceptor):  # type: ignore[misc]
    """Admit at most `max_inflight` append RPCs at once; queue up to `queue` more for at most `queue_seconds`
    (or the call's own deadline, if sooner); refuse the rest with RESOURCE_EXHAUSTED.

    Without it every append beyond the thread pool waits in the executor's unbounded queue, holding its request
    in memory, while its client's deadline runs out; a refusal instead tells the client to back off and resend
    the same event IDs, which R24 makes safe. Reads, health checks and reflection are not counted: they are
    short and are what an operator needs while the server is saturated. A StreamEvents call holds its slot for
    the whole stream, since it appends until the client closes it.
    """

    def __init__(
        self,
        max_inflight: int,
        methods: Iterable[str] = APPEND_METHODS,
        *,
        queue: int = DEFAULT_QUEUE,
        queue_seconds: float = DEFAULT_QUEUE_SECONDS,
    ) -> None:
        if max_inflight < 1:
            raise ValueError(f"max_inflight must be at least 1, got {max_inflight}")
        if queue < 0 or queue_seconds < 0:
            raise ValueError(f"queue and queue_seconds must not be negative, got {queue} and {queue_seconds}")
        self.max_inflight = max_inflight
        self.queue = queue
        self.queue_seconds = queue_seconds
        self.methods = frozenset(methods)
        self._slots = threading.BoundedSemaphore(max_inflight)
        self._waiting_lock = threading.Lock()
        self._waiting = 0
        # Each append method's handler, bounded: built once, not on every call (the servicer's handler is the same
        # object every time; a different one, say after re-registration, is wrapped anew).
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None], details: Any
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None or details.method not in self.methods:
            return handler
        cached = self._wrapped.get(details.method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = handler
        if handler.unary_unary is not None:
            wrapped = grpc.unary_unary_rpc_method_handler(
                self._bounded(handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        elif handler.stream_unary is not None:
            wrapped = grpc.stream_unary_rpc_method_handler(
                self._bounded(handler.stream_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        self._wrapped[details.method] = (handler, wrapped)
        return wrapped

    def _bounded(self, behavior: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
        def bounded(request: Any, context: grpc.ServicerContext) -> Any:
            # The slot is taken on the worker thread, so a call can never leak one by being cancelled while
            # still queued: only a call that actually starts its append holds a slot.
            if not self._slots.acquire(blocking=False) and not self._wait_for_slot(context):
                context.abort_with_status(self._exhausted())
            try:
                return behavior(request, context)
            finally:
                self._slots.release()

        return bounded

    def _wait_for_slot(self, context: grpc.ServicerContext) -> bool:
        """Queue for a slot if the queue has room: True once one is taken, False if full or the wait ran out."""
        with self._waiting_lock:
            if self._waiting >= self.queue:
                return False
            self._waiting += 1
        try:
            remaining = context.time_remaining()
            wait = self.queue_seconds if remaining is None else max(0.0, min(self.queue_seconds, remaining))
            return self._slots.acquire(timeout=wait)
        finally:
            with self._waiting_lock:
                self._waiting -= 1

    def _exhausted(self) -> grpc.Status:
        info = error_details_pb2.ErrorInfo(
            reason=REASON, domain=DOMAIN, metadata={"max_inflight": str(self.max_inflight), "queue": str(self.queue)}
        )
        retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=int(RETRY_DELAY_SECONDS * 1e9)))
        details = []
        for detail in (info, retry):
            holder = any_pb2.Any()
            holder.Pack(detail)
            details.append(holder)
        message = (
            f"the server is already running its limit of {self.max_inflight} concurrent appends "
            f"(--max-inflight / LEDGER_MAX_INFLIGHT) and its queue of {self.queue} more was full or "
            f"waited {self.queue_seconds:g} s (--append-queue, --append-queue-seconds); nothing was appended: "
            "retry after a backoff with the same "
            "event IDs (R24 answers any already appended with their original entries)"
        )
        return rpc_status.to_status(
            status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=message, details=details)
        )
