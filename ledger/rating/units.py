"""Billed units (R10, R11, R12): how many a session bills, kept as compact runs of equally priced units."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from itertools import pairwise

from ledger.errors import NotFound
from ledger.events import WorkerType
from ledger.pricebook import PriceHistory
from ledger.rating.money import EXACT, ZERO, exact_sum, format_money, money_of
from ledger.timeutil import MICROS_PER_SECOND, format_micros


def ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def billed_unit_count(duration_micros: int, unit_seconds: int) -> int:
    """R10: ceil(d / unit) units for d > 0, nothing for d <= 0. Per session, never per window."""
    if duration_micros <= 0:
        return 0
    return ceil_div(duration_micros, unit_seconds * MICROS_PER_SECOND)


@dataclass(frozen=True, slots=True)
class UnitRun:
    """Consecutive billed units of one session priced alike: unit k starts at first_unit_start + k x unit.

    A run breaks where the price version in force at a unit's start changes (R12), so a month of per-second
    units is a handful of runs, not millions of objects.
    """

    first_unit_index: int
    count: int
    unit_seconds: int
    first_unit_start: int
    price_version: int
    rate_per_second: Decimal
    worker_type: WorkerType
    amount: Decimal

    @property
    def unit_micros(self) -> int:
        return self.unit_seconds * MICROS_PER_SECOND

    @property
    def end(self) -> int:
        """The instant the last unit of the run ends (units are billed whole, R10)."""
        return self.first_unit_start + self.count * self.unit_micros

    @property
    def unit_price(self) -> Decimal:
        """R11: a per-minute unit costs 60 x the per-second rate."""
        return EXACT.multiply(self.rate_per_second, self.unit_seconds)

    def unit_start(self, index: int) -> int:
        """Start instant of the session's unit `index` (which must be in this run)."""
        return self.first_unit_start + (index - self.first_unit_index) * self.unit_micros

    def clip(self, start: int, end: int) -> UnitRun | None:
        """The units of this run whose start lies in [start, end) (R10: a unit belongs whole to that window)."""
        unit = self.unit_micros
        first = max(0, ceil_div(start - self.first_unit_start, unit))
        stop = min(self.count, ceil_div(end - self.first_unit_start, unit))
        if stop <= first:
            return None
        if first == 0 and stop == self.count:
            return self
        return priced_run(
            self.first_unit_index + first,
            stop - first,
            self.unit_seconds,
            self.first_unit_start + first * unit,
            self.price_version,
            self.rate_per_second,
            self.worker_type,
        )

    def money_between(self, start: int, end: int) -> Decimal:
        """Exact cost of the part of [start, end) this run's units cover, at its rate (R25 uses this)."""
        overlap = min(end, self.end) - max(start, self.first_unit_start)
        return money_of(overlap, self.rate_per_second) if overlap > 0 else ZERO

    @property
    def explanation(self) -> str:
        last = self.first_unit_index + self.count - 1
        units = f"unit {last}" if self.count == 1 else f"units {self.first_unit_index}-{last}"
        return (
            f"R10/R12: {units} ({self.count} x {self.unit_seconds} s, first starting "
            f"{format_micros(self.first_unit_start)}) under price book v{self.price_version}; "
            f"R11: {self.worker_type.value} rate {format_money(self.rate_per_second)}/s, "
            f"{format_money(self.unit_price)} per unit, {format_money(self.amount)} in all"
        )


def priced_run(
    first_unit_index: int,
    count: int,
    unit_seconds: int,
    first_unit_start: int,
    price_version: int,
    rate_per_second: Decimal,
    worker_type: WorkerType,
) -> UnitRun:
    with localcontext(EXACT):
        amount = rate_per_second * (count * unit_seconds)
    return UnitRun(
        first_unit_index, count, unit_seconds, first_unit_start, price_version, rate_per_second, worker_type, amount
    )


def build_runs(
    up: int,
    count: int,
    unit_seconds: int,
    prices: PriceHistory,
    instance_type: str,
    worker_type: WorkerType,
) -> tuple[UnitRun, ...]:
    """Price `count` units starting at `up`; each unit uses the price book in force at its start (R12).

    Raises NotFound when no version in force prices the instance type (R11): charging a guessed rate would be
    worse than stopping the rating.
    """
    if count <= 0:
        return ()
    unit = unit_seconds * MICROS_PER_SECOND
    last_start = up + (count - 1) * unit
    cuts = {0}
    for book in prices.versions:
        if up < book.effective_from <= last_start:
            cuts.add(ceil_div(book.effective_from - up, unit))
    bounds = [*sorted(cuts), count]
    runs: list[UnitRun] = []
    for first, stop in pairwise(bounds):
        start = up + first * unit
        book = prices.at(start)
        if instance_type not in book.rates:
            raise NotFound(
                f"R11/R12: instance type {instance_type!r} has no rate in price book v{book.version}, "
                f"in force at {format_micros(start)} (unit {first} of the session that started {format_micros(up)})"
            )
        rate = book.rates[instance_type].per_second(worker_type)
        previous = runs[-1] if runs else None
        if previous is not None and previous.price_version == book.version and previous.rate_per_second == rate:
            runs[-1] = priced_run(
                previous.first_unit_index,
                previous.count + stop - first,
                unit_seconds,
                previous.first_unit_start,
                book.version,
                rate,
                worker_type,
            )
        else:
            runs.append(priced_run(first, stop - first, unit_seconds, start, book.version, rate, worker_type))
    return tuple(runs)


def money_between(runs: Sequence[UnitRun], start: int, end: int) -> Decimal:
    """Exact cost of [start, end): its overlap with each billed unit times that unit's rate (R12, R25)."""
    if end <= start or not runs:
        return ZERO
    starts = [run.first_unit_start for run in runs]
    index = max(0, bisect.bisect_right(starts, start) - 1)
    parts: list[Decimal] = []
    for run in runs[index:]:
        if run.first_unit_start >= end:
            break
        parts.append(run.money_between(start, end))
    return exact_sum(parts)


@dataclass(frozen=True, slots=True)
class WindowUsage:
    """Units (R10: by the instant each starts) and storage intervals (by their start) inside [start, end)."""

    start: int
    end: int
    units: int
    billed_seconds: int
    compute_amount: Decimal
    storage_amount: Decimal

    @property
    def amount(self) -> Decimal:
        return exact_sum([self.compute_amount, self.storage_amount])


def usage_of_runs(runs: Iterable[UnitRun], start: int, end: int) -> WindowUsage:
    """Units and money of the given runs whose units start in [start, end)."""
    units = seconds = 0
    amounts: list[Decimal] = []
    for run in runs:
        part = run.clip(start, end)
        if part is not None:
            units += part.count
            seconds += part.count * part.unit_seconds
            amounts.append(part.amount)
    return WindowUsage(start, end, units, seconds, exact_sum(amounts), ZERO)
