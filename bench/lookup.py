"""Dispute-lookup latency (R27) on a big org log.

`ReconstructionLookup` times the whole reconstruction where SupportService.ReconstructCharges runs it (server-side,
in-process, up to the serialized response; no transport): the figure issue #5 sets a target for, without and with
inclusion proofs (`include_proofs`). `IndexedQueryLookup` times only the two raw index reads a lookup starts from
(an endpoint's entries in a window, a request's entries), as a floor to compare with.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import func, select, text

from ledger.log.entry import org_log_id
from storage.sql import SqlStore
from storage.sql.schema import entries

US = 1_000_000
WINDOW_US = 30 * 60 * US  # a ticket's "approximate time", +-30 min

_LOOKUP_COLUMNS = (
    entries.c.log_id,
    entries.c.seq,
    entries.c.kind,
    entries.c.recorded_at,
    entries.c.body,
    entries.c.prev_hash,
    entries.c.entry_hash,
    entries.c.occurred_at,
)


class DisputeLookup(Protocol):
    """The reads behind a dispute ticket; each returns how many ledger entries it found."""

    def endpoint_window(self, org_id: str, endpoint_id: str, start: int, end: int) -> int: ...

    def request(self, org_id: str, request_id: str) -> int: ...


class IndexedQueryLookup:
    """The indexed queries a lookup will run, straight on the store's read engine."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    def endpoint_window(self, org_id: str, endpoint_id: str, start: int, end: int) -> int:
        query = (
            select(*_LOOKUP_COLUMNS)
            .where(
                entries.c.org_id == org_id,
                entries.c.endpoint_id == endpoint_id,
                entries.c.occurred_at >= start,
                entries.c.occurred_at <= end,
            )
            .order_by(entries.c.occurred_at)
        )
        with self.store.reader.connect() as conn:
            return len(conn.execute(query).all())

    def request(self, org_id: str, request_id: str) -> int:
        query = select(*_LOOKUP_COLUMNS).where(entries.c.request_id == request_id, entries.c.org_id == org_id)
        with self.store.reader.connect() as conn:
            return len(conn.execute(query).all())


@dataclass(frozen=True)
class Cases:
    """Tickets to look up, drawn from what the log holds (outside the timed part)."""

    org_id: str
    windows: list[tuple[str, int, int]]  # (endpoint_id, start, end)
    request_ids: list[str]


def draw_cases(store: SqlStore, org_id: str, count: int, seed: int = 9) -> Cases:
    rng = random.Random(seed)
    log_id = org_log_id(org_id)
    with store.reader.connect() as conn:
        endpoints = sorted(
            conn.execute(
                select(entries.c.endpoint_id)
                .where(entries.c.org_id == org_id, entries.c.endpoint_id.is_not(None))  # events only
                .distinct()
            ).scalars()
        )
        first, last, size = conn.execute(
            select(func.min(entries.c.occurred_at), func.max(entries.c.occurred_at), func.count()).where(
                entries.c.log_id == log_id
            )
        ).one()
        picks = sorted(rng.sample(range(size), min(size, count * 4)))
        request_ids: list[str] = []
        for start in range(0, len(picks), 500):
            chunk = picks[start : start + 500]
            request_ids += [
                r
                for r in conn.execute(
                    select(entries.c.request_id).where(entries.c.log_id == log_id, entries.c.seq.in_(chunk))
                ).scalars()
                if r is not None
            ]
    rng.shuffle(request_ids)
    windows = []
    for _ in range(count):
        center = rng.randrange(first, last + 1)
        windows.append((rng.choice(endpoints), center - WINDOW_US, center + WINDOW_US))
    return Cases(org_id, windows, request_ids[:count])


def _stats(samples: list[float], rows: list[int]) -> dict[str, Any]:
    ordered = sorted(samples)
    return {
        "count": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p90_ms": round(ordered[int(len(ordered) * 0.9)] * 1000, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
        "rows_mean": round(statistics.fmean(rows), 1),
        "rows_max": max(rows),
    }


