"""BillingService and AccountService state over real gRPC on an ephemeral port, with the period closer running on
the server's injected clock: invoices as time passes (R17), state flips pushed to watchers (R15, R19)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from usageledger.v1 import account_pb2 as apb
from usageledger.v1 import account_pb2_grpc as apb_grpc
from usageledger.v1 import billing_pb2 as bpb
from usageledger.v1 import billing_pb2_grpc as bpb_grpc

from client.ledger_client import LedgerClient
from ledger.billing.rederive import rederive_invoices
from ledger.log.entry import SYSTEM_LOG, org_log_id
from ledger.timeutil import format_micros
from server.app import RunningServer, start_server
from tests.billing_support import event, heartbeat, t
from tests.conftest import FixedClock
from wire.convert import micros_to_timestamp, timestamp_to_micros

T = TypeVar("T")
WAIT_SECONDS = 20.0


@pytest.fixture
def billing_clock() -> FixedClock:
    return FixedClock(t("2026-10-05T09:00:00Z"))


def serve(url: str, clock: FixedClock) -> RunningServer:
    return start_server(url, "127.0.0.1:0", clock=clock, close_interval=0.05)


@pytest.fixture
def closing_server(sqlite_url: str, billing_clock: FixedClock) -> Iterator[RunningServer]:
    running = serve(sqlite_url, billing_clock)
    yield running
    running.stop(grace=None)


@pytest.fixture
def channel(closing_server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{closing_server.port}") as ch:
        yield ch


def eventually(probe: Callable[[], T | None], what: str) -> T:
    """Poll until the closer thread has done its part (it runs on a real-time interval)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def append(target: str, *events: dict[str, Any]) -> None:
    with LedgerClient(target, retries=0) as client:
        client.append_events(list(events))


def details(err: grpc.RpcError) -> tuple[str, list[tuple[str, str]]]:
    status = rpc_status.from_call(err)
    assert status is not None
    reason, violations = "", list[tuple[str, str]]()
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend((v.field, v.description) for v in bad.field_violations)
    return reason, violations


def test_r15_a_watcher_sees_every_flip_as_the_closer_finds_it(
    closing_server: RunningServer, channel: grpc.Channel, billing_clock: FixedClock
) -> None:
    target = f"127.0.0.1:{closing_server.port}"
    accounts = apb_grpc.AccountServiceStub(channel)
    accounts.SetAccountSettings(
        apb.SetAccountSettingsRequest(
            org_id="acme", spend_limit_per_hour="10.00", effective_time=micros_to_timestamp(t("2026-01-01T00:00:00Z"))
        )
    )
    accounts.SetPaymentMethod(apb.SetPaymentMethodRequest(org_id="acme", reference="pm_1NqLiJLkdIwHu7ix"))

    received: queue.Queue[apb.WatchAccountStateResponse] = queue.Queue()
    stream = accounts.WatchAccountState(apb.WatchAccountStateRequest(org_id="acme"))

    def consume() -> None:
        try:
            for message in stream:
                received.put(message)
        except grpc.RpcError:
            pass  # cancelled at the end of the test

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    try:
        first = received.get(timeout=WAIT_SECONDS)
        assert first.state == apb.ACCOUNT_STATE_ACTIVE and not first.HasField("change")

        # wl-a B200 FLEX ($0.144/min) from 10:00, wl-b H100 PRO FLEX ($0.0696/min) from 10:30; limit $10.00/h.
        billing_clock.now = t("2026-10-05T10:00:00Z")
        append(target, event("acme", "wl-a", "WORKLOAD_UP", "2026-10-05T10:00:00Z"))
        billing_clock.now = t("2026-10-05T10:30:00Z")
        append(target, event("acme", "wl-b", "WORKLOAD_UP", "2026-10-05T10:30:00Z", instance_type="H100 PRO"))
        billing_clock.now = t("2026-10-05T10:58:00Z")  # the closer's next tick looks back and finds 10:56
        append(target, heartbeat("acme", "2026-10-05T10:58:00Z"))  # R28: both proven running to 10:58
        exceeded = received.get(timeout=WAIT_SECONDS)
        assert exceeded.state == apb.ACCOUNT_STATE_SPEND_LIMIT_EXCEEDED
        assert exceeded.change.type == apb.ACCOUNT_STATE_CHANGE_TYPE_SPEND_LIMIT_EXCEEDED
        assert format_micros(timestamp_to_micros(exceeded.change.change_time)) == "2026-10-05T10:56:00.000000Z"
        assert exceeded.change.figures["hourly_spend"] == "10.0872"  # 57 x 0.144 + 27 x 0.0696
        assert exceeded.change.rule == "R15"

        billing_clock.now = t("2026-10-05T11:05:00Z")
        append(
            target,
            event("acme", "wl-b", "WORKLOAD_STOPPED", "2026-10-05T11:00:00Z", stop_reason="SCALED_DOWN"),
            heartbeat("acme", "2026-10-05T11:05:00Z"),
        )
        billing_clock.now = t("2026-10-05T11:45:00Z")
        append(target, heartbeat("acme", "2026-10-05T11:45:00Z"))
        cleared = received.get(timeout=WAIT_SECONDS)
        assert cleared.state == apb.ACCOUNT_STATE_ACTIVE
        assert cleared.change.type == apb.ACCOUNT_STATE_CHANGE_TYPE_SPEND_LIMIT_CLEARED
        assert format_micros(timestamp_to_micros(cleared.change.change_time)) == "2026-10-05T11:40:00.000000Z"
        assert cleared.change.figures["hourly_spend"] == "9.9624"  # 60 x 0.144 + 19 x 0.0696
    finally:
        stream.cancel()
        reader.join(WAIT_SECONDS)

    # A watcher that reconnects replays what it missed from the log, then goes live.
    replay = accounts.WatchAccountState(
        apb.WatchAccountStateRequest(org_id="acme", start_sequence=exceeded.change.sequence)
    )
    try:
        replayed = [next(replay), next(replay)]
    finally:
        replay.cancel()
    assert [m.change.sequence for m in replayed] == [exceeded.change.sequence, cleared.change.sequence]
    assert [m.state for m in replayed] == [apb.ACCOUNT_STATE_SPEND_LIMIT_EXCEEDED, apb.ACCOUNT_STATE_ACTIVE]

    state = accounts.GetAccountState(apb.GetAccountStateRequest(org_id="acme"))
    assert state.state == apb.ACCOUNT_STATE_ACTIVE and state.payment_method_on_file
    # At 11:45 the window (10:45, 11:45] holds wl-a's units 10:46-11:44 (the HEARTBEAT at 11:45 proves the one
    # starting at 11:45 has not yet started, R28) and wl-b's 10:46-10:59: 59 x 0.144 + 14 x 0.0696 = 9.4704.
    assert state.spend_limit_per_hour == "10.00" and state.hourly_spend == "9.4704"
    assert state.last_change.sequence == cleared.change.sequence


