"""Every metric operators are told to alert on (docs/operations.md), driven through a real server and read back from
the exported points of an in-memory metric reader."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from usageledger.v1 import (
    account_pb2,
    audit_pb2,
    audit_pb2_grpc,
    billing_pb2,
    billing_pb2_grpc,
    ledger_pb2,
    pricing_pb2,
    support_pb2,
    usage_pb2,
    usage_pb2_grpc,
)
from usageledger.v1 import account_pb2 as apb
from usageledger.v1 import account_pb2_grpc as apb_grpc

from server.app import RunningServer, start_server
from tests.billing_support import event, t
from tests.conftest import FixedClock
from tests.telemetry_support import append, eventually, install_meter_provider, reader

if TYPE_CHECKING:
    from tests.audit_support import TamperFactory

pytest_plugins = ["tests.audit_support"]

Attributes = Mapping[str, Any]


@pytest.fixture(scope="module", autouse=True)
def meter_provider() -> None:
    install_meter_provider()


def points(name: str) -> list[tuple[dict[str, Any], float]]:
    """Every exported point of `name` so far: its attributes and its value (a histogram's: its count)."""
    data = reader.get_metrics_data()
    found: list[tuple[dict[str, Any], float]] = []
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        value = getattr(point, "count", None)
                        found.append((dict(point.attributes or {}), value if value is not None else point.value))
    return found


def total(name: str, **attributes: Any) -> float:
    """The sum of `name`'s points whose attributes include `attributes` (counters and histogram counts)."""
    return sum(value for found, value in points(name) if all(found.get(k) == v for k, v in attributes.items()))


def counting(name: str, **attributes: Any) -> Callable[[], float]:
    """How much `name` (with `attributes`) grew since this was called: the reader is cumulative and process-wide."""
    before = total(name, **attributes)
    return lambda: total(name, **attributes) - before


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(t("2026-10-05T09:00:00Z"))


@pytest.fixture
def running(sqlite_url: str, clock: FixedClock) -> Iterator[RunningServer]:
    server = start_server(sqlite_url, "127.0.0.1:0", clock=clock)
    yield server
    server.stop(grace=None)


@pytest.fixture
def channel(running: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
        yield ch


# -- RPC latency and errors, every method ------------------------------------------------------------------------

_MODULES = (ledger_pb2, pricing_pb2, usage_pb2, audit_pb2, support_pb2, account_pb2, billing_pb2)
METHODS = [
    (service.full_name, method)
    for module in _MODULES
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
]


def _call(channel: grpc.Channel, service: str, method: Any) -> grpc.StatusCode:
    """Call `method` with an empty request (a stream of none for client streams); the status code it ended with."""
    path = f"/{service}/{method.name}"
    raw: dict[str, Any] = {"request_serializer": lambda _: b"", "response_deserializer": lambda data: data}
    try:
        if method.client_streaming:
            channel.stream_unary(path, **raw)(iter(()), timeout=5)
        elif method.server_streaming:
            for _ in channel.unary_stream(path, **raw)(b"", timeout=0.5):
                pass
        else:
            channel.unary_unary(path, **raw)(b"", timeout=5)
    except grpc.RpcError as err:
        return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_every_method_exports_its_latency_with_the_status_code_it_answered(channel: grpc.Channel) -> None:
    assert len(METHODS) >= 30  # every service the server registers
    for service, method in METHODS:
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method.name}
        grew = counting("rpc.server.duration", **attributes)
        code = _call(channel, service, method)
        assert grew() == 1, f"{service}/{method.name}: no rpc.server.duration point"
        [(exported, _)] = [
            (found, value)
            for found, value in points("rpc.server.duration")
            if all(found.get(k) == v for k, v in attributes.items()) and found["rpc.grpc.status_code"] == code.value[0]
        ]
        assert exported["rpc.grpc.status_code"] == code.value[0], f"{service}/{method.name} answered {code}"


def test_a_refused_call_counts_under_its_status_code_and_latency_is_in_milliseconds(
    running: RunningServer, channel: grpc.Channel
) -> None:
    attributes = {"rpc.service": "usageledger.v1.LedgerService", "rpc.method": "GetLogHead"}
    not_found = counting("rpc.server.duration", **attributes, **{"rpc.grpc.status_code": 5})
    ok = counting("rpc.server.duration", **attributes, **{"rpc.grpc.status_code": 0})
    append(running.port, event("acme", "wl-1", "WORKLOAD_UP", "2026-10-05T09:00:00Z"))
    get_head = channel.unary_unary(
        "/usageledger.v1.LedgerService/GetLogHead",
        request_serializer=ledger_pb2.GetLogHeadRequest.SerializeToString,
        response_deserializer=ledger_pb2.GetLogHeadResponse.FromString,
    )
    get_head(ledger_pb2.GetLogHeadRequest(log_id="org/acme"))
    with pytest.raises(grpc.RpcError) as err:
        get_head(ledger_pb2.GetLogHeadRequest(log_id="org/nobody"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert (ok(), not_found()) == (1, 1)
    data = reader.get_metrics_data()
    [metric] = [
        m for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics if m.name == "rpc.server.duration"
    ]
    assert metric.unit == "ms"


# -- verification failures and signing refusals ------------------------------------------------------------------


@dataclass
class SignedLedger:
    """A signing server (on demand only) whose org/acme log holds one entry, signed."""

    running: RunningServer
    audit: audit_pb2_grpc.AuditServiceStub


@pytest.fixture
def signed(db_url: str, clock: FixedClock, key_file: Path) -> Iterator[SignedLedger]:
    running = start_server(
        db_url, "127.0.0.1:0", clock=clock, signing_key=key_file, checkpoint_every=0, checkpoint_seconds=0
    )
    try:
        append(running.port, event("acme", "wl-1", "WORKLOAD_UP", "2026-10-05T09:00:00Z"))
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            audit = audit_pb2_grpc.AuditServiceStub(ch)
            audit.SignCheckpoint(audit_pb2.SignCheckpointRequest(log_id="org/acme"))
            yield SignedLedger(running, audit)
    finally:
        running.stop(grace=None)


def test_a_log_rewritten_under_its_checkpoint_counts_a_checkpoint_verification_failure_and_a_signing_refusal(
    signed: SignedLedger, tamper: TamperFactory
) -> None:
    failures = counting("usageledger.verification.failures", kind="checkpoint")
    refusals = counting("usageledger.signing.refusals")
    stopped = event("acme", "wl-1", "WORKLOAD_STOPPED", "2026-10-05T09:04:00Z", stop_reason="COMPLETED")
    append(signed.running.port, stopped)
    with tamper() as forge:  # the entry the next checkpoint would sign, altered
        forge("UPDATE entries SET body = :b WHERE log_id = 'org/acme' AND seq = 1", b=b'{"forged":1}')
    with pytest.raises(grpc.RpcError) as err:
        signed.audit.SignCheckpoint(audit_pb2.SignCheckpointRequest(log_id="org/acme"))
    assert err.value.code() == grpc.StatusCode.DATA_LOSS
    assert (failures(), refusals()) == (1, 1)
    # A refusal the caller can correct is not a verification failure.
    unrelated = counting("usageledger.verification.failures")
    with pytest.raises(grpc.RpcError) as err:
        signed.audit.SignCheckpoint(audit_pb2.SignCheckpointRequest(log_id="org/nobody"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and unrelated() == 0


def test_an_entry_rewritten_under_its_checkpoint_counts_a_log_verification_failure_when_proven(
    signed: SignedLedger, tamper: TamperFactory
) -> None:
    failures = counting("usageledger.verification.failures", kind="log")
    with tamper() as forge:  # the signed entry itself, altered
        forge("UPDATE entries SET body = :b WHERE log_id = 'org/acme' AND seq = 0", b=b'{"forged":1}')
    with pytest.raises(grpc.RpcError) as err:
        signed.audit.GetInclusionProof(audit_pb2.GetInclusionProofRequest(log_id="org/acme", sequence=0))
    assert err.value.code() == grpc.StatusCode.DATA_LOSS
    assert failures() == 1


# -- account state changes, invoices, late lines ----------------------------------------------------------------


def test_r19_deactivation_and_a_payment_method_count_as_state_changes_by_state(
    sqlite_url: str, clock: FixedClock
) -> None:
    running = start_server(sqlite_url, "127.0.0.1:0", clock=clock, close_interval=0.05)
    deactivated = counting("usageledger.account.state_changes", state="DEACTIVATED")
    method_set = counting("usageledger.account.state_changes", state="PAYMENT_METHOD_SET")
    reactivated = counting("usageledger.account.state_changes", state="REACTIVATED")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            billing = billing_pb2_grpc.BillingServiceStub(ch)
            accounts = apb_grpc.AccountServiceStub(ch)
            billing.GrantCredit(
                billing_pb2.GrantCreditRequest(org_id="acme", amount="5.00", reason="trial", request_id="w")
            )
            # R19: 110 minutes of an A100 at $0.0456 = $5.02, beyond the $5.00 of credit, with no payment method.
            clock.now = t("2026-10-05T10:51:00Z")
            append(
                running.port,
                event("acme", "wl-1", "WORKLOAD_UP", "2026-10-05T09:00:00Z", instance_type="A100"),
                event(
                    "acme",
                    "wl-1",
                    "WORKLOAD_STOPPED",
                    "2026-10-05T10:50:00Z",
                    instance_type="A100",
                    stop_reason="COMPLETED",
                ),
            )
            eventually(lambda: deactivated() == 1, "the closer's R19 deactivation")
            response = accounts.SetPaymentMethod(apb.SetPaymentMethodRequest(org_id="acme", reference="pm_1NqLiJL"))
            assert response.state == apb.ACCOUNT_STATE_ACTIVE
        assert (deactivated(), method_set(), reactivated()) == (1, 1, 1)
    finally:
        running.stop(grace=None)


def test_r17_r22_issued_invoices_count_by_trigger_with_their_late_lines(
    running: RunningServer, channel: grpc.Channel, clock: FixedClock
) -> None:
    threshold = counting("usageledger.invoices.issued", trigger="THRESHOLD")
    month_end = counting("usageledger.invoices.issued", trigger="MONTH_END")
    late = counting("usageledger.invoices.late_lines")
    billing = billing_pb2_grpc.BillingServiceStub(channel)
    apb_grpc.AccountServiceStub(channel).SetPaymentMethod(
        apb.SetPaymentMethodRequest(org_id="acme", reference="pm_1NqLiJLkdIwHu7ix")
    )
    # R17: 348 started minutes of a B200 at $0.144 = $50.11 > $50.00: a threshold invoice.
    clock.now = t("2026-10-05T15:00:00Z")
    append(
        running.port,
        event("acme", "wl-1", "WORKLOAD_UP", "2026-10-05T09:00:00Z"),
        event("acme", "wl-1", "WORKLOAD_STOPPED", "2026-10-05T14:48:00Z", stop_reason="COMPLETED"),
    )
    [first] = billing.CloseBillingPeriod(billing_pb2.CloseBillingPeriodRequest(org_id="acme")).issued
    assert first.trigger == billing_pb2.INVOICE_TRIGGER_THRESHOLD
    assert (threshold(), late()) == (1, 0)
    # R22: usage that started before invoice #1's end, reported after it: a late line on the month-end invoice.
    append(
        running.port,
        event("acme", "wl-2", "WORKLOAD_UP", "2026-10-05T08:00:00Z"),
        event("acme", "wl-2", "WORKLOAD_STOPPED", "2026-10-05T08:10:00Z", stop_reason="COMPLETED"),
    )
    clock.now = t("2026-11-01T01:00:05Z")  # R17: October's grace (an hour) has passed
    issued = billing.CloseBillingPeriod(billing_pb2.CloseBillingPeriodRequest(org_id="acme")).issued
    assert [i.trigger for i in issued] == [billing_pb2.INVOICE_TRIGGER_MONTH_END]
    full = billing.GetInvoice(billing_pb2.GetInvoiceRequest(org_id="acme", number=issued[0].number)).invoice
    late_on_invoice = sum(1 for line in full.lines if line.late)
    assert late_on_invoice >= 1
    assert (threshold(), month_end(), late()) == (1, 1, late_on_invoice)
    # Closing again issues nothing, and counts nothing (R17 is idempotent).
    assert not billing.CloseBillingPeriod(billing_pb2.CloseBillingPeriodRequest(org_id="acme")).issued
    assert (threshold(), month_end()) == (1, 1)


# -- gauges ------------------------------------------------------------------------------------------------------


def gauge(name: str, org_id: str) -> float | None:
    found = [value for attributes, value in points(name) if attributes.get("org_id") == org_id]
    return found[-1] if found else None


def test_rollup_lag_counts_the_entries_the_rollups_have_not_applied(
    running: RunningServer, channel: grpc.Channel
) -> None:
    append(
        running.port,
        event("lagging", "wl-1", "WORKLOAD_UP", "2026-10-05T08:00:00Z"),
        event("lagging", "wl-1", "WORKLOAD_STOPPED", "2026-10-05T08:10:00Z", stop_reason="COMPLETED"),
    )
    assert gauge("usageledger.rollup.lag", "lagging") == 2  # nothing has read the org's usage yet
    usage_pb2_grpc.UsageServiceStub(channel).QueryUsage(
        usage_pb2.QueryUsageRequest(
            org_id="lagging",
            start_time=_ts("2026-10-05T00:00:00Z"),
            end_time=_ts("2026-10-06T00:00:00Z"),
        )
    )
    assert gauge("usageledger.rollup.lag", "lagging") == 0  # the query caught the rollups up


def test_a_stopped_server_no_longer_exports_its_gauges(sqlite_url: str, clock: FixedClock) -> None:
    server = start_server(sqlite_url, "127.0.0.1:0", clock=clock)
    append(server.port, event("gone", "wl-1", "WORKLOAD_UP", "2026-10-05T08:00:00Z"))
    assert gauge("usageledger.rollup.lag", "gone") == 1
    server.stop(grace=None)
    assert all(attributes.get("org_id") != "gone" for attributes, _ in points("usageledger.rollup.lag"))


def _ts(text: str) -> Any:
    from wire.convert import micros_to_timestamp

    return micros_to_timestamp(t(text))


def test_appends_refused_at_the_inflight_limit_count_as_resource_exhausted(sqlite_url: str, clock: FixedClock) -> None:
    running = start_server(sqlite_url, "127.0.0.1:0", clock=clock, max_inflight=1)
    attributes = {"rpc.method": "AppendEvents", "rpc.grpc.status_code": grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]}
    exhausted = counting("rpc.server.duration", **attributes)
    codes: list[grpc.StatusCode] = []

    def try_append(org: str) -> None:
        try:
            append(running.port, event(org, "wl-1", "WORKLOAD_UP", "2026-10-05T08:00:00Z"))
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as err:
            codes.append(err.code())

    blocker = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=30, isolation_level=None)
    try:
        try_append("acme")  # the database exists, with its tables
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database: the first append in waits
        appenders = [threading.Thread(target=try_append, args=(org,), daemon=True) for org in ("beta", "gamma")]
        for thread in appenders:
            thread.start()
        eventually(lambda: exhausted() == 1, "one append refused at the limit of 1")  # the other holds the one slot
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    for thread in appenders:
        thread.join(30)
    running.stop(grace=None)
    assert sorted(code.name for code in codes) == ["OK", "OK", "RESOURCE_EXHAUSTED"]
    assert exhausted() == 1


def test_r28_r29_the_closer_exports_each_orgs_settled_through_lag_and_open_backfills(
    sqlite_url: str, clock: FixedClock
) -> None:
    clock.now = t("2026-10-05T15:00:00Z")
    running = start_server(sqlite_url, "127.0.0.1:0", clock=clock, close_interval=0.05)
    try:
        # R28: a closed session's stop is the org's latest event: settled through 14:48.
        append(
            running.port,
            event("settled", "wl-1", "WORKLOAD_UP", "2026-10-05T09:00:00Z"),
            event("settled", "wl-1", "WORKLOAD_STOPPED", "2026-10-05T14:48:00Z", stop_reason="COMPLETED"),
        )
        eventually(lambda: gauge("usageledger.settled_through.lag", "settled") == 12 * 60, "the closer's look")
        assert gauge("usageledger.backfills.open", "settled") == 0
        # The lag grows with the clock while nothing new arrives: the control plane stopped reporting.
        clock.now = t("2026-10-05T16:00:00Z")
        assert gauge("usageledger.settled_through.lag", "settled") == 72 * 60
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            open_backfill = ch.unary_unary(
                "/usageledger.v1.LedgerService/OpenBackfill",
                request_serializer=ledger_pb2.OpenBackfillRequest.SerializeToString,
                response_deserializer=ledger_pb2.OpenBackfillResponse.FromString,
            )
            open_backfill(
                ledger_pb2.OpenBackfillRequest(
                    org_id="settled",
                    backfill_id="bf-1",
                    from_time=_ts("2026-10-04T00:00:00Z"),
                    to_time=_ts("2026-10-05T00:00:00Z"),
                    reason="replaying a control plane's outage",
                )
            )
        eventually(lambda: gauge("usageledger.backfills.open", "settled") == 1, "the open backfill (R29)")
    finally:
        running.stop(grace=None)
    assert gauge("usageledger.settled_through.lag", "settled") is None  # a stopped closer exports nothing