def measure(lookup: DisputeLookup, cases: Cases, *, warmup: int = 20) -> dict[str, Any]:
    """Latency of each kind of lookup, one at a time, after a few unmeasured warm-up calls."""
    for endpoint_id, start, end in cases.windows[:warmup]:
        lookup.endpoint_window(cases.org_id, endpoint_id, start, end)
    times: list[float] = []
    rows: list[int] = []
    for endpoint_id, start, end in cases.windows:
        t0 = time.perf_counter()
        rows.append(lookup.endpoint_window(cases.org_id, endpoint_id, start, end))
        times.append(time.perf_counter() - t0)
    result = {"endpoint_window": _stats(times, rows)}
    times, rows = [], []
    for request_id in cases.request_ids:
        t0 = time.perf_counter()
        rows.append(lookup.request(cases.org_id, request_id))
        times.append(time.perf_counter() - t0)
    if times:
        result["request"] = _stats(times, rows)
    return result


def query_plans(store: SqlStore, cases: Cases) -> dict[str, str]:
    """The database's plan for both queries, to show they use the indexes rather than scanning the log."""
    endpoint_id, start, end = cases.windows[0]
    request_id = cases.request_ids[0] if cases.request_ids else "none"
    explain = "EXPLAIN QUERY PLAN " if store.dialect == "sqlite" else "EXPLAIN "
    queries: dict[str, tuple[str, dict[str, Any]]] = {
        "endpoint_window": (
            "SELECT seq, body FROM entries WHERE org_id = :o AND endpoint_id = :e "
            "AND occurred_at >= :s AND occurred_at <= :t ORDER BY occurred_at",
            {"o": cases.org_id, "e": endpoint_id, "s": start, "t": end},
        ),
        "request": (
            "SELECT seq, body FROM entries WHERE request_id = :r AND org_id = :o",
            {"r": request_id, "o": cases.org_id},
        ),
    }
    plans = {}
    with store.reader.connect() as conn:
        for name, (sql, params) in queries.items():
            rows = conn.execute(text(explain + sql), params).all()
            plans[name] = " | ".join(str(row[-1]) for row in rows)
    return plans


class ReconstructionLookup:
    """The whole R27 reconstruction as SupportService.ReconstructCharges runs it server-side
    (ledger.dispute.reconstruct_charges, then the response message serialized): rollups caught up, lifecycle and
    nearby request reads, rating, the R25 split from the serving union, invoices, evidence and inclusion proofs.
    Each method returns how many ledger entries the answer cites."""

    def __init__(self, store: SqlStore, *, with_proofs: bool = False) -> None:
        from ledger.intake import Ledger
        from storage.sql.rollups import UsageRollups

        self.store = store
        self.ledger = Ledger(store)
        self.rollups = UsageRollups(store)  # as the server passes them (server/support_service.py)
        self.with_proofs = with_proofs

    def catch_up(self, org_id: str) -> float:
        """Bring the org's rollups up to its log (as the server's first query would); returns the seconds taken."""
        from storage.sql.rollups import rollup_follower

        t0 = time.perf_counter()
        plans = self.ledger.account_history(org_id).plans()
        rollup_follower(self.store).catch_up(org_id, self.ledger.price_history(), plans)
        return time.perf_counter() - t0

    def _run(self, **query: Any) -> int:
        from ledger.dispute import DisputeQuery, reconstruct_charges
        from wire.support import reconstruction_to_proto

        result = reconstruct_charges(
            self.ledger, DisputeQuery(**query), with_proofs=self.with_proofs, rollups=self.rollups
        )
        # The handler's whole work: the answer as a message, and the bytes gRPC sends (serialized on the
        # handler's thread). Only the transport is left out.
        reconstruction_to_proto(result).SerializeToString()
        return len(result.entries)

    def endpoint_window(self, org_id: str, endpoint_id: str, start: int, end: int) -> int:
        return self._run(org_id=org_id, endpoint_id=endpoint_id, start=start, end=end)

    def request(self, org_id: str, request_id: str) -> int:
        return self._run(org_id=org_id, request_id=request_id)
