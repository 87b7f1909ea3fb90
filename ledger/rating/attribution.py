"""R25 attribution: a serving session's billed quantity split into cold start, serving, idle and rounding."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction
from itertools import pairwise

from ledger.rating.money import EXACT, exact_sum, format_money, format_seconds
from ledger.rating.units import UnitRun, money_between
from ledger.timeutil import format_micros


@dataclass(frozen=True, slots=True)
class RequestSpan:
    """One request as the session's REQUEST_STARTED / REQUEST_FINISHED entries give it (finish None: none seen)."""

    request_id: str
    started_at: int
    started_seq: int
    finished_at: int | None = None
    finished_seq: int | None = None


@dataclass(frozen=True, slots=True)
class RequestAttribution:
    """R25: a request's share of serving time and money: each serving instant is split equally among the
    requests in flight then. Exact Fractions, since a share of a third does not terminate in decimal."""

    request_id: str
    started_at: int
    started_seq: int
    finished_at: int | None
    finished_seq: int | None
    in_flight_from: int
    in_flight_to: int
    attributed_micros: Fraction
    attributed_amount: Fraction

    @property
    def explanation(self) -> str:
        return self.explain(format_seconds(self.attributed_micros), format_money(self.attributed_amount))

    def explain(self, seconds: str, money: str) -> str:
        """The explanation with the share already written (`seconds` as format_seconds, `money` as format_money
        write them): a dispute answer writes each share once for this and for its exact fields."""
        if self.finished_seq is None:
            finish = "no REQUEST_FINISHED before the session ended, so in flight until its end"
        else:
            finish = f"REQUEST_FINISHED entry #{self.finished_seq}"
        return (
            f"R25: request {self.request_id} (REQUEST_STARTED entry #{self.started_seq}, {finish}) in flight "
            f"{format_micros(self.in_flight_from)} to {format_micros(self.in_flight_to)}: attributed "
            f"{seconds} s of serving time = {money}"
        )


@dataclass(frozen=True, slots=True)
class Attribution:
    """R25: the four parts add up exactly to billed units x unit seconds, and to the session amount."""

    cold_start_micros: int
    serving_micros: int
    idle_micros: int
    rounding_micros: int
    cold_start_amount: Decimal
    serving_amount: Decimal
    idle_amount: Decimal
    rounding_amount: Decimal
    # Each request's share. A dispute lookup keeps only the requests near its window here (the split above is
    # still over all of them); request_count always counts every request of the session.
    requests: tuple[RequestAttribution, ...]
    request_count: int

    @property
    def total_micros(self) -> int:
        return self.cold_start_micros + self.serving_micros + self.idle_micros + self.rounding_micros

    @property
    def total_amount(self) -> Decimal:
        return exact_sum([self.cold_start_amount, self.serving_amount, self.idle_amount, self.rounding_amount])

    @property
    def explanation(self) -> str:
        parts = ", ".join(
            f"{name} {format_seconds(micros)} s ({format_money(amount)})"
            for name, micros, amount in (
                ("cold start", self.cold_start_micros, self.cold_start_amount),
                ("serving", self.serving_micros, self.serving_amount),
                ("idle", self.idle_micros, self.idle_amount),
                ("rounding", self.rounding_micros, self.rounding_amount),
            )
        )
        return (
            f"R25: {format_seconds(self.total_micros)} s billed = {parts}; "
            f"serving shared by {self.request_count} request(s)"
        )


