"""Drafting an invoice (R16, R17, R20-R23): what a cut at an instant covers beyond the invoices before it, grouped
into lines, with the discount, adjustments, carried balance and credits applied."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from ledger.billing.cents import ZERO_CENTS
from ledger.billing.credits import CreditBalance, apply_credits
from ledger.billing.invoice_entry import (
    Cadence,
    CoveredSession,
    GraceFired,
    Invoice,
    InvoiceLine,
    LineKind,
    PricedRange,
    RecordedAdjustment,
    Trigger,
)
from ledger.billing.invoice_lines import (
    ComputeKey,
    LineGroup,
    StorageKey,
    adjustment_line,
    carried_line,
    compute_key,
    compute_line,
    discount_line,
    line_order,
    storage_key,
    storage_line,
    storage_parts,
)
from ledger.rating import OrgRating, Session, UnitRun
from ledger.rating.storage import StorageCharge
from ledger.tracing import traced


@dataclass
class SessionCoverage:
    """What issued invoices charge, net, for one session: a prefix [0, end) of its units, by priced range."""

    template: CoveredSession
    priced: list[PricedRange] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.priced[-1].end if self.priced else 0


def net_coverage(invoices: Iterable[Invoice]) -> dict[tuple[str, int], SessionCoverage]:
    """Per session, the units issued invoices charge net of reversals: always a prefix of the session's units,
    because units are invoiced in start order and a reversal takes back the highest ones."""
    held: dict[tuple[str, int], SessionCoverage] = {}
    for invoice in invoices:
        for covered in invoice.sessions:
            coverage = held.setdefault(covered.key, SessionCoverage(covered))
            if covered.reversal:
                coverage.priced = [
                    PricedRange(p.first, min(p.end, covered.first), p.unit_price, p.price_version)
                    for p in coverage.priced
                    if p.first < covered.first
                ]
            else:
                coverage.template = covered
                coverage.priced.extend(covered.priced)
    return {key: coverage for key, coverage in held.items() if coverage.priced}


class UsageDraft:
    """Collects what one draft covers and groups it into lines."""

    def __init__(self, late_before: int | None) -> None:
        self.late_before = late_before
        self.sessions: list[CoveredSession] = []
        self.compute: dict[ComputeKey, LineGroup] = {}
        self.storage: dict[StorageKey, LineGroup] = {}
        self.storage_sequences: list[int] = []
        self.usage_starts: list[int] = []

    def is_late(self, start: int) -> bool:
        return self.late_before is not None and start < self.late_before

    def _compute_group(
        self, covered: CoveredSession, late: bool, reversal: bool, unit_price: Decimal, count: int, first: int, end: int
    ) -> None:
        key = compute_key(covered, late, reversal, unit_price)
        start, stop = covered.unit_start(first), covered.unit_start(end)
        group = self.compute.setdefault(key, LineGroup(Decimal(0), start, stop))
        group.add(Decimal(-count if reversal else count), start, stop)

    def charge_units(self, template: CoveredSession, runs: Sequence[UnitRun]) -> None:
        """Charge the given runs (one session's units [first, end)), each unit late if it starts before the last
        invoice's end (R22)."""
        priced = tuple(
            PricedRange(r.first_unit_index, r.first_unit_index + r.count, r.unit_price, r.price_version) for r in runs
        )
        covered = _with_range(template, priced[0].first, priced[-1].end, reversal=False, priced=priced)
        self.sessions.append(covered)
        for run in runs:
            pieces: list[tuple[bool, UnitRun | None]] = [(False, run)]
            if self.late_before is not None:
                pieces = [
                    (True, run.clip(run.first_unit_start, self.late_before)),
                    (False, run.clip(self.late_before, run.end)),
                ]
            for late, piece in pieces:
                if piece is None:
                    continue
                end = piece.first_unit_index + piece.count
                self._compute_group(covered, late, False, piece.unit_price, piece.count, piece.first_unit_index, end)
                if not late:
                    self.usage_starts.append(piece.first_unit_start)

    def reverse_units(self, coverage: SessionCoverage, keep: int) -> None:
        """R22/R23: take back units [keep, end) an earlier invoice charged that are no longer due."""
        priced = tuple(
            PricedRange(max(p.first, keep), p.end, p.unit_price, p.price_version)
            for p in coverage.priced
            if p.end > keep
        )
        if not priced:
            return
        covered = _with_range(coverage.template, keep, coverage.end, reversal=True, priced=priced)
        self.sessions.append(covered)
        for p in priced:
            self._compute_group(covered, True, True, p.unit_price, p.end - p.first, p.first, p.end)

    def charge_storage(self, charge: StorageCharge) -> None:
        late = self.is_late(charge.start)
        self.storage_sequences.append(charge.seq)
        if not late:
            self.usage_starts.append(charge.start)
        for rule, price, quantity in storage_parts(charge):
            key = storage_key(charge, late, rule, price)
            group = self.storage.setdefault(key, LineGroup(Decimal(0), charge.start, charge.end))
            group.add(quantity, charge.start, charge.end)

    def usage_lines(self) -> list[InvoiceLine]:
        lines = [
            compute_line(key, group) for key, group in sorted(self.compute.items(), key=lambda kv: line_order(kv[0]))
        ]
        lines += [
            storage_line(key, group) for key, group in sorted(self.storage.items(), key=lambda kv: line_order(kv[0]))
        ]
        return lines


def _with_range(
    template: CoveredSession, first: int, end: int, *, reversal: bool, priced: tuple[PricedRange, ...]
) -> CoveredSession:
    return CoveredSession(
        template.workload_id,
        template.up_seq,
        template.up,
        template.unit_seconds,
        template.endpoint_id,
        template.workload_kind,
        template.instance_type,
        template.worker_type,
        first,
        end,
        reversal,
        priced,
    )


def draft_usage(rating: OrgRating, prior: Sequence[Invoice], period_end: int) -> UsageDraft:
    """The usage (units and storage intervals, R10-R14) an invoice cut at `period_end` covers, beyond what `prior`
    invoices hold: late lines for usage starting before the last cut (R22), negative ones for units no longer due
    (R22/R23). draft_invoice's first half; the threshold walk (ledger/billing/cuts.py) starts from it."""
    previous = prior[-1] if prior else None
    drafting = UsageDraft(previous.period_end if previous is not None else None)
    coverage = net_coverage(prior)

    for session in rating.sessions:
        template = session_template(session)
        held = coverage.pop(template.key, None)
        if held is not None and (held.template.up != session.up or held.template.unit_seconds != session.unit_seconds):
            drafting.reverse_units(held, 0)  # re-rated from a different start or unit: take all back, charge anew
            held = None
        invoiced = held.end if held is not None else 0
        due_runs = session.runs_in(session.up, period_end)
        due = due_runs[-1].first_unit_index + due_runs[-1].count if due_runs else 0
        if due > invoiced:
            drafting.charge_units(template, session.runs_in(template.unit_start(invoiced), period_end))
        elif due < invoiced and held is not None:
            drafting.reverse_units(held, due)
    # Sessions no longer in the rating (their UP was replaced, R26). A rating may hold only some workloads
    # (ledger/billing/scope.py); each it holds is rated whole, and the others are not looked at.
    rated = {workload.workload_id for workload in rating.workloads}
    for held in coverage.values():
        if held.template.workload_id in rated:
            drafting.reverse_units(held, 0)

    # Storage by start: an interval starting at or after the last cut is on no invoice yet (each invoice holds only
    # intervals starting before its cut), so only the earlier ones are looked up in what the invoices cover.
    charges, starts = rating.storage_by_start, rating.storage_starts
    last_cut = drafting.late_before
    split = 0 if last_cut is None else bisect.bisect_left(starts, min(last_cut, period_end))
    if split:
        covered_storage = {seq for invoice in prior for seq in invoice.storage_sequences}
        for charge in charges[:split]:
            if charge.seq not in covered_storage:
                drafting.charge_storage(charge)
    for charge in charges[split : bisect.bisect_left(starts, period_end)]:
        drafting.charge_storage(charge)
    return drafting


def session_template(session: Session) -> CoveredSession:
    """A session's identity and dimensions as an invoice records them, covering no units yet."""
    return CoveredSession(
        session.workload_id,
        session.up_seq,
        session.up,
        session.unit_seconds,
        session.endpoint_id,
        session.workload_kind.value,
        session.instance_type,
        session.worker_type.value,
        0,
        0,
        False,
        (),
    )


@traced("ledger.invoice.draft", ids=("org_id", "trigger"))
def draft_invoice(
    org_id: str,
    rating: OrgRating,
    prior: Sequence[Invoice],
    adjustments: Sequence[RecordedAdjustment],
    balances: Sequence[CreditBalance],
    *,
    discount_percent: Decimal,
    period_end: int,
    trigger: Trigger,
    cadence: Cadence,
    issued_at: int | None = None,
    settled_through: int | None = None,
    grace: GraceFired | None = None,
) -> Invoice:
    """The invoice cut at `period_end` (R17): everything not on `prior` invoices that starts before it.

    Units and storage intervals count by the instant they start (before `period_end`); an adjustment counts once
    recorded (at or before `period_end`). Usage that starts before the last invoice's cut is a late line (R22);
    units an earlier invoice charged that are no longer due come back as a negative late line (R22/R23). The
    discount applies to the usage subtotal (R20), credits to what is left, soonest-expiring first, never below
    zero (R16): the credits available at `issued_at` (the engine clock when it is issued; `period_end` for a draft
    never issued).
    """
    previous = prior[-1] if prior else None
    drafting = draft_usage(rating, prior, period_end)

    lines = drafting.usage_lines()
    subtotal = sum((line.amount for line in lines), ZERO_CENTS)
    if discount_percent > 0 and subtotal != 0:
        lines.append(discount_line(subtotal, discount_percent))
    discount = -sum((line.amount for line in lines if line.kind is LineKind.DISCOUNT), ZERO_CENTS)

    covered_adjustments = {seq for invoice in prior for seq in invoice.adjustment_sequences}
    new_adjustments = [a for a in adjustments if a.sequence not in covered_adjustments and a.recorded_at <= period_end]
    lines += [adjustment_line(a) for a in new_adjustments]
    carried_from = None
    if previous is not None and previous.balance_carried_forward < 0:
        lines.append(carried_line(previous))
        carried_from = previous.number

    total = sum((line.amount for line in lines), ZERO_CENTS)  # R21: the total is the sum of the lines
    credits = apply_credits(balances, total, period_end if issued_at is None else issued_at) if total > 0 else ()
    credited = sum((c.amount for c in credits), ZERO_CENTS)
    period_start = drafting.late_before
    if period_start is None:
        period_start = min(drafting.usage_starts, default=period_end)
    return Invoice(
        org_id=org_id,
        number=len(prior) + 1,
        period_start=min(period_start, period_end),
        period_end=period_end,
        trigger=trigger,
        cadence=cadence,
        lines=tuple(lines),
        subtotal=subtotal,
        discount_percent=discount_percent,
        discount=discount,
        total=total,
        credits_applied=credits,
        amount_due=max(total - credited, ZERO_CENTS),
        balance_carried_forward=min(total, ZERO_CENTS),
        sessions=tuple(drafting.sessions),
        storage_sequences=tuple(sorted(drafting.storage_sequences)),
        adjustment_sequences=tuple(a.sequence for a in new_adjustments),
        carried_from_invoice=carried_from,
        rated_log_size=rating.log_size,
        settled_through=settled_through,
        issued_at=issued_at,
        grace=grace,
    )
