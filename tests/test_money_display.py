"""Money a person can check (R13, R14, R21, R25): repeating amounts written exactly, storage with its GB-seconds and
R14 tiers, and usage totals that are the same whatever the grouping, through a real server."""

from __future__ import annotations

import itertools
import json
import re
import uuid
from decimal import Decimal
from fractions import Fraction
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from usageledger.v1 import ledger_pb2 as lpb
from usageledger.v1 import support_pb2 as spb
from usageledger.v1 import support_pb2_grpc as spb_grpc
from usageledger.v1 import usage_pb2 as upb
from usageledger.v1 import usage_pb2_grpc as upb_grpc

from client.ledger_client import LedgerClient
from ledger.rating.money import MAX_REPETEND_DIGITS, exact_text, format_money, format_seconds, fraction_text
from ledger.timeutil import format_micros, parse_rfc3339_micros
from server.app import RunningServer
from tests.conftest import EXAMPLE_DAY
from tests.test_cli import ledgerctl
from wire.convert import micros_to_timestamp

_REPEATING = re.compile(r"^(-?)(\d+)\.(\d*)\((\d+)\)$")


def parse_exact(text: str) -> Fraction:
    """Read exact_text's notation back: `0.16689(814)` is 0.16689 + 0.00000814814..., `p/q` a fraction."""
    if "/" in text:
        return Fraction(text)
    match = _REPEATING.match(text)
    if match is None:
        return Fraction(Decimal(text))
    sign, whole, prefix, repetend = match.groups()
    value = Fraction(int(whole)) + Fraction(int(prefix or "0"), 10 ** len(prefix))
    value += Fraction(int(repetend), (10 ** len(repetend) - 1) * 10 ** len(prefix))
    return -value if sign else value


# -- how amounts are written (R21: never rounded outside invoice lines) ------------------------------------------


def test_r21_repeating_amounts_are_written_with_their_repetend_never_cut() -> None:
    # Long division by hand: 721/4320 = 0.16689 814 814 ... (4320 = 2^5 x 3^3 x 5: five digits before the repetend,
    # and 10^3 = 1 mod 27 so three repeat).
    assert exact_text(Fraction(721, 4320)) == "0.16689(814)"
    # R14: a 1,200 GB volume for 300 s: (1,000 x $0.07 + 200 x $0.05) x 300 / 2,592,000 = $1/108 = $0.00925 925 ...
    assert format_money(Fraction(1, 108)) == "$0.00(925)"
    # R13: a 37 GB container disk for 300 s: 37 x $0.10 x 300 / 2,592,000 = $37/86,400 = $0.0004282 407 407 ...
    assert format_money(Fraction(37, 86_400)) == "$0.0004282(407)"
    # R25: a second shared by three requests, each a third of it.
    assert format_seconds(Fraction(1_000_000, 3)) == "0.(3)"
    assert exact_text(Fraction(-1, 6)) == "-0.1(6)"
    # Terminating amounts stay plain decimals (R11 rates are decimals: compute amounts always terminate).
    assert exact_text(Decimal("0.0456")) == "0.0456" and exact_text(Fraction(57, 1250)) == "0.0456"
    assert exact_text(5) == "5" and fraction_text(Decimal("0.0456")) == "57/1250"
    # A repetend past MAX_REPETEND_DIGITS (1/9973 repeats every 9,972 digits) is written as the fraction.
    assert MAX_REPETEND_DIGITS < 9972
    assert exact_text(Fraction(7, 9973)) == "7/9973"


@given(
    numerator=st.integers(-(10**12), 10**12),
    denominator=st.sampled_from([1, 3, 7, 12, 81, 108, 4320, 86_400, 2_592_000, 75_000, 999_983]),
)
def test_r21_the_written_amount_is_the_exact_value(numerator: int, denominator: int) -> None:
    value = Fraction(numerator, denominator)
    text = exact_text(value)
    assert parse_exact(text) == value
    assert "/" in text or len(text) < 120  # never dozens of digits cut somewhere


# -- usage rows: exact amounts, GB-seconds and R14 tiers, over a real server -------------------------------------


def at(text: str) -> Timestamp:
    return micros_to_timestamp(parse_rfc3339_micros(text))


def query(
    client: LedgerClient, org: str, start: str, end: str, groups: tuple[int, ...] = (), bucket: int = 0
) -> upb.QueryUsageResponse:
    request = upb.QueryUsageRequest(
        org_id=org, start_time=at(start), end_time=at(end), group_by=list(groups), bucket=bucket
    )
    return client.call(upb_grpc.UsageServiceStub(client.channel).QueryUsage, request)


