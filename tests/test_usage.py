"""Usage queries from rollups (R10-R14): hand-computed tables, plan and price changes, and rollups == re-rating."""

from __future__ import annotations

import json
import random
import uuid
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.intake import Ledger
from ledger.rating import BucketSize, usage_in_window
from ledger.timeutil import format_micros, parse_rfc3339_micros
from ledger.usage import UsageView
from storage.sql import SqlStore
from storage.sql.rollups import usage_view
from tests.conftest import FixedClock
from tests.test_cli import ledgerctl

SMALL = Path(__file__).parent / "data" / "usage_small.jsonl"
NINE, ELEVEN = parse_rfc3339_micros("2026-10-05T09:00:00Z"), parse_rfc3339_micros("2026-10-05T11:00:00Z")
GROUPS = ("endpoint_id", "instance_type", "worker_type")


def load_small(ledger: Ledger) -> None:
    ledger.append_events([json.loads(line) for line in SMALL.read_text().splitlines()])


def view(ledger: Ledger) -> UsageView:
    assert isinstance(ledger.store, SqlStore)
    return usage_view(ledger, ledger.store)


def table(report: Any) -> list[tuple[Any, ...]]:
    return [
        (r.endpoint_id, r.instance_type, r.worker_type, r.unit, r.quantity, r.amount, r.storage_kind)
        for r in report.rows
    ]


# Hand-computed (billing-rules.md; rates from the R11 table):
#   w1  A100 FLEX   09:00:00 -> 09:10:30  630 s    R10: 11 minutes x 60 x 0.00076 = 11 x 0.0456 = 0.5016
#   w2  L4 ACTIVE   09:05:00 -> 09:05:59.5 59.5 s  R10: 1 minute x 60 x 0.00013 = 0.0078
#   b1  A4000 BUILD 10:00:00 -> 10:02:00.000001    R6/R10: 3 minutes x 60 x 0.00016 = 0.0288
#   d1  development: R8, nothing;  w3 boot failure without UP: R5, nothing
#   disk 50 GB x 0.10 x 300 / 2,592,000 = 1500/2592000 = 5/8640                        (R13)
#   volume 2000 GB: (1000 x 0.07 + 1000 x 0.05) x 300 / 2,592,000 = 36000/2592000 = 1/72 (R14)
EXPECTED = [
    ("ep-a", "A100", "FLEX", "minute", 11, Decimal("0.5016"), None),
    ("ep-a", "L4", "ACTIVE", "minute", 1, Decimal("0.0078"), None),
    ("ep-b", "A4000", "FLEX", "minute", 3, Decimal("0.0288"), None),
]


def test_r10_r11_r13_r14_usage_by_endpoint_instance_and_worker_type(ledger: Ledger, clock: FixedClock) -> None:
    load_small(ledger)
    report = view(ledger).query("beta", NINE, ELEVEN, as_of=clock(), group_by=GROUPS)
    compute = [row for row in table(report) if row[3] == "minute"]
    assert compute == EXPECTED
    storage = {row[6]: (row[0], row[4], Fraction(row[5])) for row in table(report) if row[3] == "interval"}
    assert storage["CONTAINER_DISK"][:2] == ("ep-a", 1)
    assert abs(storage["CONTAINER_DISK"][2] - Fraction(5, 8640)) < Fraction(1, 10**40)
    assert storage["NETWORK_VOLUME"][:2] == ("ep-b", 1)
    assert abs(storage["NETWORK_VOLUME"][2] - Fraction(1, 72)) < Fraction(1, 10**40)
    assert report.as_of_size == 12


def test_r10_units_belong_to_the_window_and_bucket_of_their_start(ledger: Ledger, clock: FixedClock) -> None:
    load_small(ledger)
    usage = view(ledger)
    first_five = usage.query(
        "beta", NINE, NINE + 5 * 60_000_000, as_of=clock(), endpoint_id="ep-a", group_by=["instance_type"]
    )
    # w1's units 0-4 start 09:00-09:04 (5 x 0.0456); w2's first unit starts 09:05, outside.
    assert [(r.instance_type, r.quantity, r.amount) for r in first_five.rows] == [("A100", 5, Decimal("0.228"))]
    hourly = usage.query("beta", NINE, ELEVEN, as_of=clock(), bucket=BucketSize.HOUR)
    compute = [
        (format_micros(r.bucket_start or 0)[11:16], r.quantity, r.amount) for r in hourly.rows if r.unit == "minute"
    ]
    assert compute == [("09:00", 12, Decimal("0.5094")), ("10:00", 3, Decimal("0.0288"))]


