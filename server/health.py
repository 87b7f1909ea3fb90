"""gRPC health that follows the store: NOT_SERVING while the database cannot be reached, SERVING again when it can.

A background probe pings the store (one trivial read) every `interval` seconds and sets every service's status,
the server's ("") included, so load balancers and orchestrators stop sending work to a server whose database is
gone and send it again once the database is back. Health also answers `List` (grpcio's servicer leaves it
UNIMPLEMENTED), as docs/security.md lists it.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Sequence
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2

from ledger.errors import StorageError

log = logging.getLogger("usageledger.health")

DEFAULT_PROBE_SECONDS = 2.0

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class PingableStore(Protocol):
    def ping(self) -> None:
        """Raise StorageError when the database cannot be reached."""
        ...


class StoreHealth(health.HealthServicer):  # type: ignore[misc]
    """The standard health servicer, with List, and every status set from the store's reachability."""

    def __init__(self, store: PingableStore, services: Sequence[str], interval: float = DEFAULT_PROBE_SECONDS) -> None:
        super().__init__()
        self.store = store
        self.services = ("", *services)
        self.interval = interval
        self._statuses: dict[str, Any] = {}
        self._statuses_lock = threading.Lock()
        self._reachable: bool | None = None
        self._server: weakref.ref[grpc.Server] | None = None
        self._stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="health-probe", daemon=True)

    def set(self, service: str, status: Any) -> None:
        with self._statuses_lock:
            self._statuses[service] = status
        super().set(service, status)

    def List(self, request: health_pb2.HealthListRequest, context: grpc.ServicerContext) -> Any:
        with self._statuses_lock:
            statuses = dict(self._statuses)
        return health_pb2.HealthListResponse(
            statuses={name: health_pb2.HealthCheckResponse(status=status) for name, status in statuses.items()}
        )

    def probe(self) -> bool:
        """Ping the store once and set every service's status from the answer; True when it was reachable."""
        try:
            self.store.ping()
            reachable = True
        except StorageError as err:
            reachable = False
            why = str(err)
        if reachable != self._reachable:
            if reachable:
                log.info("the database is reachable: health SERVING")
            else:
                log.error("%s: health NOT_SERVING until it is back", why)
            self._reachable = reachable
        for name in self.services:
            self.set(name, SERVING if reachable else NOT_SERVING)
        return reachable

    def start(self, server: grpc.Server) -> None:
        """Probe now (so the first answer is already the store's), then every `interval` seconds until the server
        stops or stop() is called."""
        self._server = weakref.ref(server)
        self.probe()
        self.thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self.thread.is_alive():
            self.thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            server = self._server() if self._server is not None else None
            if server is None:
                return
            try:
                self.probe()
            except Exception:  # the probe must outlive anything odd; health then keeps its last answer
                log.exception("health probe failed; trying again in %.1f s", self.interval)