def storage_event(org: str, event_id: str, kind: str, gigabytes: str, interval: int, when: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "org_id": org,
        "endpoint_id": "ep-llama",
        "workload_id": "wl-1",
        "workload_kind": "SERVING",
        "instance_type": "A100",
        "type": "STORAGE_SAMPLE",
        "storage_kind": kind,
        "gigabytes": gigabytes,
        "interval_seconds": interval,
        **({"volume_id": "vol-models"} if kind == "NETWORK_VOLUME" else {}),
        "occurred_at": when,
    }


def test_r14_storage_rows_carry_gigabyte_seconds_their_tier_split_and_the_exact_amount(
    client: LedgerClient, server: RunningServer
) -> None:
    client.append_events(
        [
            # R14: 1,200 GB for 300 s and 900 GB for 120 s of one volume.
            storage_event("acme", "v1", "NETWORK_VOLUME", "1200", 300, "2026-10-05T10:05:00Z"),
            storage_event("acme", "v2", "NETWORK_VOLUME", "900", 120, "2026-10-05T10:07:00Z"),
            # R13: 37 GB for 300 s.
            storage_event("acme", "d1", "CONTAINER_DISK", "37", 300, "2026-10-05T10:05:00Z"),
        ]
    )
    response = query(client, "acme", "2026-10-05T10:00:00Z", "2026-10-05T11:00:00Z")
    rows = {row.storage_kind: row for row in response.rows}
    volume, disk = rows["NETWORK_VOLUME"], rows["CONTAINER_DISK"]
    # Volume: 1,200 x 300 + 900 x 120 = 468,000 GB-s; first tier 1,000 x 300 + 900 x 120 = 408,000, beyond
    # 200 x 300 = 60,000. Amount (408,000 x 0.07 + 60,000 x 0.05) / 2,592,000 = 31,560 / 2,592,000 = 263/21,600.
    assert (volume.gigabyte_seconds, volume.first_tier_gigabyte_seconds, volume.beyond_tier_gigabyte_seconds) == (
        "468000",
        "408000",
        "60000",
    )
    assert volume.amount_fraction == "263/21600"
    # Disk: 37 x 300 = 11,100 GB-s, one rate: 11,100 x 0.10 / 2,592,000 = 37/86,400. No tiers (R13).
    assert (disk.gigabyte_seconds, disk.first_tier_gigabyte_seconds, disk.amount_fraction) == ("11100", "", "37/86400")
    # The decimal field keeps its meaning (50 significant digits of a repeating amount); the total is exact.
    assert disk.amount == "0.000" + "4282" + ("407" * 16)[:46]  # 50 significant digits; the 51st is a 0
    assert Fraction(response.total_amount_fraction) == Fraction(263, 21_600) + Fraction(37, 86_400)

    result = ledgerctl(
        "usage", "--org", "acme", "--from", "2026-10-05T10:00:00Z", "--to", "2026-10-05T11:00:00Z", "--json",
        target=f"127.0.0.1:{server.port}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    by_kind = {row["storage_kind"]: row for row in shown["rows"]}
    # 263/21,600 = 0.01217 592 592 ... (21,600 = 2^5 x 3^3 x 5^2); 37/86,400 = 0.0004282 407 ...
    assert by_kind["NETWORK_VOLUME"]["amount_exact"] == "0.01217(592)"
    assert by_kind["CONTAINER_DISK"]["amount_exact"] == "0.0004282(407)"
    assert by_kind["NETWORK_VOLUME"]["first_tier_gigabyte_seconds"] == "408000"
    # 263/21,600 + 37/86,400 = 1,089/86,400 = 121/9,600 = 0.0126041 666 ...
    assert (shown["total_exact"], shown["total_fraction"]) == ("0.0126041(6)", "121/9600")
    table = ledgerctl(
        "usage", "--org", "acme", "--from", "2026-10-05T10:00:00Z", "--to", "2026-10-05T11:00:00Z",
        target=f"127.0.0.1:{server.port}",
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert "total 0.0126041(6) USD (= 121/9600)" in table.stdout
    assert "468000 (408000 + 60000)" in table.stdout


def test_r14_a_dispute_lists_storage_with_gigabyte_seconds_tiers_and_exact_totals(
    client: LedgerClient, server: RunningServer
) -> None:
    client.append_events(
        [
            storage_event("acme", "v1", "NETWORK_VOLUME", "1200", 300, "2026-10-05T10:05:00Z"),
            storage_event("acme", "d1", "CONTAINER_DISK", "37", 300, "2026-10-05T10:05:00Z"),
        ]
    )
    request = spb.ReconstructChargesRequest(org_id="acme", endpoint_id="ep-llama")
    request.start_time.CopyFrom(at("2026-10-05T10:00:00Z"))
    request.end_time.CopyFrom(at("2026-10-05T11:00:00Z"))
    response = client.call(spb_grpc.SupportServiceStub(client.channel).ReconstructCharges, request)
    lines = {line.storage_kind: line for line in response.storage}
    volume, disk = lines[lpb.STORAGE_KIND_NETWORK_VOLUME], lines[lpb.STORAGE_KIND_CONTAINER_DISK]
    # R14: 1,200 GB x 300 s = 360,000 GB-s: 300,000 in the first tier, 60,000 beyond; (300,000 x 0.07 + 60,000 x
    # 0.05) / 2,592,000 = 24,000 / 2,592,000 = $1/108. R13: 37 x 300 = 11,100 GB-s x 0.10 / 2,592,000 = $37/86,400.
    assert (volume.gigabyte_seconds, volume.first_tier_gigabyte_seconds, volume.beyond_tier_gigabyte_seconds) == (
        "360000",
        "300000",
        "60000",
    )
    assert (volume.amount_fraction, disk.gigabyte_seconds, disk.amount_fraction) == ("1/108", "11100", "37/86400")
    assert "= $0.00(925)" in volume.explanation and "= $0.0004282(407)" in disk.explanation
    # 1/108 + 37/86,400 = 800/86,400 + 37/86,400 = 837/86,400 = 31/3,200, which terminates: 0.0096875.
    totals = response.totals
    assert (totals.storage_amount_fraction, totals.total_amount_fraction) == ("31/3200", "31/3200")
    assert (totals.storage_amount, totals.total_amount, totals.window_storage_amount) == ("0.0096875",) * 3

    # The per-interval storage table, GB-seconds included, is behind --details (docs/disputes.md).
    text = ledgerctl(
        "support", "lookup", "--org", "acme", "--endpoint", "ep-llama", "--from", "2026-10-05T10:00:00Z",
        "--to", "2026-10-05T11:00:00Z", "--details", target=f"127.0.0.1:{server.port}",
    )  # fmt: skip
    assert text.returncode == 0, text.stderr
    assert "360000 (300000 + 60000)" in text.stdout and "$0.00(925)" in text.stdout
    assert "storage $0.0096875" in text.stdout


def test_r25_a_shared_seconds_share_is_shown_exactly_in_the_request_lookup(
    client: LedgerClient, server: RunningServer, make_event: Any
) -> None:
    # Three requests in flight together 10:00:20-10:00:21 on an A100 FLEX replica ($0.00076/s): R25 gives each a
    # third of that second, 1/3 s and $0.00076/3 = $19/75,000 = $0.00025(3).
    events = [
        make_event(workload_id="wl-1", occurred_at="2026-10-05T10:00:00Z"),
        make_event(workload_id="wl-1", type="WORKLOAD_READY", occurred_at="2026-10-05T10:00:10Z"),
    ]
    for request_id in ("r-1", "r-2", "r-3"):
        events.append(
            make_event(
                workload_id="wl-1", type="REQUEST_STARTED", request_id=request_id, occurred_at="2026-10-05T10:00:20Z"
            )
        )
        events.append(
            make_event(
                workload_id="wl-1", type="REQUEST_FINISHED", request_id=request_id, occurred_at="2026-10-05T10:00:21Z"
            )
        )
    events.append(
        make_event(
            workload_id="wl-1", type="WORKLOAD_STOPPED", stop_reason="SCALED_DOWN", occurred_at="2026-10-05T10:01:00Z"
        )
    )
    client.append_events(events)
    response = client.call(
        spb_grpc.SupportServiceStub(client.channel).ReconstructCharges,
        spb.ReconstructChargesRequest(request_id="r-2"),
    )
    share = response.request
    assert (share.attributed_seconds_fraction, share.attributed_amount_fraction) == ("1/3", "19/75000")
    assert share.attributed_seconds == "0." + "3" * 50  # the decimal field keeps its meaning
    text = ledgerctl("support", "lookup", "--request", "r-2", target=f"127.0.0.1:{server.port}")
    assert text.returncode == 0, text.stderr
    assert "attributed 0.(3) s of serving time = $0.00025(3) (= 19/75000)" in text.stdout


# -- totals the same whatever the grouping ------------------------------------------------------------------------

_GROUPINGS = [
    combo
    for size in range(0, 5)
    for combo in itertools.combinations(
        (upb.GROUP_BY_ENDPOINT, upb.GROUP_BY_WORKLOAD_KIND, upb.GROUP_BY_INSTANCE_TYPE, upb.GROUP_BY_WORKER_TYPE), size
    )
]


@st.composite
def org_usage(draw: st.DrawFn, org: str) -> list[dict[str, Any]]:
    """Sessions and storage samples on several endpoints, types and workers between 09:00 and 13:00."""
    base = parse_rfc3339_micros("2026-10-05T09:00:00Z")
    events: list[dict[str, Any]] = []
    for index in range(draw(st.integers(1, 5))):
        up = base + draw(st.integers(0, 3 * 3600 * 1_000_000))
        common = {
            "org_id": org,
            "endpoint_id": f"ep-{draw(st.integers(0, 2))}",
            "workload_id": f"w{index}",
            "workload_kind": draw(st.sampled_from(["SERVING", "BUILD", "TRAINING"])),
            "instance_type": draw(st.sampled_from(["A100", "L4", "H100 PRO"])),
            "worker_type": draw(st.sampled_from(["FLEX", "ACTIVE"])),
        }
        events.append({**common, "event_id": f"w{index}-up", "type": "WORKLOAD_UP", "occurred_at": format_micros(up)})
        stop = up + draw(st.integers(1, 2 * 3600 * 1_000_000))
        events.append(
            {
                **common,
                "event_id": f"w{index}-stop",
                "type": "WORKLOAD_STOPPED",
                "stop_reason": "SCALED_DOWN",
                "occurred_at": format_micros(stop),
            }
        )
        for k in range(draw(st.integers(0, 4))):
            kind = draw(st.sampled_from(["CONTAINER_DISK", "NETWORK_VOLUME"]))
            events.append(
                {
                    **common,
                    "event_id": f"w{index}-s{k}",
                    "type": "STORAGE_SAMPLE",
                    "storage_kind": kind,
                    **({"volume_id": f"vol-{index}"} if kind == "NETWORK_VOLUME" else {}),
                    # Sizes with decimals and odd intervals: amounts over 2,592,000 that repeat (R13, R14).
                    "gigabytes": str(Decimal(draw(st.integers(1, 3_000_000))) / 1000),
                    "interval_seconds": draw(st.integers(1, 3600)),
                    "occurred_at": format_micros(up + draw(st.integers(1, 3 * 3600)) * 1_000_000),
                }
            )
    return events


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_r21_usage_totals_are_the_same_whatever_the_grouping(data: Any, client: LedgerClient) -> None:
    org = f"prop-{uuid.uuid4().hex[:8]}"  # each example its own org on the one server
    client.append_events(data.draw(org_usage(org)))
    start, end = "2026-10-05T09:30:00Z", "2026-10-05T12:30:00Z"  # cuts through sessions and samples
    plain = query(client, org, start, end)
    exact = Fraction(plain.total_amount_fraction)
    assert sum((Fraction(row.amount_fraction) for row in plain.rows), Fraction(0)) == exact
    for groups in [*data.draw(st.lists(st.sampled_from(_GROUPINGS), min_size=1, max_size=4)), _GROUPINGS[-1]]:
        for bucket in (upb.BUCKET_UNSPECIFIED, upb.BUCKET_HOUR):
            grouped = query(client, org, start, end, groups, bucket)
            assert (grouped.total_amount, grouped.total_amount_fraction) == (
                plain.total_amount,
                plain.total_amount_fraction,
            )
            assert sum((Fraction(row.amount_fraction) for row in grouped.rows), Fraction(0)) == exact


def test_r21_the_example_days_total_is_one_figure_by_hour_and_endpoint_or_whole(client: LedgerClient) -> None:
    # issue #22: grouped and ungrouped totals of the example day differed in their last digits, because each
    # storage row was cut to 50 digits before the rows were added up.
    lines = [json.loads(line) for line in EXAMPLE_DAY.read_text().splitlines() if line.strip()]
    for start in range(0, len(lines), 1000):
        client.append_events(lines[start : start + 1000])
    day = ("2026-10-05T00:00:00Z", "2026-10-06T00:00:00Z")
    whole = query(client, "acme", *day)
    hourly = query(client, "acme", *day, (upb.GROUP_BY_ENDPOINT, upb.GROUP_BY_INSTANCE_TYPE), upb.BUCKET_HOUR)
    assert len(hourly.rows) > 24
    assert (hourly.total_amount, hourly.total_amount_fraction) == (whole.total_amount, whole.total_amount_fraction)
