"""The ledger's own metrics through the OpenTelemetry API alone: recorded where their events happen, exported only
once a server configures an SDK (server/telemetry.py); docs/operations.md says what to alert on.

Counters are added to at the event. Gauges that describe the state of many orgs (rollup lag, and what the period
closer last saw of each org) are read when a metric reader collects, from the sources the server registers here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from ledger.timeutil import MICROS_PER_SECOND, Clock, system_clock
from ledger.tracing import untraced

log = logging.getLogger("usageledger.metrics")

# The global meter's proxy instruments: they record nothing until a meter provider is installed.
_meter = metrics.get_meter("usageledger")

verification_failures = _meter.create_counter(
    "usageledger.verification.failures",
    unit="{failure}",
    description="Calls answered DATA_LOSS because something stored did not verify (hash chain, Merkle proof, "
    "checkpoint, signature), by kind",
)
signing_refusals = _meter.create_counter(
    "usageledger.signing.refusals",
    unit="{refusal}",
    description="Checkpoints the ledger refused to sign: the log does not extend its newest signed checkpoint",
)
account_state_changes = _meter.create_counter(
    "usageledger.account.state_changes",
    unit="{change}",
    description="Account state transitions appended (R15, R19), by new state",
)
invoices_issued = _meter.create_counter(
    "usageledger.invoices.issued",
    unit="{invoice}",
    description="Invoices appended to org logs (R17, R18), by trigger",
)
late_lines = _meter.create_counter(
    "usageledger.invoices.late_lines",
    unit="{line}",
    description="Late lines on issued invoices: usage from before the invoice's period, carried forward (R22)",
)


def record_verification_failure(kind: str) -> None:
    """Count one failed verification; `kind` is low-cardinality: `log`, `checkpoint`, `proof`."""
    verification_failures.add(1, {"kind": kind})


def record_signing_refusal() -> None:
    """Count one refused checkpoint signature (ledger.log.signing.CheckpointRefused, DATA_LOSS on the wire): the
    stored log or its newest checkpoint no longer checks out, and an operator must look at it."""
    signing_refusals.add(1)


def record_account_state_change(state: str) -> None:
    """Count one account state transition into `state` (for example `DEACTIVATED`)."""
    account_state_changes.add(1, {"state": state})


def record_invoice_issued(trigger: str, late: int) -> None:
    """Count one issued invoice (`THRESHOLD` or `MONTH_END`, R17) and its `late` lines (R22)."""
    invoices_issued.add(1, {"trigger": trigger})
    if late:
        late_lines.add(late)


# -- gauges read at collection ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrgGaugeReading:
    """One gauge point of one org: the value and the org it describes."""

    org_id: str
    value: float


GaugeSource = Callable[[], Iterable[OrgGaugeReading]]


class GaugeSources:
    """The live sources of one per-org gauge: each running server registers its own and removes it when it stops.

    A source that fails (a store closing under a collection) contributes nothing that round rather than breaking
    the other instruments' export.
    """

    def __init__(self) -> None:
        self._sources: dict[int, GaugeSource] = {}
        self._lock = threading.Lock()

    def add(self, source: GaugeSource) -> Callable[[], None]:
        """Register `source`; returns the call that removes it."""
        key = id(source)
        with self._lock:
            self._sources[key] = source

        def remove() -> None:
            with self._lock:
                self._sources.pop(key, None)

        return remove

    def observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            sources = list(self._sources.values())
        found: list[Observation] = []
        for source in sources:
            try:
                with untraced():
                    found.extend(Observation(r.value, {"org_id": r.org_id}) for r in source())
            except Exception:  # a gauge is best effort; the next collection reads again
                log.debug("a gauge source failed; it is read again at the next collection", exc_info=True)
        return found


rollup_lag_sources = GaugeSources()
settled_lag_sources = GaugeSources()
backfills_open_sources = GaugeSources()

rollup_lag = _meter.create_observable_gauge(
    "usageledger.rollup.lag",
    callbacks=[rollup_lag_sources.observe],
    unit="{entry}",
    description="Entries of each org's log the usage rollups have not applied yet",
)
settled_through_lag = _meter.create_observable_gauge(
    "usageledger.settled_through.lag",
    callbacks=[settled_lag_sources.observe],
    unit="s",
    description="Wall clock minus each org's settled-through time (R28) at the period closer's last look: grows "
    "when a control plane stops reporting",
)
backfills_open = _meter.create_observable_gauge(
    "usageledger.backfills.open",
    callbacks=[backfills_open_sources.observe],
    unit="{backfill}",
    description="Backfills open per org at the period closer's last look (R29): each holds month-end invoices back",
)


class OrgLooks:
    """What the period closer last saw of each org: its settled-through time (R28) and its open backfills (R29).

    The settled-through lag is computed at collection, on the ledger's clock, so it keeps growing while nothing new
    arrives: that growth is the signal.
    """

    def __init__(self, clock: Clock = system_clock) -> None:
        self.clock = clock
        self._settled: dict[str, int] = {}
        self._backfills: dict[str, int] = {}
        self._lock = threading.Lock()

    def saw(self, org_id: str, settled_through: int | None, open_backfills: int) -> None:
        with self._lock:
            if settled_through is not None:
                self._settled[org_id] = settled_through
            self._backfills[org_id] = open_backfills

    def settled_lags(self) -> list[OrgGaugeReading]:
        now = self.clock()
        with self._lock:
            settled = dict(self._settled)
        return [OrgGaugeReading(org, (now - at) / MICROS_PER_SECOND) for org, at in sorted(settled.items())]

    def open_backfills(self) -> list[OrgGaugeReading]:
        with self._lock:
            return [OrgGaugeReading(org, count) for org, count in sorted(self._backfills.items())]

    def register(self) -> Callable[[], None]:
        """Export this closer's looks as the two gauges; returns the call that stops it."""
        removers = [settled_lag_sources.add(self.settled_lags), backfills_open_sources.add(self.open_backfills)]

        def remove() -> None:
            for stop in removers:
                stop()

        return remove


def readings(values: Mapping[str, float]) -> list[OrgGaugeReading]:
    """Gauge readings from org id -> value."""
    return [OrgGaugeReading(org, value) for org, value in sorted(values.items())]
