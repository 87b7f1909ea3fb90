"""The answer to a ticket (R27): its lines, the rule that decided each and the entries it cites, as values."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Any

from ledger.adjustments import Adjustment
from ledger.events import EventType, StopReason
from ledger.log.entry import EntryKind, EntryRef
from ledger.rating import Anomaly, Session, StorageCharge, UnitRun, ZeroLine
from ledger.rating.money import exact_sum, format_money, fraction_to_decimal, ratio_text


class Verdict(StrEnum):
    BILLED = "BILLED"
    NOT_BILLED = "NOT_BILLED"


def decimal_text(value: Fraction | Decimal | int) -> tuple[str, bool]:
    """A plain decimal string: exact when the value terminates in decimal, else 50 significant digits (R21: a
    third of a serving instant does not terminate); and whether it is exact."""
    fraction = value if isinstance(value, Fraction) else Fraction(value)
    return ratio_text(fraction.numerator, fraction.denominator)


@dataclass(frozen=True, slots=True)
class InvoiceCoverage:
    """Which invoice a charge went to; `invoice_id` None means not yet invoiced (R17)."""

    invoice_id: str | None = None
    ref: EntryRef | None = None
    late: bool = False  # R22: usage of an already-invoiced period, on the next invoice
    explanation: str = field(init=False, compare=False, repr=False)  # made once: a window's lines share a few

    def __post_init__(self) -> None:
        object.__setattr__(self, "explanation", self._explain())

    @property
    def invoiced(self) -> bool:
        return self.invoice_id is not None

    def _explain(self) -> str:
        if self.invoice_id is None:
            return "R17: not yet invoiced"
        where = f" (entry {self.ref.log_id}#{self.ref.sequence})" if self.ref is not None else ""
        late = "; R22: late usage (it starts before this invoice's period), on a later invoice than its period's"
        return f"R17: on invoice #{self.invoice_id}{where}{late if self.late else ''}"


NOT_YET_INVOICED = InvoiceCoverage()


@dataclass(frozen=True, slots=True)
class InvoicedRange:
    """Units [first, first + count) of a session as one issued invoice charged them, at the unit price it charged
    then (R11, R12: a reconstruction states each unit at the price it was invoiced at), or with `reversal` took
    back as a negative late line (R22: a late stop showed fewer units were due)."""

    invoice_id: str
    ref: EntryRef | None
    first_unit_index: int
    count: int
    unit_price: Decimal
    price_version: int
    reversal: bool
    late: bool  # R22: the units start before this invoice's period

    @property
    def amount(self) -> Decimal:
        charged = self.unit_price * self.count
        return -charged if self.reversal else charged

    @property
    def explanation(self) -> str:
        units = f"units {self.first_unit_index}-{self.first_unit_index + self.count - 1}"
        price = f"{self.count} x {format_money(self.unit_price)} (price book v{self.price_version}, R11 R12)"
        if self.reversal:
            return (
                f"R22: invoice #{self.invoice_id} took back {units}, {price}, as a negative late line: a later event "
                "showed they were not due"
            )
        late = "; R22: a late line (they start before its period)" if self.late else ""
        return f"R17: invoice #{self.invoice_id} charged {units}: {price} = {format_money(self.amount)}{late}"


@dataclass(frozen=True, slots=True)
class InvoiceSummary:
    """An invoice a reconstructed charge went to, with the credits applied on it (R16)."""

    invoice_id: str
    ref: EntryRef | None
    issued_at: int | None
    period_start: int | None
    period_end: int | None
    total: Decimal | None
    credits_applied: Decimal | None
    amount_due: Decimal | None


@dataclass(frozen=True, slots=True)
class EntryProofs:
    """Inclusion proofs of the cited entries of one log against its newest signed checkpoint; `unproven` are
    entries appended after that checkpoint (proven once the next one is signed)."""

    log_id: str
    tree_size: int
    root_hash: bytes
    checkpoint_note: str
    bundle: Mapping[str, Any]  # the proof.json form, verifiable offline (ledger.log.proofs.ProofBundle)
    unproven: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Evidence:
    """One ledger entry a figure rests on, with what it says."""

    ref: EntryRef
    kind: EntryKind
    what: str
    occurred_at: int | None = None
    workload_id: str | None = None
    request_id: str | None = None
    event_type: EventType | None = None


@dataclass(frozen=True, slots=True)
class TimelineStep:
    """One lifecycle or request event of a session, with the rule that says what it means for the bill."""

    at: int
    event_type: EventType
    verdict: Verdict
    rule: str
    explanation: str
    ref: EntryRef
    request_id: str | None = None
    stop_reason: StopReason | None = None


@dataclass(frozen=True, slots=True)
class ChargePart:
    """A part of a session's billed quantity (R25 for serving; R6/R7 for builds and training) and its rules."""

    name: str
    micros: int
    amount: Decimal
    rules: tuple[str, ...]
    explanation: str


@dataclass(frozen=True, slots=True)
class UnitCharge:
    """Billed units of a session priced alike and invoiced together (R10, R11, R12, R17)."""

    run: UnitRun
    price_ref: EntryRef | None
    invoice: InvoiceCoverage

    @property
    def last_unit_index(self) -> int:
        return self.run.first_unit_index + self.run.count - 1


