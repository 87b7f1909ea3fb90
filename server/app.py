"""Builds the gRPC server: the ledger service plus health checking and reflection, on one port."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from decimal import Decimal
from types import ModuleType

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from usageledger.v1 import (
    account_pb2,
    account_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    billing_pb2,
    billing_pb2_grpc,
    ledger_pb2,
    ledger_pb2_grpc,
    pricing_pb2,
    pricing_pb2_grpc,
    support_pb2,
    support_pb2_grpc,
    usage_pb2,
    usage_pb2_grpc,
)

from ledger.billing.engine import DEFAULT_INVOICE_GRACE_SECONDS
from ledger.intake import Ledger
from ledger.log.signing import DEFAULT_LEDGER_NAME
from ledger.timeutil import Clock, system_clock
from server.account_service import AccountServicer
from server.audit_service import AuditServicer
from server.auth import Authenticator, Authorization, CachedKeys
from server.billing_service import BillingServicer
from server.composition import (
    DEFAULT_CHECKPOINT_EVERY,
    DEFAULT_CHECKPOINT_SECONDS,
    AuditOptions,
    BillingOptions,
    ServerParts,
    compose,
)
from server.guard import RequestGuard
from server.health import DEFAULT_PING_TIMEOUT_SECONDS, DEFAULT_PROBE_SECONDS, StoreHealth
from server.limits import DEFAULT_MAX_INFLIGHT, DEFAULT_QUEUE, DEFAULT_QUEUE_SECONDS, AppendLimit
from server.reflection import enable_reflection
from server.service import LedgerServicer
from server.support_service import SupportServicer
from server.telemetry import RpcObserver, trace_sql
from server.tls import ServerTls
from server.usage_service import PricingServicer, UsageServicer
from storage.sql import SqlStore, open_store
from storage.sql.keystore import SqlKeyStore

log = logging.getLogger("usageledger.server")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# How long a key record is cached: a revoked key stops working within this many seconds.
KEY_CACHE_SECONDS = 5.0


def _service_name(proto_module: ModuleType, service: str) -> str:
    return str(proto_module.DESCRIPTOR.services_by_name[service].full_name)


def _ledger_service(parts: ServerParts, server: grpc.Server) -> str:
    ledger_pb2_grpc.add_LedgerServiceServicer_to_server(LedgerServicer(parts.ledger, parts.billing), server)
    return _service_name(ledger_pb2, "LedgerService")


def _pricing_service(parts: ServerParts, server: grpc.Server) -> str:
    pricing_pb2_grpc.add_PricingServiceServicer_to_server(PricingServicer(parts.ledger), server)
    return _service_name(pricing_pb2, "PricingService")


def _usage_service(parts: ServerParts, server: grpc.Server) -> str:
    usage_pb2_grpc.add_UsageServiceServicer_to_server(UsageServicer(parts.ledger, parts.usage), server)
    return _service_name(usage_pb2, "UsageService")


def _audit_service(parts: ServerParts, server: grpc.Server) -> str:
    signing = parts.signing
    servicer = AuditServicer(signing.store, signing.signer, signing.ledger_name)
    audit_pb2_grpc.add_AuditServiceServicer_to_server(servicer, server)
    return _service_name(audit_pb2, "AuditService")


def _support_service(parts: ServerParts, server: grpc.Server) -> str:
    # Lookups rate long sessions from the store's usage rollups (R25), as the server always did.
    support_pb2_grpc.add_SupportServiceServicer_to_server(
        SupportServicer(parts.ledger, parts.rollups, parts.usage.follower), server
    )
    return _service_name(support_pb2, "SupportService")


def _account_service(parts: ServerParts, server: grpc.Server) -> str:
    account_pb2_grpc.add_AccountServiceServicer_to_server(AccountServicer(parts.billing), server)
    return _service_name(account_pb2, "AccountService")


def _billing_service(parts: ServerParts, server: grpc.Server) -> str:
    billing_pb2_grpc.add_BillingServiceServicer_to_server(BillingServicer(parts.billing.engine), server)
    return _service_name(billing_pb2, "BillingService")


# Every gRPC service the server exposes: each adds its servicer, made from the parts built once by
# server.composition, and returns its full name (for health and reflection).
SERVICES: list[Callable[[ServerParts, grpc.Server], str]] = [
    _ledger_service,
    _pricing_service,
    _usage_service,
    _audit_service,
    _support_service,
    _account_service,
    _billing_service,
]


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    parts: ServerParts
    health: StoreHealth | None = None

    @property
    def ledger(self) -> Ledger:
        return self.parts.ledger

    def stop(self, grace: float | None = 1.0) -> None:
        if self.health is not None:
            self.health.stop()
        self.server.stop(grace).wait()
        self.parts.stop()  # the period closer finishes its org before the store closes
        self.parts.store.close()


def start_server(
    database_url: str,
    listen: str = "127.0.0.1:0",
    *,
    clock: Clock = system_clock,
    workers: int = 16,
    max_inflight: int | None = DEFAULT_MAX_INFLIGHT,
    append_queue: int = DEFAULT_QUEUE,
    append_queue_seconds: float = DEFAULT_QUEUE_SECONDS,
    signing_key: str | os.PathLike[str] | None = None,
    ledger_name: str = DEFAULT_LEDGER_NAME,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS,
    require_auth: bool = False,
    tls: ServerTls | None = None,
    tracing: bool = False,
    key_cache_seconds: float = KEY_CACHE_SECONDS,
    close_interval: float | None = None,
    health_probe_seconds: float = DEFAULT_PROBE_SECONDS,
    health_timeout_seconds: float = DEFAULT_PING_TIMEOUT_SECONDS,
    invoice_grace_seconds: int = DEFAULT_INVOICE_GRACE_SECONDS,
    starter_credit: Decimal = Decimal(0),
) -> RunningServer:
    """Open the store, bind `listen` (port 0 picks a free one) and start serving.

    At most `max_inflight` appends run at once (None: unbounded); up to `append_queue` more wait at most
    `append_queue_seconds` for a slot; the rest are refused with RESOURCE_EXHAUSTED.
    With a `signing_key` file, each log's checkpoint (origin `<ledger_name>/<log id>`) is signed when it grew by
    `checkpoint_every` entries or `checkpoint_seconds` after the last one (0 turns either trigger off).
    With `require_auth` (implied by a `tls` with a client CA) every call but health and reflection needs an API key
    or client certificate whose role server/auth.py's POLICY allows; `tracing` adds RPC and SQL spans.
    With `close_interval` seconds, a period closer thread issues invoices and flips account state as time passes
    (R15, R17-R19; docs/billing.md); None (the default) leaves that to the billing RPCs. A month-end invoice is
    issued on the wall clock `invoice_grace_seconds` after its month ended if the log has not settled through it.
    Each new org starts with `starter_credit` USD of credit (R19; 0: none).
    Health answers NOT_SERVING while a probe every `health_probe_seconds` cannot reach the database, or waited
    `health_timeout_seconds` for its answer (server/health.py).
    """
    store = open_store(database_url, clock=clock)
    interceptors = _edge_interceptors(store, require_auth, tls, tracing, key_cache_seconds)
    if max_inflight is not None:
        interceptors.append(AppendLimit(max_inflight, queue=append_queue, queue_seconds=append_queue_seconds))
    # Appends at their limit, and those queued for a slot, must still leave threads for reads and health checks.
    threads = max(workers, (max_inflight + append_queue if max_inflight else 0) + 4)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rpc"),
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    parts = compose(
        store,
        server,
        clock=clock,
        billing=BillingOptions(close_interval, invoice_grace_seconds, starter_credit),
        audit=AuditOptions(signing_key, ledger_name, checkpoint_every, checkpoint_seconds, database_url=database_url),
    )
    service_names = [register(parts, server) for register in SERVICES]
    health_servicer = StoreHealth(store, service_names, health_probe_seconds, health_timeout_seconds)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection((*service_names, health.SERVICE_NAME), server)  # v1 and v1alpha, with comments
    port = server.add_secure_port(listen, tls.credentials()) if tls else server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    server.start()
    health_servicer.start(server)
    log.info("usage ledger serving on port %d", port)
    return RunningServer(server, port, parts, health_servicer)


def _edge_interceptors(
    store: SqlStore, require_auth: bool, tls: ServerTls | None, tracing: bool, key_cache_seconds: float
) -> list[grpc.ServerInterceptor]:
    """Outermost first: the RPC span and access log, the request guard, then authentication and the policy."""
    if tracing:
        for engine in {store.writer, store.reader}:
            trace_sql(engine)
    interceptors: list[grpc.ServerInterceptor] = [RpcObserver(tracing), RequestGuard()]
    mutual = tls is not None and tls.mutual
    if require_auth or mutual:
        keys = CachedKeys(SqlKeyStore(store.reader), key_cache_seconds)
        interceptors.append(Authorization(Authenticator(keys, trust_client_certs=mutual)))
    return interceptors