def attribute_serving(
    up: int,
    ready: int | None,
    end: int,
    billed_micros: int,
    amount: Decimal,
    runs: Sequence[UnitRun],
    requests: Sequence[RequestSpan],
    keep: Callable[[RequestSpan, int, int], bool] | None = None,
) -> Attribution:
    """Split [up, end) plus the rounding past `end` (R25).

    `keep(request, in_flight_from, in_flight_to)`, when given, picks the requests whose shares are wanted (a
    dispute lookup lists those in its window); the split still counts every request.

    `end` is the stop, or for an open session the end of its last started unit, so an open session has no
    rounding (R10: its units are billed as they start). Requests without a finish are in flight until `end`.
    Money of any interval is its overlap with each unit times that unit's rate, so R12 price changes hold.
    """
    cold_end = cold_start_end(up, ready, end)
    spans = []
    for request in requests:
        start = min(max(request.started_at, up), end)
        finish = end if request.finished_at is None else request.finished_at
        spans.append((request, start, min(max(finish, start), end)))

    # Sweep [cold_end, end): only time after READY is serving or idle (before it is cold start, R2). The running
    # per-request share (the integral of 1 / requests in flight) makes a request's attribution the difference of
    # two readings, linear in the number of boundaries however many requests overlap.
    opening: dict[int, list[int]] = defaultdict(list)
    closing: dict[int, list[int]] = defaultdict(list)
    for index, (_, start, finish) in enumerate(spans):
        serving_from = max(start, cold_end)
        if serving_from < finish:
            opening[serving_from].append(index)
            closing[finish].append(index)
    # Exact integers, not Fractions: shares are kept in 1/common µs, where common is the least common multiple of
    # the in-flight counts that occur, and money in 10**-money_digits dollars (every rate times whole µs is an
    # integer there). The Fractions of each share are made once, at the end.
    points = sorted(set(opening) | set(closing))
    counts = []
    in_flight = 0
    for a in points:
        in_flight += len(opening.get(a, ())) - len(closing.get(a, ()))
        counts.append(in_flight)
    common = math.lcm(*{k for k in counts if k}) if any(counts) else 1
    money_digits, rates = _integer_rates(runs)
    shares_micros = [0] * len(spans)
    shares_amount = [0] * len(spans)
    share_micros = share_amount = 0
    serving_micros = serving_money = 0
    for (a, b), in_flight in zip(pairwise([*points, end]), counts, strict=True):
        for index in closing.get(a, ()):
            shares_micros[index] += share_micros
            shares_amount[index] += share_amount
        for index in opening.get(a, ()):
            shares_micros[index] -= share_micros
            shares_amount[index] -= share_amount
        if in_flight and b > a:
            money = _money_between(runs, rates, a, b)
            serving_micros += b - a
            serving_money += money
            weight = common // in_flight
            share_micros += (b - a) * weight
            share_amount += money * weight
    money_unit = 10**money_digits
    with localcontext(EXACT):
        serving_amount = Decimal(serving_money).scaleb(-money_digits)
    attributed = tuple(
        sorted(
            (
                RequestAttribution(
                    request.request_id,
                    request.started_at,
                    request.started_seq,
                    request.finished_at,
                    request.finished_seq,
                    start,
                    finish,
                    Fraction(shares_micros[index], common),
                    Fraction(shares_amount[index], common * money_unit),
                )
                for index, (request, start, finish) in enumerate(spans)
                if keep is None or keep(request, start, finish)
            ),
            key=lambda r: (r.started_at, r.started_seq),
        )
    )
    return split_session(
        up, ready, end, billed_micros, amount, runs, serving_micros, serving_amount, attributed, len(spans)
    )


def _integer_rates(runs: Sequence[UnitRun]) -> tuple[int, list[int]]:
    """Each run's rate as an integer count of 10**-digits dollars per µs, with the digits that makes exact."""
    rate_digits = max((max(0, -int(run.rate_per_second.as_tuple().exponent)) for run in runs), default=0)
    with localcontext(EXACT):
        rates = [int(run.rate_per_second.scaleb(rate_digits)) for run in runs]
    return rate_digits + 6, rates  # per second -> per µs: six more digits


def _money_between(runs: Sequence[UnitRun], rates: Sequence[int], start: int, end: int) -> int:
    """units.money_between in integers: [start, end)'s overlap with each run times its rate."""
    total = 0
    for run, rate in zip(runs, rates, strict=True):
        overlap = min(end, run.end) - max(start, run.first_unit_start)
        if overlap > 0:
            total += overlap * rate
    return total


def cold_start_end(up: int, ready: int | None, end: int) -> int:
    """Where a session's cold start (R2) ends: at READY, clamped into [up, end]; a session never ready is all cold."""
    return end if ready is None else min(max(ready, up), end)


def split_session(
    up: int,
    ready: int | None,
    end: int,
    billed_micros: int,
    amount: Decimal,
    runs: Sequence[UnitRun],
    serving_micros: int,
    serving_amount: Decimal,
    requests: tuple[RequestAttribution, ...],
    request_count: int,
) -> Attribution:
    """The R25 split of [up, end) plus rounding, given the serving time after READY and its money.

    attribute_serving sweeps every request to find those two; the dispute lookup reads them from the rollups'
    serving union instead (storage/sql/rollup_serving.py). Everything else is derived here, the one formula for both.
    """
    cold_end = cold_start_end(up, ready, end)
    cold_start_amount = money_between(runs, up, cold_end)
    with localcontext(EXACT):
        idle_amount = money_between(runs, cold_end, end) - serving_amount
        # R25: rounding money is what the session bills beyond the other three, so money adds up exactly.
        rounding_amount = amount - cold_start_amount - serving_amount - idle_amount
    return Attribution(
        cold_start_micros=cold_end - up,
        serving_micros=serving_micros,
        idle_micros=end - cold_end - serving_micros,
        rounding_micros=billed_micros - (end - up),
        cold_start_amount=cold_start_amount,
        serving_amount=serving_amount,
        idle_amount=idle_amount,
        rounding_amount=rounding_amount,
        requests=requests,
        request_count=request_count,
    )
