"""Where R17's threshold invoice is cut: the first instant the uninvoiced usage after discounts exceeds $50.00.

A draft (ledger/billing/invoice_draft.py) groups usage into lines, rounds each to cents (R21) and takes the discount off
the subtotal (R20). The threshold compares that figure, so the cut is where it first exceeds the threshold: at
c = s + 1 microsecond for the start s of the unit or storage interval that takes it over. Usage that started before
the walk's origin (late usage, R22, counted as starting there; reversals, R22/R23) is fixed; every item from the
origin on adds a non-negative quantity to its line, and each line's rounded amount, their sum and the sum less a
rounded discount never fall as items are added. So the usage up to t is monotone in t, and the cut is found by
searching t (doubling from the origin, then halving), each look summing only the items that start before t: a
crossing costs O(items near it x log), not a draft per candidate, and a backlog gives one cut per crossing.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

from ledger.account import DEFAULT_INVOICE_THRESHOLD
from ledger.billing.cents import ZERO_CENTS, round_cents
from ledger.billing.invoice_draft import draft_usage, net_coverage, session_template
from ledger.billing.invoice_entry import CoveredSession, Invoice
from ledger.billing.invoice_lines import (
    ComputeKey,
    StorageKey,
    compute_amount,
    compute_key,
    storage_amount,
    storage_key,
    storage_parts,
)
from ledger.rating import OrgRating, UnitRun
from ledger.rating.money import EXACT
from ledger.timeutil import MICROS_PER_SECOND

INVOICE_THRESHOLD = DEFAULT_INVOICE_THRESHOLD  # R17: $50.00 of uninvoiced usage after discounts
_FIRST_STEP = 60 * MICROS_PER_SECOND  # the doubling search's first step: a minute past the origin


@dataclass(frozen=True, slots=True)
class _Units:
    """A run of one session's uninvoiced units from the origin on, all on one line (R10/R11)."""

    start: int
    unit_micros: int
    count: int
    key: ComputeKey

    def started_before(self, t: int) -> int:
        if t <= self.start:
            return 0
        return min(self.count, -((self.start - t) // self.unit_micros))  # ceil((t - start) / unit)


@dataclass(frozen=True, slots=True)
class _Interval:
    """One part of an uninvoiced storage interval from the origin on (R13, R14)."""

    start: int
    gb_seconds: Decimal
    key: StorageKey


class ThresholdWalk:
    """The uninvoiced usage after discounts (R17, R20) of the usage starting before t, for t after `origin`.

    `prior` are the invoices issued so far (their last cut is at or before `origin`); `origin` is that cut, or a
    month end that issued nothing since.
    """

    def __init__(self, rating: OrgRating, prior: Sequence[Invoice], origin: int, discount_percent: Decimal) -> None:
        self.origin = origin
        self.discount_percent = discount_percent
        base = draft_usage(rating, prior, origin)
        self.compute_base = {key: group.quantity for key, group in base.compute.items()}
        self.storage_base = {key: group.quantity for key, group in base.storage.items()}
        coverage = net_coverage(prior)
        units: list[_Units] = []
        for session in rating.sessions:
            template = session_template(session)
            held = coverage.get(template.key)
            same = held is not None and (held.template.up, held.template.unit_seconds) == (
                session.up,
                session.unit_seconds,
            )
            invoiced = held.end if held is not None and same else 0
            for run in session.runs_in(max(template.unit_start(invoiced), origin), session.up + session.billed_micros):
                units.append(_units(template, run))
        # An interval starting at or after the origin (at or after the last cut) is on no invoice yet. They are
        # made into line items only as far as the search looks (a backlog's crossings are each near their origin).
        self._charges = rating.storage_by_start
        self._starts = rating.storage_starts
        self._next_charge = bisect.bisect_left(self._starts, origin)
        self.units = sorted(units, key=lambda u: u.start)
        self.unit_starts = [u.start for u in self.units]
        self.intervals: list[_Interval] = []
        self.interval_starts: list[int] = []

    def _intervals_before(self, t: int) -> list[_Interval]:
        """The storage items starting before t, in start order, made as needed."""
        stop = bisect.bisect_left(self._starts, t)
        for charge in self._charges[self._next_charge : stop]:
            for rule, price, quantity in storage_parts(charge):
                self.intervals.append(_Interval(charge.start, quantity, storage_key(charge, False, rule, price)))
                self.interval_starts.append(charge.start)
        self._next_charge = max(self._next_charge, stop)
        return self.intervals[: bisect.bisect_left(self.interval_starts, t)]

    def usage_after_discount(self, t: int) -> Decimal:
        """What a draft cut at t would compare with the threshold: usage lines less the discount (R17, R20)."""
        compute = dict(self.compute_base)
        with localcontext(EXACT):
            for units in self.units[: bisect.bisect_left(self.unit_starts, t)]:
                compute[units.key] = compute.get(units.key, Decimal(0)) + units.started_before(t)
            storage = dict(self.storage_base)
            for interval in self._intervals_before(t):
                storage[interval.key] = storage.get(interval.key, Decimal(0)) + interval.gb_seconds
        subtotal = sum((compute_amount(q, key[7]) for key, q in compute.items()), ZERO_CENTS)
        subtotal += sum((storage_amount(q, key[5]) for key, q in storage.items()), ZERO_CENTS)
        if self.discount_percent > 0 and subtotal != 0:
            with localcontext(EXACT):
                subtotal += round_cents(subtotal * (-self.discount_percent / 100))
        return subtotal

    def first_crossing(self, threshold: Decimal, bound: int) -> int | None:
        """R17: the least cut c <= bound (c = s + 1 for the start s of the item that takes the usage over
        `threshold`), or None if the usage starting before `bound` does not exceed it."""
        if bound <= self.origin:
            return None
        low, high = self.origin, None  # usage before low does not exceed the threshold; before high it does
        step = _FIRST_STEP
        while low + step < bound:  # doubling: a crossing near the origin is found looking at the items near it
            if self.usage_after_discount(low + step) > threshold:
                high = low + step
                break
            low += step
            step *= 2
        if high is None:
            if self.usage_after_discount(bound) <= threshold:
                return None
            high = bound
        while high - low > 1:
            middle = (low + high) // 2
            if self.usage_after_discount(middle) > threshold:
                high = middle
            else:
                low = middle
        return high


def _units(template: CoveredSession, run: UnitRun) -> _Units:
    unit_micros = run.unit_seconds * MICROS_PER_SECOND
    return _Units(run.first_unit_start, unit_micros, run.count, compute_key(template, False, False, run.unit_price))
