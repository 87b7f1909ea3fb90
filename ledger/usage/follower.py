"""The usage rollups' follower: the one writer of the rollups, tailing each org log from their cursor.

Like a Tessera follower it has a name and a cursor (kept with the rollups, RollupCursor) and derives a view from
the log it tails. It runs when someone needs the view current: a reader calls `catch_up` before it reads, and the
step then runs on the reader's thread but as the follower, under its lock and from its cursor
(docs/adr/0003-rollups-as-a-follower.md).
"""

from __future__ import annotations

import threading

from ledger.plans import PlanHistory
from ledger.ports import RollupCursor
from ledger.pricebook import PriceHistory
from ledger.tracing import span


class RollupFollower:
    """Advances the usage rollups' cursor over org logs; thread-safe, one per store is enough.

    Two locks keep one writer: in this process a lock per org, so concurrent readers of a stale org wait for one
    catch-up instead of queueing theirs behind it; across processes the cursor's own lock (RollupCursor.apply_next),
    so two servers on one database apply each entry once.
    """

    name = "usage-rollups"

    def __init__(self, cursor: RollupCursor) -> None:
        self.cursor = cursor
        self._guard = threading.Lock()
        self._org_locks: dict[str, threading.Lock] = {}

    def catch_up(self, org_id: str, prices: PriceHistory, plans: PlanHistory) -> int:
        """Apply every entry appended to the org's log since the cursor; returns the log size now reflected.

        Read-your-writes: whatever was appended before the call is reflected when it returns."""
        current = self.cursor.reflected_size(org_id)
        if current is not None:
            return current  # nothing to apply: no write transaction, so reads never queue behind appends
        with self._lock(org_id):
            # A reader that waited here finds what the one before it applied, and writes nothing itself.
            current = self.cursor.reflected_size(org_id)
            return current if current is not None else self._advance(org_id, prices, plans)

    def rebuild(self, org_id: str, prices: PriceHistory, plans: PlanHistory) -> tuple[int, int]:
        """Drop the org's rollups and re-derive them from its log; returns (entries read, workloads)."""
        with self._lock(org_id):
            self.cursor.drop(org_id)
            size = self._advance(org_id, prices, plans)
        return size, self.cursor.workload_count(org_id)

    def lag(self) -> dict[str, int]:
        """Per org: the entries of its log the rollups have not applied yet (usageledger.rollup.lag). The follower
        runs when a reader or the period closer needs an org, so a lag that keeps growing means neither reaches it."""
        return self.cursor.lag()

    def _advance(self, org_id: str, prices: PriceHistory, plans: PlanHistory) -> int:
        """Apply chunks until the cursor is at the log's head (each its own transaction: bounded lock time)."""
        with span("ledger.rollups.catch_up", org_id=org_id):
            while True:
                applied, done = self.cursor.apply_next(org_id, prices, plans)
                if done:
                    return applied

    def _lock(self, org_id: str) -> threading.Lock:
        with self._guard:
            return self._org_locks.setdefault(org_id, threading.Lock())
