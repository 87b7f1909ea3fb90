"""What the usage rollups keep of a workload's requests (R25, R26): storage builds these values, the core reads them.

A session's R25 split needs the union of its requests' in-flight time. The rollups (storage/sql/rollup_serving.py) keep,
per workload, a `RequestSummary` folded from its request events in whatever order they arrive (R22), each request's
start and finish as a `StartedSpan`, and the union itself, which a dispute lookup measures through the
`ServingMeasure` port (ledger/ports.py). The values, the fold and `serving_totals` are pure, so they live here, in
the core.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from ledger.events import UsageEvent
from ledger.ports import ServingMeasure
from ledger.rating.money import exact_sum, money_of
from ledger.rating.units import UnitRun

Interval = tuple[int, int]  # [start, end) in µs
RequestMark = tuple[int, int, str, bool]  # seq, occurred_at, request_id, whether it is the REQUEST_FINISHED
StartedSpan = tuple[str, int, int, int | None, int | None]  # request, started at, its seq, finished at, its seq


@dataclass
class RequestSummary:
    """What the rollups know of one workload's requests, whatever order their events arrived in."""

    count: int = 0  # requests with a REQUEST_STARTED
    serving_micros: int = 0  # the measure of the closed requests' union: the sum of the workload's hour rows
    longest: int = 0  # the longest closed request, µs
    first_at: int | None = None  # earliest request event
    last_at: int | None = None  # latest request event
    irregular: bool = False
    in_flight: dict[str, tuple[int, int]] = field(default_factory=dict)  # request -> (started_at, seq)
    unmatched_finishes: dict[str, tuple[int, int]] = field(default_factory=dict)  # request -> (finished_at, seq)

    @property
    def regular(self) -> bool:
        """Every request started once, finished at most once, never before it started: the rating engine then
        counts every request and raises no request anomaly, which is what the summary assumes."""
        return not self.irregular and not self.unmatched_finishes

    def within(self, start: int, end: int | None) -> bool:
        """Whether every request event lies inside the session [start, end] (else the engine makes anomalies)."""
        if self.first_at is None or self.last_at is None:
            return True
        return self.first_at >= start and (end is None or self.last_at <= end)

    def take(self, mark: RequestMark) -> Interval | None:
        """Apply one request event; returns the request's closed interval when this event closes it."""
        seq, at, request_id, finished = mark
        self.first_at = at if self.first_at is None else min(self.first_at, at)
        self.last_at = at if self.last_at is None else max(self.last_at, at)
        if not finished:
            if request_id in self.in_flight:
                self.irregular = True
                return None
            self.count += 1
            finish = self.unmatched_finishes.pop(request_id, None)
            if finish is None:
                self.in_flight[request_id] = (at, seq)
                return None
            return self._close(at, finish[0])
        started = self.in_flight.pop(request_id, None)
        if started is None:
            if request_id in self.unmatched_finishes:
                self.irregular = True
            else:
                self.unmatched_finishes[request_id] = (at, seq)
            return None
        return self._close(started[0], at)

    def _close(self, started_at: int, finished_at: int) -> Interval | None:
        if finished_at < started_at:
            self.irregular = True  # the engine sees the finish first: an anomaly, and the start stays in flight
            return None
        self.longest = max(self.longest, finished_at - started_at)
        return (started_at, finished_at)

    def encode(self) -> bytes:
        return json.dumps(
            {
                "count": self.count,
                "serving_micros": self.serving_micros,
                "longest": self.longest,
                "first_at": self.first_at,
                "last_at": self.last_at,
                "irregular": self.irregular,
                "in_flight": self.in_flight,
                "unmatched_finishes": self.unmatched_finishes,
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode()

    @classmethod
    def decode(cls, blob: bytes) -> RequestSummary:
        data = json.loads(blob)
        return cls(
            count=data["count"],
            serving_micros=data["serving_micros"],
            longest=data["longest"],
            first_at=data["first_at"],
            last_at=data["last_at"],
            irregular=data["irregular"],
            in_flight={k: (v[0], v[1]) for k, v in data["in_flight"].items()},
            unmatched_finishes={k: (v[0], v[1]) for k, v in data["unmatched_finishes"].items()},
        )


@dataclass(frozen=True, slots=True)
class WindowLifecycles:
    """The workloads of a dispute lookup's window and what the rollups keep of them: the lifecycle events (with
    their sequence numbers) of those that have any, those events' entry hashes by sequence number, and the request
    summaries of those with requests."""

    workload_ids: list[str]
    lifecycles: dict[str, list[tuple[UsageEvent, int]]]
    hashes: dict[int, bytes]
    summaries: dict[str, RequestSummary]


def serving_totals(
    union: ServingMeasure, runs: Sequence[UnitRun], cold_end: int, end: int, in_flight_from: int | None
) -> tuple[int, Decimal]:
    """R25 serving time of [cold_end, end) and its money: the closed requests' union, and everything from the
    first request still in flight (it is in flight until the session's end), each part at its unit's rate (R12)."""
    open_from = end if in_flight_from is None else min(max(in_flight_from, cold_end), end)

    def serving(a: int, b: int) -> int:
        a, b = max(a, cold_end), min(b, end)
        if b <= a:
            return 0
        closed = union.measure(a, min(b, open_from)) if a < open_from else 0
        return closed + max(0, b - max(a, open_from))

    micros = serving(cold_end, end)
    amount = exact_sum([money_of(serving(run.first_unit_start, run.end), run.rate_per_second) for run in runs])
    return micros, amount