def test_r10_a_plan_change_re_rates_sessions_from_its_effective_time(ledger: Ledger, clock: FixedClock) -> None:
    load_small(ledger)
    usage = view(ledger)
    usage.query("beta", NINE, ELEVEN, as_of=clock())  # rollups are current before the change
    ledger.set_account("beta", {"granularity": "PER_SECOND", "effective_from": "2026-10-05T00:00:00Z"})
    report = usage.query("beta", NINE, ELEVEN, as_of=clock(), group_by=GROUPS)
    # PER_SECOND: w1 630 s x 0.00076 = 0.4788; w2 ceil(59.5) = 60 s x 0.00013 = 0.0078; b1 121 s x 0.00016 = 0.01936
    assert [row for row in table(report) if row[3] == "second"] == [
        ("ep-a", "A100", "FLEX", "second", 630, Decimal("0.4788"), None),
        ("ep-a", "L4", "ACTIVE", "second", 60, Decimal("0.0078"), None),
        ("ep-b", "A4000", "FLEX", "second", 121, Decimal("0.01936"), None),
    ]


def test_r12_a_price_change_applies_to_units_starting_after_it(ledger: Ledger, clock: FixedClock) -> None:
    load_small(ledger)
    usage = view(ledger)
    usage.query("beta", NINE, ELEVEN, as_of=clock())
    ledger.set_price_book(
        {
            "effective_from": "2026-10-05T09:05:00Z",
            "rates": {"A100": {"flex_per_second": "0.001", "active_per_second": "0.0008"}},
        }
    )
    report = usage.query("beta", NINE, ELEVEN, as_of=clock(), group_by=["instance_type"])
    # w1: units 0-4 at 60 x 0.00076 = 0.0456 (0.228), units 5-10 at 60 x 0.001 = 0.06 (0.36): 0.588.
    # The L4 rate is unchanged: the new version keeps the rates it does not name (R11).
    assert [(r.instance_type, r.quantity, r.amount) for r in report.rows if r.unit == "minute"] == [
        ("A100", 11, Decimal("0.588")),
        ("A4000", 3, Decimal("0.0288")),
        ("L4", 1, Decimal("0.0078")),
    ]


def heartbeat(org_id: str, at: str) -> dict[str, Any]:
    return {"event_id": f"hb-{at}", "org_id": org_id, "type": "HEARTBEAT", "occurred_at": at}


def test_r10_r28_an_open_session_accrues_to_its_evidence_not_the_clock(
    ledger: Ledger, clock: FixedClock, make_event: Any
) -> None:
    clock.now = parse_rfc3339_micros("2026-10-05T09:02:30Z")
    ledger.append_events([make_event(org_id="open", occurred_at="2026-10-05T09:00:00Z")])
    usage = view(ledger)
    assert usage.query("open", NINE, ELEVEN).rows == ()  # only the UP: 0 s proven, nothing billed (R28)
    ledger.append_events([heartbeat("open", "2026-10-05T09:02:30Z")])
    assert usage.query("open", NINE, ELEVEN).rows[0].quantity == 3  # units starting 09:00, 09:01, 09:02
    clock.advance(60_000_000)
    assert usage.query("open", NINE, ELEVEN).rows[0].quantity == 3  # the clock alone proves nothing
    ledger.append_events([heartbeat("open", "2026-10-05T09:03:30Z")])
    assert usage.query("open", NINE, ELEVEN).rows[0].quantity == 4
    assert usage.query("open", NINE, ELEVEN, as_of=parse_rfc3339_micros("2026-10-05T09:01:00Z")).rows[0].quantity == 1


def test_rebuild_gives_the_same_answer(ledger: Ledger, clock: FixedClock) -> None:
    load_small(ledger)
    usage = view(ledger)
    before = table(usage.query("beta", NINE, ELEVEN, as_of=clock(), group_by=GROUPS))
    assert usage.rebuild("beta") == (12, 5)
    assert table(usage.query("beta", NINE, ELEVEN, as_of=clock(), group_by=GROUPS)) == before