def test_r19_the_closer_deactivates_when_usage_outgrows_credits_and_a_payment_method_reactivates(
    closing_server: RunningServer, channel: grpc.Channel, billing_clock: FixedClock
) -> None:
    target = f"127.0.0.1:{closing_server.port}"
    billing = bpb_grpc.BillingServiceStub(channel)
    accounts = apb_grpc.AccountServiceStub(channel)
    billing.GrantCredit(bpb.GrantCreditRequest(org_id="acme", amount="5.00", reason="new workspace", request_id="w"))
    append(target, event("acme", "wl-1", "WORKLOAD_UP", "2026-10-05T09:00:00Z", instance_type="A100"))
    billing_clock.now = t("2026-10-05T10:50:00Z")  # 110 x $0.0456 = $5.02 > $5.00 of credit
    append(target, heartbeat("acme", "2026-10-05T10:50:00Z"))  # R28: proven running to 10:50

    def deactivated() -> apb.GetAccountStateResponse | None:
        # GetAccountState reports R19's state at once; this waits for the closer's STATE entry too.
        state = accounts.GetAccountState(apb.GetAccountStateRequest(org_id="acme"))
        recorded = state.last_change.type == apb.ACCOUNT_STATE_CHANGE_TYPE_DEACTIVATED
        return state if state.state == apb.ACCOUNT_STATE_DEACTIVATED and recorded else None

    state = eventually(deactivated, "R19 deactivation")
    assert state.last_change.type == apb.ACCOUNT_STATE_CHANGE_TYPE_DEACTIVATED
    assert (state.credit_left, state.open_period_total, state.open_period_amount_due) == ("5.00", "5.02", "0.02")
    response = accounts.SetPaymentMethod(apb.SetPaymentMethodRequest(org_id="acme", reference="pm_1NqLiJLkdIwHu7ix"))
    assert response.changed and response.state == apb.ACCOUNT_STATE_ACTIVE

    with pytest.raises(grpc.RpcError) as err:
        accounts.SetPaymentMethod(apb.SetPaymentMethodRequest(org_id="acme", reference="4111 1111 1111 1111"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    reason, violations = details(err.value)
    assert reason == "INVALID_REFERENCE" and violations[0][0] == "reference" and "R19" in violations[0][1]
    assert "4111" not in (err.value.details() or "")


@pytest.mark.parametrize("storage", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_r17_the_closer_issues_invoices_as_time_passes(
    storage: str, sqlite_url: str, pg_url_factory: Callable[[], str], billing_clock: FixedClock
) -> None:
    url = sqlite_url if storage == "sqlite" else pg_url_factory()
    running = serve(url, billing_clock)
    target = f"127.0.0.1:{running.port}"
    try:
        with grpc.insecure_channel(target) as ch:
            billing = bpb_grpc.BillingServiceStub(ch)
            apb_grpc.AccountServiceStub(ch).SetPaymentMethod(
                apb.SetPaymentMethodRequest(org_id="acme", reference="pm_1NqLiJLkdIwHu7ix")
            )
            append(target, event("acme", "wl-1", "WORKLOAD_UP", "2026-10-05T09:00:00Z"))  # B200 FLEX, open

            def invoices(count: int) -> list[bpb.Invoice] | None:
                found = list(billing.ListInvoices(bpb.ListInvoicesRequest(org_id="acme")).invoices)
                return found if len(found) >= count else None

            billing_clock.now = t("2026-10-05T14:48:00Z")  # 348 minutes started: $50.112 -> $50.11 > $50.00
            append(target, heartbeat("acme", "2026-10-05T14:48:00Z"))  # R28: proven running to 14:48
            [first] = eventually(lambda: invoices(1), "the R17 threshold invoice")
            assert (first.number, first.trigger, first.total) == (1, bpb.INVOICE_TRIGGER_THRESHOLD, "50.11")
            assert first.payment_status == bpb.PAYMENT_STATUS_PENDING and not first.lines  # BASIC view

            billing_clock.now = t("2026-10-05T15:00:00Z")  # $1.73 more by 15:00: under the threshold
            append(target, event("acme", "wl-1", "WORKLOAD_STOPPED", "2026-10-05T15:00:00Z", stop_reason="OOM"))
            billing_clock.now = t("2026-11-01T00:00:05Z")
            append(target, heartbeat("acme", "2026-11-01T00:00:05Z"))  # settled through the month's end (R28)
            second = eventually(lambda: invoices(2), "the month-end invoice")[1]
            assert (second.trigger, second.total) == (bpb.INVOICE_TRIGGER_MONTH_END, "1.73")  # 12 x $0.144
            assert format_micros(timestamp_to_micros(second.period_end_time)) == "2026-11-01T00:00:00.000000Z"

            full = billing.GetInvoice(bpb.GetInvoiceRequest(org_id="acme", number=1)).invoice
            assert [(line.quantity, line.unit_price, line.amount) for line in full.lines] == [("348", "0.144", "50.11")]
            assert [(s.workload_id, s.first_unit_index, s.end_unit_index) for s in full.covered_sessions] == [
                ("wl-1", 0, 348)
            ]
            paid = billing.RecordPayment(
                bpb.RecordPaymentRequest(
                    org_id="acme", invoice_number=1, outcome=bpb.PAYMENT_OUTCOME_SUCCEEDED, reference="ch_3NqPaid01"
                )
            )
            assert paid.payment_status == bpb.PAYMENT_STATUS_PAID and paid.payment.amount == "50.11"
            with pytest.raises(grpc.RpcError) as err:
                billing.RecordPayment(
                    bpb.RecordPaymentRequest(
                        org_id="acme", invoice_number=1, outcome=bpb.PAYMENT_OUTCOME_SUCCEEDED, reference="ch_3NqPaid02"
                    )
                )
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert details(err.value)[0] == "BILLING_PRECONDITION_FAILED"
        # What the closer thread issued, an auditor re-derives from the raw entries (`ledgerctl audit verify`).
        store = running.ledger.store
        system = list(store.iter_entries(SYSTEM_LOG))
        found = rederive_invoices("acme", store.iter_entries(org_log_id("acme")), system)
        assert [(f.number, f.total, f.ok) for f in found] == [(1, "50.11", True), (2, "1.73", True)]
    finally:
        running.stop(grace=None)


@pytest.fixture
def pg_url_factory() -> Iterator[Callable[[], str]]:
    from tests.conftest import _pg_database

    made: list[Iterator[str]] = []

    def make() -> str:
        generator = _pg_database()
        made.append(generator)
        return next(generator)

    yield make
    for generator in made:
        for _ in generator:
            pass


def test_billing_rpcs_name_every_bad_field_and_page_lists(channel: grpc.Channel) -> None:
    billing = bpb_grpc.BillingServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        billing.GrantCredit(bpb.GrantCreditRequest(org_id="acme", amount="-3", reason=""))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in details(err.value)[1]] == ["amount", "reason"]
    for number in range(3):
        billing.GrantCredit(bpb.GrantCreditRequest(org_id="acme", amount=f"{number + 1}.00", reason="promo"))
    page = billing.ListCredits(bpb.ListCreditsRequest(org_id="acme", page_size=2))
    rest = billing.ListCredits(bpb.ListCreditsRequest(org_id="acme", page_size=2, page_token=page.next_page_token))
    assert [c.amount for c in (*page.credits, *rest.credits)] == ["1.00", "2.00", "3.00"]
    assert rest.next_page_token == "" and page.credit_left == "6.00"
    with pytest.raises(grpc.RpcError) as missing:
        billing.GetInvoice(bpb.GetInvoiceRequest(org_id="acme", number=7))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as future:
        billing.CloseBillingPeriod(
            bpb.CloseBillingPeriodRequest(org_id="acme", close_time=micros_to_timestamp(t("2027-01-01T00:00:00Z")))
        )
    assert future.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "R17" in (future.value.details() or "")
