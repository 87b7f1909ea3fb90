"""The usage rollups' follower (ledger/usage/follower.py, docs/adr/0003-rollups-as-a-follower.md): the rollups' one
writer, run by the readers that need them current; reads stay read-your-writes (R10, R11 on the small day)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from ledger.intake import Ledger
from ledger.plans import PlanHistory
from ledger.pricebook import PriceHistory
from ledger.usage import RollupFollower, UsageReport, UsageView
from storage.sql import SqlStore
from storage.sql.rollups import UsageRollups
from tests.conftest import FixedClock
from tests.test_usage import ELEVEN, NINE, load_small

UP = {
    "org_id": "beta",
    "endpoint_id": "ep-c",
    "workload_id": "w9",
    "workload_kind": "SERVING",
    "instance_type": "L4",
    "worker_type": "ACTIVE",
}


class CountedRollups(UsageRollups):
    """The SQL rollups, counting the steps their follower applies (each one write transaction)."""

    def __init__(self, store: SqlStore) -> None:
        super().__init__(store)
        self.steps = 0
        self._counting = threading.Lock()

    def apply_next(self, org_id: str, prices: PriceHistory, plans: PlanHistory) -> tuple[int, bool]:
        with self._counting:
            self.steps += 1
        return super().apply_next(org_id, prices, plans)


def counted(ledger: Ledger) -> CountedRollups:
    assert isinstance(ledger.store, SqlStore)
    return CountedRollups(ledger.store)


def minutes(report: UsageReport) -> dict[str | None, tuple[int, Decimal]]:
    return {r.endpoint_id: (r.quantity, r.amount) for r in report.rows if r.unit == "minute"}


def test_r10_r11_a_query_right_after_an_append_sees_it_and_a_current_reader_writes_nothing(
    ledger: Ledger, clock: FixedClock
) -> None:
    rollups = counted(ledger)
    usage = UsageView(ledger, rollups)
    load_small(ledger)
    first = usage.query("beta", NINE, ELEVEN, as_of=clock(), group_by=["endpoint_id"])
    assert (first.as_of_size, rollups.steps) == (12, 1)
    again = usage.query("beta", NINE, ELEVEN, as_of=clock(), group_by=["endpoint_id"])
    assert again == first and rollups.steps == 1  # current: the follower ran no step
    ledger.append_events(
        [
            {**UP, "event_id": "f-1", "type": "WORKLOAD_UP", "occurred_at": "2026-10-05T10:30:00Z"},
            {
                **UP,
                "event_id": "f-2",
                "type": "WORKLOAD_STOPPED",
                "stop_reason": "SCALED_DOWN",
                "occurred_at": "2026-10-05T10:32:00Z",
            },
        ]
    )
    after = usage.query("beta", NINE, ELEVEN, as_of=clock(), group_by=["endpoint_id"])
    assert (after.as_of_size, rollups.steps) == (14, 2)
    # R10, R11: 2 minutes of L4 ACTIVE at 60 x 0.00013 = 0.0078 each.
    assert minutes(after) == {**minutes(first), "ep-c": (2, Decimal("0.0156"))}


def test_concurrent_readers_of_a_stale_org_wait_for_one_catch_up(ledger: Ledger, clock: FixedClock) -> None:
    """Eight readers of one org at once, through two views sharing the store's follower: one step applies the
    twelve entries, the others wait for it and write nothing, and all see the same usage."""
    rollups = counted(ledger)
    follower = RollupFollower(rollups)
    views = [UsageView(ledger, rollups, follower=follower) for _ in range(2)]
    load_small(ledger)
    start = threading.Barrier(8)

    def read(number: int) -> UsageReport:
        start.wait()
        return views[number % 2].query("beta", NINE, ELEVEN, as_of=clock(), group_by=["endpoint_id"])

    with ThreadPoolExecutor(8) as pool:
        reports = list(pool.map(read, range(8)))
    assert {r.as_of_size for r in reports} == {12}
    assert all(r == reports[0] for r in reports)
    assert rollups.steps == 1


def test_rebuild_re_derives_through_the_follower_to_the_same_usage(ledger: Ledger, clock: FixedClock) -> None:
    rollups = counted(ledger)
    usage = UsageView(ledger, rollups)
    load_small(ledger)
    before = usage.query("beta", NINE, ELEVEN, as_of=clock(), group_by=["endpoint_id"])
    entries, workloads = usage.rebuild("beta")
    assert (entries, rollups.steps) == (12, 2)
    assert workloads == 5  # w1, w2, w3, b1, d1
    assert usage.query("beta", NINE, ELEVEN, as_of=clock(), group_by=["endpoint_id"]) == before
    assert rollups.steps == 2