def test_usage_cli_end_to_end_matches_the_hand_computed_table(server: Any) -> None:
    target = f"127.0.0.1:{server.port}"
    assert ledgerctl("events", "ingest", str(SMALL), target=target).returncode == 0
    result = ledgerctl(
        "usage", "--org", "beta", "--from", "2026-10-05T09:00:00Z", "--to", "2026-10-05T11:00:00Z",
        "--group-by", "endpoint,instance_type,worker_type", "--json", target=target,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    compute = [
        (
            r["endpoint_id"],
            r["workload_kind"],
            r["instance_type"],
            r["worker_type"],
            r["unit"],
            r["quantity"],
            r["amount"],
        )
        for r in rows
        if r["unit"] == "minute"
    ]
    assert compute == [
        ("ep-a", None, "A100", "FLEX", "minute", 11, "0.5016"),
        ("ep-a", None, "L4", "ACTIVE", "minute", 1, "0.0078"),
        ("ep-b", None, "A4000", "FLEX", "minute", 3, "0.0288"),
    ]
    assert {r["storage_kind"] for r in rows if r["unit"] == "interval"} == {"CONTAINER_DISK", "NETWORK_VOLUME"}


# -- rollups equal a full re-rating ---------------------------------------------------------------------------

_TYPES = ["A100", "L4", "H100 PRO"]


def _workload_events(index: int, draw: Any) -> list[dict[str, Any]]:
    base = parse_rfc3339_micros("2026-10-05T08:00:00Z")
    up = base + draw(st.integers(0, 4 * 3600)) * 1_000_000 + draw(st.integers(0, 999_999))
    length = draw(st.integers(0, 3 * 3600 * 1_000_000))
    common = {
        "org_id": "prop",
        "endpoint_id": f"ep-{index % 3}",
        "workload_id": f"w{index}",
        "workload_kind": draw(st.sampled_from(["SERVING", "BUILD", "TRAINING"])),
        "instance_type": draw(st.sampled_from(_TYPES)),
        "worker_type": draw(st.sampled_from(["FLEX", "ACTIVE"])),
        "development": draw(st.booleans()) and draw(st.booleans()),
    }
    events = [{**common, "event_id": f"w{index}-up", "type": "WORKLOAD_UP", "occurred_at": format_micros(up)}]
    if draw(st.booleans()):
        events.append(
            {
                **common,
                "event_id": f"w{index}-ready",
                "type": "WORKLOAD_READY",
                "occurred_at": format_micros(up + length // 3),
            }
        )
    if draw(st.integers(0, 4)):  # usually stopped; sometimes still open
        events.append(
            {
                **common,
                "event_id": f"w{index}-stop",
                "type": "WORKLOAD_STOPPED",
                "stop_reason": "SCALED_DOWN",
                "occurred_at": format_micros(up + length),
            }
        )
    for k in range(draw(st.integers(0, 3))):
        events.append(
            {
                **common, "event_id": f"w{index}-disk{k}", "type": "STORAGE_SAMPLE", "storage_kind": "CONTAINER_DISK",
                "gigabytes": str(draw(st.integers(1, 2000))), "interval_seconds": 300,
                "occurred_at": format_micros(up + (k + 1) * 300_000_000),
            }
        )  # fmt: skip
    return events


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_rollups_equal_a_full_re_rating_after_shuffled_duplicated_batches(data: Any, tmp_path: Path) -> None:
    events = [e for i in range(data.draw(st.integers(1, 6))) for e in _workload_events(i, data.draw)]
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    stream = events + rng.sample(events, k=len(events) // 3)  # duplicate deliveries (R24)
    rng.shuffle(stream)  # late and out of order
    clock = FixedClock(parse_rfc3339_micros("2026-10-05T20:00:00Z"))  # after every generated event
    store = SqlStore(f"sqlite:///{tmp_path / f'prop-{uuid.uuid4().hex}.db'}", clock=clock)  # fresh per example
    try:
        ledger = Ledger(store, clock=clock)
        usage = view(ledger)
        # A window that cuts through some sessions: R10 counts their units by start instant.
        start, end = parse_rfc3339_micros("2026-10-05T09:00:00Z"), parse_rfc3339_micros("2026-10-05T13:00:00Z")
        position = 0
        while position < len(stream):
            size = rng.randint(1, 7)
            batch = list({e["event_id"]: e for e in stream[position : position + size]}.values())
            ledger.append_events(batch)
            position += size
            if rng.random() < 0.5:
                usage.query("prop", start, end, as_of=clock())  # rollups catch up between batches
        report = usage.query("prop", start, end, as_of=clock())
        full = usage.org_rating("prop", clock())
        expected = usage_in_window(full.sessions, full.storage, start, end)
        compute = sum((r.amount for r in report.rows if r.unit != "interval"), Decimal(0))
        assert sum(r.quantity for r in report.rows if r.unit != "interval") == expected.units
        assert compute == expected.compute_amount
        storage = sum((Fraction(r.amount) for r in report.rows if r.unit == "interval"), Fraction(0))
        exact_storage = sum((c.exact_amount for c in full.storage if start <= c.start < end), Fraction(0))
        assert abs(storage - exact_storage) < Fraction(1, 10**40)
    finally:
        store.close()


@pytest.mark.parametrize("bad", [{"group_by": ["colour"]}, {"end": NINE}])
def test_bad_usage_queries_name_the_field(ledger: Ledger, clock: FixedClock, bad: dict[str, Any]) -> None:
    from ledger.errors import InvalidInput

    with pytest.raises(InvalidInput) as err:
        view(ledger).query("beta", NINE, bad.get("end", ELEVEN), as_of=clock(), group_by=bad.get("group_by", ()))
    assert err.value.violations
