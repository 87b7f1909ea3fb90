"""gRPC health that follows the store: NOT_SERVING while the database cannot be reached, SERVING again when it can.

A background probe pings the store (one trivial read) every `interval` seconds and sets every service's status,
the server's ("") included, so load balancers and orchestrators stop sending work to a server whose database is
gone and send it again once the database is back. A ping that has not answered within `timeout` seconds counts as
unreachable too: a hung database (or a network path that drops packets, where connecting can take minutes) must
not keep answering SERVING. Health also answers `List` (grpcio's servicer leaves it
UNIMPLEMENTED), as docs/security.md lists it.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2

from ledger.errors import StorageError
from ledger.tracing import untraced

log = logging.getLogger("usageledger.health")

DEFAULT_PROBE_SECONDS = 2.0
DEFAULT_PING_TIMEOUT_SECONDS = 5.0

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class PingableStore(Protocol):
    def ping(self) -> None:
        """Raise StorageError when the database cannot be reached."""
        ...


class _Ping:
    """One ping in a daemon thread of its own, so a ping that hangs neither blocks the probe nor the process's exit."""

    def __init__(self, store: PingableStore) -> None:
        self.started = time.monotonic()
        self.error: StorageError | None = None
        self._done = threading.Event()
        threading.Thread(target=self._run, args=(store,), name="health-ping", daemon=True).start()

    def _run(self, store: PingableStore) -> None:
        try:
            with untraced():  # every few seconds: no trace of its own, and no parentless SQL span
                store.ping()
        except StorageError as err:
            self.error = err
        except Exception as err:  # anything else a ping raises also means the store did not answer
            self.error = StorageError(f"the database ping failed ({type(err).__name__})")
        finally:
            self._done.set()

    def wait(self, until: float) -> bool:
        """True once the ping has finished (see `error`); False if it is still running at monotonic time `until`."""
        return self._done.wait(max(0.0, until - time.monotonic()))


class StoreHealth(health.HealthServicer):  # type: ignore[misc]
    """The standard health servicer, with List, and every status set from the store's reachability."""

    def __init__(
        self,
        store: PingableStore,
        services: Sequence[str],
        interval: float = DEFAULT_PROBE_SECONDS,
        timeout: float = DEFAULT_PING_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__()
        self.store = store
        self.services = ("", *services)
        self.interval = interval
        self.timeout = timeout
        # The ping in flight: the probe gives up waiting on a hung one, and waits on it again rather than start more.
        self._ping: _Ping | None = None
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
        if self._ping is None:
            self._ping = _Ping(self.store)
        ping = self._ping
        if not ping.wait(ping.started + self.timeout):
            return self._set(False, f"the database has not answered a ping for {self.timeout:g} s")
        self._ping = None
        if ping.error is not None:
            return self._set(False, str(ping.error))
        return self._set(True, "")

    def _set(self, reachable: bool, why: str) -> bool:
        if reachable != self._reachable:
            if reachable:
                log.info("the database is reachable: health SERVING")
            else:
                log.error("%s: health NOT_SERVING until it is back", why)
            self._reachable = reachable
        status = SERVING if reachable else NOT_SERVING
        with self._statuses_lock:
            changed = [name for name in self.services if self._statuses.get(name) != status]
        for name in changed:  # only changes: each set() is also an update to every Watch stream of that service
            self.set(name, status)
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
