"""R11 and R12 through a real server on both stores: rates checked at each event's occurred_at, and no price
version taking effect before an issued invoice's cut."""

from __future__ import annotations

from decimal import Decimal

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from usageledger.v1 import account_pb2 as apb
from usageledger.v1 import account_pb2_grpc as apb_grpc
from usageledger.v1 import pricing_pb2 as ppb
from usageledger.v1 import pricing_pb2_grpc as ppb_grpc
from usageledger.v1 import usage_pb2 as upb
from usageledger.v1 import usage_pb2_grpc as upb_grpc

from client.ledger_client import LedgerClient
from ledger.errors import NotFound
from ledger.timeutil import parse_rfc3339_micros
from server.convert import micros_to_timestamp
from tests.conftest import EventFactory
from tests.test_server import details


def at(text: str) -> Timestamp:
    return micros_to_timestamp(parse_rfc3339_micros(text))


def set_price_book(client: LedgerClient, effective: str, rates: dict[str, tuple[str, str]]) -> ppb.PriceBook:
    request = ppb.SetPriceBookRequest(
        effective_time=at(effective),
        rates=[
            ppb.InstanceRate(instance_type=n, flex_per_second=f, active_per_second=a) for n, (f, a) in rates.items()
        ],
        note="test",
    )
    return client.call(ppb_grpc.PricingServiceStub(client.channel).SetPriceBook, request).price_book


def query_usage(client: LedgerClient, org: str, start: str, end: str) -> upb.QueryUsageResponse:
    request = upb.QueryUsageRequest(
        org_id=org, start_time=at(start), end_time=at(end), group_by=[upb.GROUP_BY_INSTANCE_TYPE]
    )
    return client.call(upb_grpc.UsageServiceStub(client.channel).QueryUsage, request)


def account_state(client: LedgerClient, org: str) -> apb.GetAccountStateResponse:
    return client.call(
        apb_grpc.AccountServiceStub(client.channel).GetAccountState, apb.GetAccountStateRequest(org_id=org)
    )


# R11 -----------------------------------------------------------------------------------------------------------


def test_r11_an_event_before_its_types_first_rate_is_refused_and_the_org_stays_readable(
    client: LedgerClient, make_event: EventFactory
) -> None:
    # The reproduction of issue #22: a price-book update adds CPU-8 from 2026-10-05T12:00Z, then an event of that
    # type at 09:00, before any version prices it. It used to be appended, and every later read of the org failed
    # NOT_FOUND ("R11: instance type 'CPU-8' is not in price book v0") for good.
    set_price_book(client, "2026-10-05T12:00:00Z", {"CPU-8": ("0.00002", "0.00001")})
    client.append_events([make_event(workload_id="wl-gpu", occurred_at="2026-10-05T09:00:00Z")])
    early = make_event(workload_id="wl-cpu", instance_type="CPU-8", occurred_at="2026-10-05T09:00:00Z")
    with pytest.raises(grpc.RpcError) as err:
        client.append_events([make_event(workload_id="wl-gpu2", occurred_at="2026-10-05T09:00:00Z"), early])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    infos, violations = details(err.value)
    assert infos[0].reason == "INVALID_ARGUMENT"
    assert violations == [
        (
            "events[1].instance_type",
            "R11: 'CPU-8' has no rate in the price book in force at its occurred_at 2026-10-05T09:00:00.000000Z "
            "(v0); its first rate takes effect 2026-10-05T12:00:00.000000Z; nothing was appended",
        )
    ]
    assert client.head("org/acme").size == 1  # the whole batch refused: the valid event in it too

    # The org stays readable, and the type is accepted from its first rate on and rated at it (R11):
    # UP 12:00, STOP 12:02:00.5 is ceil(120.5 / 60) = 3 minutes (R10) x 60 x $0.00002 = $0.0036.
    client.append_events(
        [
            make_event(workload_id="wl-cpu", instance_type="CPU-8", occurred_at="2026-10-05T12:00:00Z"),
            make_event(
                workload_id="wl-cpu",
                instance_type="CPU-8",
                type="WORKLOAD_STOPPED",
                stop_reason="COMPLETED",
                occurred_at="2026-10-05T12:02:00.500000Z",
            ),
        ]
    )
    usage = query_usage(client, "acme", "2026-10-05T11:00:00Z", "2026-10-05T13:00:00Z")
    cpu = [row for row in usage.rows if row.instance_type == "CPU-8"]
    assert [(row.quantity, Decimal(row.amount)) for row in cpu] == [(3, Decimal("0.0036"))]
    assert account_state(client, "acme").org_id == "acme"


def test_r11_the_type_is_checked_on_the_fast_and_the_full_validation_paths_alike(
    client: LedgerClient, make_event: EventFactory
) -> None:
    # A batch whose other event is malformed goes through the full checks: every violation is still listed,
    # R11's at-occurred_at refusal among them.
    set_price_book(client, "2026-10-05T12:00:00Z", {"CPU-8": ("0.00002", "0.00001")})
    batch = [
        make_event(instance_type="CPU-8", occurred_at="2026-10-05T11:59:59.999999Z"),
        make_event(event_id=""),
    ]
    with pytest.raises(grpc.RpcError) as err:
        client.append_events(batch)
    _, violations = details(err.value)
    assert [field for field, _ in violations] == ["events[0].instance_type", "events[1].event_id"]
    assert "R11" in violations[0][1]
    with pytest.raises(grpc.RpcError) as missing:
        client.head("org/acme")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    # One microsecond later the version is in force: accepted.
    [result] = client.append_events([make_event(instance_type="CPU-8", occurred_at="2026-10-05T12:00:00Z")])
    assert (result.log_id, result.sequence) == ("org/acme", 0)


def test_r11_prices_at_follows_the_version_in_force() -> None:
    from ledger.pricebook import InstanceRate, PriceBook, PriceHistory, default_price_book

    cpu = InstanceRate(Decimal("0.00002"), Decimal("0.00001"))
    noon = parse_rfc3339_micros("2026-10-05T12:00:00Z")
    default = default_price_book()
    with_cpu = PriceBook(noon, {**default.rates, "CPU-8": cpu}, version=3)
    history = PriceHistory([default, with_cpu])
    assert not history.prices_at("CPU-8", noon - 1)
    assert history.prices_at("CPU-8", noon)
    assert history.prices_at("A100", noon - 1) and history.prices_at("A100", noon)
    assert not history.prices_at("A100", -1)  # before the default book (in force from the epoch)
    assert history.first_priced("CPU-8") == noon and history.first_priced("TPU") is None
    with pytest.raises(NotFound, match="R11"):
        history.at(noon - 1).rate("CPU-8")