@dataclass(frozen=True, slots=True)
class RequestCharge:
    """R25: one request, the workload that served it and its attributed share of the serving time and money."""

    request_id: str
    workload_id: str
    endpoint_id: str
    started_at: int | None
    finished_at: int | None
    in_flight_from: int | None
    in_flight_to: int | None
    attributed_micros: Fraction
    attributed_amount: Fraction
    rules: tuple[str, ...]
    explanation: str
    refs: tuple[EntryRef, ...]
    session_stop_reason: StopReason | None = None
    # The share as decimal_text writes it (seconds, amount, and whether the amount is exact), made once.
    attributed_seconds_text: str = "0"
    attributed_amount_text: str = "0"
    attributed_amount_exact: bool = True


@dataclass(frozen=True, slots=True)
class SessionCharge:
    """A session overlapping the window: the rated session, what decided each part, and where it was invoiced."""

    session: Session
    verdict: Verdict
    timeline: tuple[TimelineStep, ...]
    parts: tuple[ChargePart, ...]
    units: tuple[UnitCharge, ...]
    requests: tuple[RequestCharge, ...]
    request_count: int
    requests_in_window: int
    window_amount: Decimal
    refs: tuple[EntryRef, ...]
    plan_ref: EntryRef | None
    # What issued invoices charged for this session, range by range, at their prices then (R12, R17, R22).
    invoiced: tuple[InvoicedRange, ...] = ()

    @property
    def unit(self) -> str:
        return self.session.granularity.unit_name()


@dataclass(frozen=True, slots=True)
class ZeroCharge:
    """A line billed nothing and the rule that says so: R1 informational events, R5 failed boots, R8 development
    deployments, R9 stretches of the window with no workload up (scaled to zero)."""

    rule: str
    start: int
    end: int | None
    explanation: str
    refs: tuple[EntryRef, ...]
    workload_id: str | None = None
    event_type: EventType | None = None
    line: ZeroLine | None = None


@dataclass(frozen=True, slots=True)
class StorageLine:
    charge: StorageCharge
    ref: EntryRef
    invoice: InvoiceCoverage


@dataclass(frozen=True, slots=True)
class AnomalyLine:
    anomaly: Anomaly
    ref: EntryRef


@dataclass(frozen=True, slots=True)
class AdjustmentLine:
    """R23: an adjustment correcting entries of this reconstruction, and the invoice it went to."""

    adjustment: Adjustment
    ref: EntryRef
    invoice: InvoiceCoverage
    corrects_here: tuple[EntryRef, ...]

    @property
    def explanation(self) -> str:
        cited = ", ".join(f"{r.log_id}:{r.sequence}" for r in self.adjustment.corrects)
        sign = "credit" if self.adjustment.amount < 0 else "debit"
        return (
            f"R23: ticket {self.adjustment.ticket}: {sign} of {format_money(abs(self.adjustment.amount))} "
            f"({self.adjustment.reason}) correcting {cited}; {self.invoice.explanation}"
        )


@dataclass(frozen=True)
class Reconstruction:
    """The answer to a ticket (R27)."""

    org_id: str
    endpoint_id: str
    request_id: str | None
    start: int
    end: int
    as_of: int
    sessions: tuple[SessionCharge, ...]
    zero_lines: tuple[ZeroCharge, ...]
    storage: tuple[StorageLine, ...]
    anomalies: tuple[AnomalyLine, ...]
    adjustments: tuple[AdjustmentLine, ...]
    request: RequestCharge | None
    entries: tuple[Evidence, ...]
    invoices: tuple[InvoiceSummary, ...]
    proofs: tuple[EntryProofs, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def sessions_amount(self) -> Decimal:
        return exact_sum([s.session.amount for s in self.sessions])

    @property
    def exact_storage_amount(self) -> Fraction:
        """The storage intervals' exact sum (R13, R14 repeat in decimal: summed before any conversion)."""
        return sum((line.charge.exact_amount for line in self.storage), Fraction(0))

    @property
    def storage_amount(self) -> Decimal:
        return fraction_to_decimal(self.exact_storage_amount)

    @property
    def adjustments_amount(self) -> Decimal:
        return exact_sum([line.adjustment.amount for line in self.adjustments])

    @property
    def exact_total_amount(self) -> Fraction:
        """Every listed session (whole, R10: rounding is per session), storage interval and adjustment, exactly."""
        return Fraction(self.sessions_amount) + self.exact_storage_amount + Fraction(self.adjustments_amount)

    @property
    def total_amount(self) -> Decimal:
        """exact_total_amount as a Decimal (converted once: 50 significant digits when storage repeats)."""
        return fraction_to_decimal(self.exact_total_amount)

    @property
    def window_compute_amount(self) -> Decimal:
        """The units that start inside the window (R10: a unit belongs whole to the window containing its start)."""
        return exact_sum([s.window_amount for s in self.sessions])

    @property
    def exact_window_storage_amount(self) -> Fraction:
        return sum(
            (line.charge.exact_amount for line in self.storage if self.start <= line.charge.start < self.end),
            Fraction(0),
        )

    @property
    def window_storage_amount(self) -> Decimal:
        return fraction_to_decimal(self.exact_window_storage_amount)

    def cited(self) -> dict[str, list[int]]:
        """Sequence numbers of every cited entry, per log."""
        found: dict[str, set[int]] = defaultdict(set)
        for evidence in self.entries:
            found[evidence.ref.log_id].add(evidence.ref.sequence)
        return {log_id: sorted(seqs) for log_id, seqs in found.items()}
