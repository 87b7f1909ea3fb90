"""Builds the gRPC server: the ledger service plus health checking and reflection, on one port."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from usageledger.v1 import ledger_pb2, ledger_pb2_grpc

from ledger.core import Ledger
from ledger.sqlstore import open_store
from ledger.timeutil import Clock, system_clock
from server.limits import DEFAULT_MAX_INFLIGHT, AppendLimit
from server.service import LedgerServicer

log = logging.getLogger("usageledger.server")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def _register_ledger(ledger: Ledger, server: grpc.Server) -> str:
    ledger_pb2_grpc.add_LedgerServiceServicer_to_server(LedgerServicer(ledger), server)
    return str(ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"].full_name)


# Every gRPC service the server exposes: each adds its servicer and returns its full name (for health/reflection).
SERVICES: list[Callable[[Ledger, grpc.Server], str]] = [_register_ledger]


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    ledger: Ledger

    def stop(self, grace: float | None = 1.0) -> None:
        self.server.stop(grace).wait()
        self.ledger.store.close()


def start_server(
    database_url: str,
    listen: str = "127.0.0.1:0",
    *,
    clock: Clock = system_clock,
    workers: int = 16,
    max_inflight: int | None = DEFAULT_MAX_INFLIGHT,
) -> RunningServer:
    """Open the store, bind `listen` (port 0 picks a free one) and start serving.

    At most `max_inflight` appends run at once (None: unbounded); the rest are refused with RESOURCE_EXHAUSTED.
    """
    interceptors = [AppendLimit(max_inflight)] if max_inflight is not None else []
    # Appends at their limit must still leave threads for reads and health checks.
    threads = max(workers, (max_inflight or 0) + 4)
    ledger = Ledger(open_store(database_url, clock=clock), clock=clock)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rpc"),
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    service_names = [register(ledger, server) for register in SERVICES]
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    server.start()
    for name in ("", *service_names):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("usage ledger serving on port %d", port)
    return RunningServer(server, port, ledger)
