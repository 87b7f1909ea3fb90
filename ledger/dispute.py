"""Dispute reconstruction (R27): every charge of an endpoint in a time window, or of one request, rebuilt from entries.

A support ticket names an endpoint, maybe a request, and an approximate time. `reconstruct` reads only what the
indexes and the usage rollups point at: the workloads of the endpoint around the window, their lifecycle entries,
the requests near the window, a request's entries (ix_entries_request) and the org's ACCOUNT and ADJUSTMENT
entries (ix_entries_kind); each session's R25 split over all its requests comes from the rollups' serving union
(`_IndexedRating`; docs/disputes.md). Without rollups it reads every entry of each workload (`_whole_workloads`).
It rates those workloads with the rating engine and says, for every line, the rule that decided it (R1-R14, R25,
R26) and the entries (log, sequence number, entry hash) it rests on. Invoices (R17, R22) and inclusion proofs come
through small adapters that answer "not yet invoiced" and "no signed checkpoint" until ledger.billing and a signing
key exist.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import importlib
import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Protocol

from ledger.account import AccountChange, AccountHistory
from ledger.adjustments import Adjustment
from ledger.errors import FieldViolation, InvalidInput, NotFound
from ledger.events import (
    DEFAULT_STORAGE_INTERVAL_SECONDS,
    IDENTIFIER_RE,
    IDENTIFIER_RULE,
    MAX_INTERVAL_SECONDS,
    EventType,
    StopReason,
    UsageEvent,
    WorkloadKind,
    event_from_body,
)
from ledger.log.entry import SYSTEM_LOG, Entry, EntryHead, EntryKind, EntryRef, org_log_id, org_of_log
from ledger.plans import PlanHistory
from ledger.pricebook import PriceHistory
from ledger.rating import (
    Anomaly,
    Attribution,
    RequestAttribution,
    RequestSpan,
    Session,
    StorageCharge,
    UnitRun,
    WorkloadRating,
    ZeroLine,
    attribute_serving,
    rate_workload,
)
from ledger.rating.attribution import cold_start_end, split_session
from ledger.rating.money import exact_sum, format_money, format_seconds, fraction_to_decimal, ratio_text
from ledger.rating.units import money_between
from ledger.timeutil import MICROS_PER_SECOND, format_micros, parse_rfc3339_micros
from ledger.tracing import traced
from ledger.usage.follower import RollupFollower
from storage.sql.serving import RequestSummary, ServingUnion, StartedSpan, serving_totals

if TYPE_CHECKING:
    from ledger.billing.invoices import Invoice
    from storage.sql.rollups import UsageRollups, WindowLifecycles

MINUTE = 60 * MICROS_PER_SECOND
DEFAULT_TOLERANCE = 30 * MINUTE  # R27: "an approximate time" means +-30 min unless support says otherwise
MAX_TOLERANCE = 7 * 24 * 60 * MINUTE
MAX_WINDOW = 31 * 24 * 60 * MINUTE  # a lookup answers a ticket, not a month-end report
# A storage sample reports the interval ending at its occurred_at (R13, R14): samples up to one default interval
# after the window can still cover part of it, so the workloads with entries that far past it are rated too. A
# longer interval (up to MAX_INTERVAL_SECONDS) ending later is found apart: from the rollups by its start, or by the
# whole read's own pass over the endpoint's later samples.
STORAGE_LOOKAHEAD = 300 * MICROS_PER_SECOND
# Requests listed one by one: the endpoint's first 20 in flight in the window, whichever sessions served them (each
# session still counts all of its own, and the R25 split always uses every request of the session). A report to
# paste into a ticket: its size is bounded by the window, not by how many replicas the endpoint ran; a request
# asked for by ID is always answered.
MAX_LISTED_REQUESTS = 20


class Verdict(StrEnum):
    BILLED = "BILLED"
    NOT_BILLED = "NOT_BILLED"


def decimal_text(value: Fraction | Decimal | int) -> tuple[str, bool]:
    """A plain decimal string: exact when the value terminates in decimal, else 50 significant digits (R21: a
    third of a serving instant does not terminate); and whether it is exact."""
    fraction = value if isinstance(value, Fraction) else Fraction(value)
    return ratio_text(fraction.numerator, fraction.denominator)


# -- the question -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DisputeQuery:
    """What a ticket gives (R27). A window is [start, end), or `around` +- `tolerance` (default 30 min); with only
    a request ID the window is the request's own time in flight. The org may be left out when the endpoint or the
    request identifies it."""

    endpoint_id: str | None = None
    org_id: str | None = None
    request_id: str | None = None
    start: int | None = None
    end: int | None = None
    around: int | None = None
    tolerance: int | None = None

    def check(self) -> None:
        """Raise InvalidInput naming every bad field."""
        bad: list[FieldViolation] = []
        for name in ("endpoint_id", "org_id", "request_id"):
            value = getattr(self, name)
            if value is not None and not IDENTIFIER_RE.match(value):
                bad.append(FieldViolation(name, f"must be {IDENTIFIER_RULE}"))
        if self.endpoint_id is None and self.request_id is None:
            bad.append(FieldViolation("endpoint_id", "R27: give the endpoint ID from the ticket, or a request ID"))
        if (self.start is None) != (self.end is None):
            bad.append(FieldViolation("end_time" if self.end is None else "start_time", "give both ends of the window"))
        elif self.start is not None and self.end is not None:
            if self.end <= self.start:
                bad.append(FieldViolation("end_time", "must be after start_time"))
            elif self.end - self.start > MAX_WINDOW:
                bad.append(
                    FieldViolation(
                        "end_time", "a window is at most 31 days; narrow it to the ticket's time", "WINDOW_TOO_LONG"
                    )
                )
            if self.around is not None:
                bad.append(FieldViolation("approximate_time", "give a window or an approximate time, not both"))
        if self.tolerance is not None:
            if self.around is None:
                bad.append(FieldViolation("tolerance", "only an approximate time takes a tolerance"))
            elif not 0 < self.tolerance <= MAX_TOLERANCE:
                bad.append(FieldViolation("tolerance", "must be more than 0 and at most 7 days"))
        if self.start is None and self.around is None and self.request_id is None:
            bad.append(
                FieldViolation("approximate_time", "R27: give the ticket's approximate time, a window or a request ID")
            )
        if bad:
            raise InvalidInput(bad)

    def window(self) -> tuple[int, int] | None:
        if self.start is not None and self.end is not None:
            return self.start, self.end
        if self.around is not None:
            tolerance = self.tolerance if self.tolerance is not None else DEFAULT_TOLERANCE
            return self.around - tolerance, self.around + tolerance
        return None


# -- what it reads --------------------------------------------------------------------------------------------


class DisputeSource(Protocol):
    """The narrow, index-backed reads a reconstruction needs (storage.sql.SqlStore is one)."""

    def entry_head(self, log_id: str, sequence: int) -> EntryHead: ...

    def entries_of_kind(self, log_id: str, kinds: Sequence[str]) -> list[Entry]: ...

    def endpoint_window_entries(self, org_id: str, endpoint_id: str, start: int, end: int) -> list[Entry]: ...

    def request_entries(self, request_id: str, org_id: str | None = None) -> list[Entry]: ...

    def workload_entries(self, log_id: str, workload_ids: Sequence[str]) -> list[Entry]: ...

    def live_workloads(self, org_id: str, endpoint_id: str, at: int) -> list[str]: ...

    def endpoint_orgs(self, endpoint_id: str) -> list[str]: ...

    def running_evidence(self, log_id: str, workload_ids: Sequence[str]) -> tuple[int | None, dict[str, int]]: ...


class IndexedSource(DisputeSource, Protocol):
    """The further reads the rollup-backed lookup uses (storage.sql.SqlStore has them)."""

    def workload_entries_between(
        self, log_id: str, workload_ids: Sequence[str], start: int, end: int, *, requests: bool = True
    ) -> dict[str, list[Entry]]: ...

    def entries_at(self, log_id: str, sequences: Sequence[int]) -> list[Entry]: ...

    def entry_heads(self, log_id: str, sequences: Sequence[int]) -> list[EntryHead]: ...


class SessionIndex(Protocol):
    """Rollups that let a lookup rate a long session without reading its every request (storage.sql.rollups
    implements it, caught up to the log before the lookup starts)."""

    def window_lifecycles_and_storage(
        self, org_id: str, endpoint_id: str, start: int, end: int, entries_to: int
    ) -> tuple[WindowLifecycles, list[tuple[StorageCharge, bytes]]]: ...

    def lifecycles_and_summaries(
        self, log_id: str, workload_ids: Iterable[str]
    ) -> tuple[dict[str, list[tuple[UsageEvent, int]]], dict[int, bytes], dict[str, RequestSummary]]: ...

    def request_spans(self, log_id: str, reaches: dict[str, tuple[int, int]]) -> dict[str, list[StartedSpan]]: ...

    def window_request_spans(
        self, log_id: str, ranges: dict[str, tuple[int, int, int]], limit: int, asked: tuple[str, str] | None
    ) -> tuple[dict[str, tuple[int, list[StartedSpan]]], dict[int, bytes]]: ...

    def serving_union(self, log_id: str, workload_id: str, summary: RequestSummary) -> ServingUnion: ...


# -- invoices (R16, R17, R22): an adapter over ledger.billing.invoices --------------------------------------------


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


class InvoiceLookup(Protocol):
    """Where each reconstructed charge was invoiced."""

    def unit(self, session: Session, unit_index: int) -> InvoiceCoverage: ...

    def storage(self, charge: StorageCharge) -> InvoiceCoverage: ...

    def adjustment(self, seq: int) -> InvoiceCoverage: ...

    def summary(self, invoice_id: str) -> InvoiceSummary | None: ...

    def invoiced_ranges(self, session: Session) -> tuple[InvoicedRange, ...]: ...


class NoInvoices:
    """Before any invoice exists (or without ledger.billing): every charge is not yet invoiced."""

    def unit(self, session: Session, unit_index: int) -> InvoiceCoverage:
        return NOT_YET_INVOICED

    def storage(self, charge: StorageCharge) -> InvoiceCoverage:
        return NOT_YET_INVOICED

    def adjustment(self, seq: int) -> InvoiceCoverage:
        return NOT_YET_INVOICED

    def summary(self, invoice_id: str) -> InvoiceSummary | None:
        return None

    def invoiced_ranges(self, session: Session) -> tuple[InvoicedRange, ...]:
        return ()


class BillingInvoices:
    """An org's issued invoices (ledger.billing.invoices), read through its `invoice_covering_*` functions.

    R22: a charge is late on its invoice when it starts before that invoice's period, i.e. before the end of the
    invoice issued before it (ledger.billing drafts late lines exactly so).
    """

    def __init__(self, invoices: Sequence[Invoice]) -> None:
        from ledger.billing import invoices as billing

        self._billing = billing
        self.invoices = list(invoices)
        self._by_id = {str(invoice.number): invoice for invoice in self.invoices}
        # One coverage per (invoice, late): a window's hundreds of lines share a few, and answers compare them.
        self._coverages: dict[tuple[int, bool], InvoiceCoverage] = {}
        self._holding: dict[str, list[Invoice]] = {}  # by workload: the invoices charging its units, in order

    def _coverage(self, invoice: Invoice | None, start: int | None) -> InvoiceCoverage:
        if invoice is None:
            return NOT_YET_INVOICED
        late = start is not None and start < invoice.period_start
        coverage = self._coverages.get((invoice.number, late))
        if coverage is None:
            coverage = InvoiceCoverage(str(invoice.number), _invoice_ref(invoice), late)
            self._coverages[(invoice.number, late)] = coverage
        return coverage

    def unit(self, session: Session, unit_index: int) -> InvoiceCoverage:
        holding = self._holding.get(session.workload_id)
        if holding is None:  # only the invoices charging the workload can cover its units; found once per lookup
            holding = [i for i in self.invoices if session.workload_id in i.sessions_by_workload]
            self._holding[session.workload_id] = holding
        found = self._billing.invoice_covering_unit(holding, session.workload_id, unit_index, session.up_seq)
        return self._coverage(found, session.up + unit_index * session.unit_seconds * MICROS_PER_SECOND)

    def storage(self, charge: StorageCharge) -> InvoiceCoverage:
        return self._coverage(self._billing.invoice_covering_storage(self.invoices, charge.seq), charge.start)

    def adjustment(self, seq: int) -> InvoiceCoverage:
        return self._coverage(self._billing.invoice_covering_adjustment(self.invoices, seq), None)

    def summary(self, invoice_id: str) -> InvoiceSummary | None:
        invoice = self._by_id.get(invoice_id)
        if invoice is None:
            return None
        return InvoiceSummary(
            invoice_id=invoice_id,
            ref=_invoice_ref(invoice),
            issued_at=None,
            period_start=invoice.period_start,
            period_end=invoice.period_end,
            total=invoice.total,
            credits_applied=invoice.credits_total,
            amount_due=invoice.amount_due,
        )

    def invoiced_ranges(self, session: Session) -> tuple[InvoicedRange, ...]:
        """Every range of the session's units an issued invoice charged or took back, in invoice order (R17, R22)."""
        found: list[InvoicedRange] = []
        for invoice in self.invoices:
            for covered in invoice.sessions_by_workload.get(session.workload_id, ()):
                if covered.up_seq != session.up_seq:
                    continue
                for priced in covered.priced:
                    found.append(
                        InvoicedRange(
                            invoice_id=str(invoice.number),
                            ref=_invoice_ref(invoice),
                            first_unit_index=priced.first,
                            count=priced.end - priced.first,
                            unit_price=priced.unit_price,
                            price_version=priced.price_version,
                            reversal=covered.reversal,
                            late=covered.unit_start(priced.first) < invoice.period_start,
                        )
                    )
        return tuple(found)


def _invoice_ref(invoice: Invoice) -> EntryRef | None:
    return EntryRef(org_log_id(invoice.org_id), invoice.sequence, invoice.entry_hash) if invoice.sequence >= 0 else None


@traced("ledger.dispute.invoices", ids=("org_id",))
def invoices_for(ledger: Any, org_id: str, refs: Sequence[tuple[int, bytes]] | None = None) -> InvoiceLookup:
    """The org's issued invoices from ledger.billing, or NoInvoices when this build has no billing package.
    `refs`: the (seq, entry_hash) of the org's INVOICE entries, when read already."""
    try:
        from ledger.billing import invoices as billing
    except ImportError:
        return NoInvoices()
    return BillingInvoices(billing.invoices_of(ledger, org_id, refs))


# -- proofs (R27): an adapter over ledger.log.proofs -----------------------------------------------------------------

PROOFS_ON_REQUEST = (
    "R27: every figure cites its entries by log, sequence and hash; for inclusion proofs of them, checkable offline, "
    "ask again with include_proofs (ledgerctl support lookup --proofs DIR)"
)


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


@traced("ledger.dispute.prove")
def prove_cited(source: Any, cited: Mapping[str, Iterable[int]]) -> tuple[tuple[EntryProofs, ...], tuple[str, ...]]:
    """Proofs of the cited entries per log, when ledger.log.proofs exists and the log has a signed checkpoint."""
    try:
        proofs = importlib.import_module("ledger.log.proofs")
    except ImportError:
        return (), ("R27: inclusion proofs are not available in this ledger build",)
    latest = getattr(source, "latest_checkpoint", None)
    if latest is None:
        return (), ("R27: this store keeps no signed checkpoints, so no inclusion proofs",)
    found: list[EntryProofs] = []
    notes: list[str] = []
    for log_id, sequences in sorted(cited.items()):
        wanted = sorted(set(sequences))
        stored = latest(log_id)
        if stored is None:
            notes.append(
                f"R27: log {log_id} has no signed checkpoint yet (the server signs them when it has a signing key)"
            )
            continue
        checkpoint = stored.signed()
        covered = [s for s in wanted if s < checkpoint.size]
        unproven = tuple(s for s in wanted if s >= checkpoint.size)
        bundle = proofs.prove_entries(source, log_id, covered, checkpoint)
        found.append(
            EntryProofs(log_id, checkpoint.size, checkpoint.root_hash, checkpoint.note, bundle.to_json(), unproven)
        )
        if unproven:
            notes.append(
                f"R27: {len(unproven)} entries of {log_id} were appended after its newest signed checkpoint "
                f"(size {checkpoint.size}); they are proven once the next checkpoint is signed"
            )
    return tuple(found), tuple(notes)


# -- what it answers ----------------------------------------------------------------------------------------------


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


# -- reconstruction -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Fact:
    """What the answer says of a cited event entry: from its body, or for a request entry the lookup did not load,
    from the rollups' pairing of the request (storage.sql.serving) next to the entry's hash from the log."""

    type: EventType
    occurred_at: int
    workload_id: str
    request_id: str | None = None
    stop_reason: StopReason | None = None

    @classmethod
    def of(cls, event: UsageEvent) -> _Fact:
        return cls(event.type, event.occurred_at, event.workload_id, event.request_id, event.stop_reason)


@dataclass
class _Evidence:
    """Entries loaded so far, and the ones the answer cites."""

    source: DisputeSource
    loaded: dict[tuple[str, int], Entry] = field(default_factory=dict)
    heads: dict[tuple[str, int], EntryHead] = field(default_factory=dict)  # read without their bodies
    hashed: dict[tuple[str, int], bytes] = field(default_factory=dict)  # event entries by their hash in the rollups
    events: dict[tuple[str, int], UsageEvent] = field(default_factory=dict)
    facts: dict[tuple[str, int], _Fact] = field(default_factory=dict)  # of every event entry loaded or headed
    cited: dict[tuple[str, int], Evidence] = field(default_factory=dict)

    def add(self, entries: Iterable[Entry]) -> list[tuple[Entry, UsageEvent | None]]:
        parsed = []
        for entry in entries:
            key = (entry.log_id, entry.sequence)
            self.loaded[key] = entry
            event = self.events.get(key)
            if event is None and entry.kind is EntryKind.EVENT:
                event = event_from_body(json.loads(entry.body))
                self.events[key] = event
                self.facts[key] = _Fact.of(event)
            parsed.append((entry, event))
        return parsed

    def add_heads(self, heads: Iterable[EntryHead], facts: Mapping[int, _Fact]) -> None:
        """Entries known by their heads and what the rollups say of them (`facts`, by sequence number)."""
        for head in heads:
            key = (head.log_id, head.sequence)
            self.heads[key] = head
            self.facts.setdefault(key, facts[head.sequence])

    def add_hashed(self, log_id: str, hashes: Mapping[int, bytes], facts: Mapping[int, _Fact]) -> None:
        """Event entries known by the hash the rollups keep of them and what the rollups say of them (`facts`),
        by sequence number: citing one needs neither its body nor its head."""
        for sequence, entry_hash in hashes.items():
            key = (log_id, sequence)
            self.hashed[key] = entry_hash
            self.facts.setdefault(key, facts[sequence])

    def head(self, log_id: str, sequence: int) -> Entry | EntryHead:
        """The entry if it was loaded, else its head: citing needs no body."""
        key = (log_id, sequence)
        found = self.loaded.get(key) or self.heads.get(key)
        if found is None:
            found = self.heads[key] = self.source.entry_head(log_id, sequence)
        return found

    def cite(self, log_id: str, sequence: int, what: str | None = None) -> EntryRef:
        key = (log_id, sequence)
        already = self.cited.get(key)
        if already is not None:  # a busy session's requests are cited from several lines
            return already.ref
        entry_hash = self.hashed.get(key)
        if entry_hash is None:
            entry = self.head(log_id, sequence)
            kind, entry_hash = entry.kind, entry.entry_hash
        else:
            kind = EntryKind.EVENT
        ref = EntryRef(log_id, sequence, entry_hash)
        fact = self.facts.get(key)
        if fact is not None:
            detail = f" {fact.request_id}" if fact.request_id else ""
            reason = f" ({fact.stop_reason.value})" if fact.stop_reason else ""
            description = what or f"{fact.type.value}{detail}{reason} of {fact.workload_id}"
            self.cited[key] = Evidence(
                ref, kind, description, fact.occurred_at, fact.workload_id, fact.request_id, fact.type
            )
        else:
            self.cited[key] = Evidence(ref, kind, what or kind.value)
        return ref


@dataclass(frozen=True)
class _Target:
    org_id: str
    endpoint_id: str
    start: int
    end: int
    request_workload: str | None
    request_span: tuple[int, int, bool] | None = None  # first and last event of the request, and whether it finished
    request_id: str | None = None


@traced("ledger.dispute.rebuild")
def reconstruct(
    source: DisputeSource,
    prices: PriceHistory,
    query: DisputeQuery,
    now: int,
    *,
    invoices: Callable[[str], InvoiceLookup] | None = None,
    index: Callable[[str], SessionIndex] | None = None,
    account_entries: Sequence[Entry] | None = None,
    adjustment_entries: Sequence[Entry] | None = None,
) -> Reconstruction:
    """Rebuild every charge of the query's endpoint in its window (or of its request) from ledger entries (R27).

    `now` bounds open sessions (R10). `invoices(org_id)` says where each charge was invoiced (default: nowhere yet).
    `index(org_id)`, when given, is the org's rollups: sessions are then rated from their lifecycle entries and the
    requests near the window, with the R25 split from the rollups' serving union, so a lookup reads a bounded
    number of entries however long the sessions are. Without it every entry of each workload is read.
    `account_entries`, when given, are the org's ACCOUNT entries (read already for the rollups' catch-up), and
    `adjustment_entries` its ADJUSTMENT entries (read with them).
    """
    query.check()
    evidence = _Evidence(source)
    target = _resolve(source, query, evidence, now)
    org_id, endpoint_id, start, end = target.org_id, target.endpoint_id, target.start, target.end
    log_id = org_log_id(org_id)
    lookup = invoices(org_id) if invoices is not None else NoInvoices()

    if account_entries is None:  # else the caller read them (for the rollups' catch-up)
        account_entries = source.entries_of_kind(log_id, [EntryKind.ACCOUNT.value])
    evidence.add(account_entries)
    plans = _plans_of(account_entries)
    if index is not None:
        indexed = _IndexedRating(source, index(org_id), evidence, prices, plans, now, target)  # type: ignore[arg-type]
        by_workload, ratings = indexed.rate()
        in_window, indexed_storage, listing = indexed.in_window, indexed.storage, indexed.listing
    else:
        by_workload = _whole_workloads(source, evidence, target)
        running = source.running_evidence(log_id, list(by_workload))
        ratings = {
            w: rate_workload(events, prices, plans, known_evidence=_known(running, w), as_of=now)
            for w, events in sorted(by_workload.items())
        }
        in_window, indexed_storage = {}, []
        listing = _listed_requests(ratings, endpoint_id, start, end, now)

    sessions: list[SessionCharge] = []
    zero_lines: list[ZeroCharge] = []
    storage: list[StorageLine] = []
    anomalies: list[AnomalyLine] = []
    spans: list[tuple[int, int, tuple[EntryRef, ...], tuple[EntryRef, ...]]] = []  # for R9 gaps
    listed: set[str] = set()
    for workload_id, rating in ratings.items():
        session = rating.session
        if _shown_session(session, endpoint_id, start, end, now):
            assert session is not None  # _shown_session
            count = in_window.get(workload_id)
            sessions.append(
                _session_charge(
                    session, rating, evidence, lookup, log_id, start, end, now, listing.get(workload_id, ()), count
                )
            )
            listed.add(workload_id)
            spans.append(
                (
                    session.up,
                    _end_of(session, now),
                    (evidence.cite(log_id, session.up_seq),),
                    _stop_refs(session, evidence, log_id),
                )
            )
        for line in rating.zero_lines:
            line_end = line.end if line.end is not None else (now if line.rule == "R8" else line.start)
            if line.endpoint_id != endpoint_id or not _overlaps(line.start, line_end, start, end):
                continue
            zero_lines.append(_zero_charge(line, evidence, log_id))
            listed.add(workload_id)
            if line.rule == "R8":
                refs = tuple(evidence.cite(log_id, s) for s in line.seqs)
                spans.append((line.start, line_end, refs[:1], refs[-1:] if line.end is not None else ()))
    # R13, R14: the rollups' storage intervals of the endpoint (with an index), and those of workloads read whole.
    charges = {charge.seq: charge for rating in ratings.values() for charge in rating.storage}
    charges.update((charge.seq, charge) for charge in indexed_storage)
    for charge in charges.values():
        if charge.endpoint_id == endpoint_id and charge.start < end and charge.end > start:
            ref = evidence.cite(log_id, charge.seq)
            storage.append(StorageLine(charge, ref, lookup.storage(charge)))
    for workload_id, rating in ratings.items():
        for anomaly in rating.anomalies:
            if anomaly.endpoint_id == endpoint_id and (start <= anomaly.occurred_at <= end or workload_id in listed):
                anomalies.append(AnomalyLine(anomaly, evidence.cite(log_id, anomaly.seq)))
    zero_lines.extend(_scaled_to_zero(endpoint_id, spans, start, min(end, now)))

    request = None
    if query.request_id is not None:
        request = _request_charge(query.request_id, target.request_workload, ratings, evidence, log_id)

    reconstructed = {(ref.log_id, ref.sequence) for ref in (e.ref for e in evidence.cited.values())}
    for workload_id in listed:
        reconstructed.update((log_id, seq) for _, seq in by_workload.get(workload_id, ()))
    if adjustment_entries is None:
        adjustment_entries = source.entries_of_kind(log_id, [EntryKind.ADJUSTMENT.value])
    adjustments = _adjustments(
        source, evidence, lookup, log_id, adjustment_entries, reconstructed, listed if index is not None else None
    )

    invoice_ids = sorted(
        {u.invoice.invoice_id for s in sessions for u in s.units if u.invoice.invoice_id}
        | {line.invoice.invoice_id for line in storage if line.invoice.invoice_id}
        | {line.invoice.invoice_id for line in adjustments if line.invoice.invoice_id}
        | {r.invoice_id for s in sessions for r in s.invoiced}  # R22: an invoice that only took units back
    )
    summaries = []
    for invoice_id in invoice_ids:
        summary = lookup.summary(invoice_id)
        if summary is not None and summary.ref is not None:
            ref = summary.ref
            evidence.cite(ref.log_id, ref.sequence, f"INVOICE #{invoice_id} (R17)")
            summary = dataclasses.replace(summary, issued_at=evidence.head(ref.log_id, ref.sequence).recorded_at)
        if summary is not None:
            summaries.append(summary)
    notes = []
    if isinstance(lookup, NoInvoices):
        notes.append("R17: no invoice covers these charges yet (or invoicing is not enabled on this ledger)")
    sessions.sort(key=lambda s: (s.session.up, s.session.up_seq))
    zero_lines.sort(key=lambda z: (z.start, z.refs[0].sequence if z.refs else -1))
    storage.sort(key=lambda line: (line.charge.start, line.charge.seq))
    anomalies.sort(key=lambda line: line.anomaly.seq)
    return Reconstruction(
        org_id=org_id,
        endpoint_id=endpoint_id,
        request_id=query.request_id,
        start=start,
        end=end,
        as_of=now,
        sessions=tuple(sessions),
        zero_lines=tuple(zero_lines),
        storage=tuple(storage),
        anomalies=tuple(anomalies),
        adjustments=tuple(adjustments),
        request=request,
        entries=tuple(sorted(evidence.cited.values(), key=lambda e: (e.ref.log_id, e.ref.sequence))),
        invoices=tuple(summaries),
        notes=tuple(notes),
    )


def _resolve(source: DisputeSource, query: DisputeQuery, evidence: _Evidence, now: int) -> _Target:
    """The org, endpoint and window of a query: given, or found from the request (ix_entries_request)."""
    window = query.window()
    if query.request_id is None:
        assert query.endpoint_id is not None and window is not None  # DisputeQuery.check
        org_id = query.org_id or _org_of_endpoint(source, query.endpoint_id)
        return _Target(org_id, query.endpoint_id, window[0], window[1], None)

    found = evidence.add(source.request_entries(query.request_id, query.org_id))
    events = [(entry, event) for entry, event in found if event is not None]
    if not events:
        where = f" in org {query.org_id}'s log" if query.org_id else ""
        raise NotFound(f"R27: no entry names request {query.request_id}{where}")
    orgs = sorted({event.org_id for _, event in events})
    if len(orgs) > 1:
        raise InvalidInput(
            [FieldViolation("org_id", f"request {query.request_id} is in the logs of orgs {', '.join(orgs)}: give one")]
        )
    org_id = orgs[0]
    events.sort(key=lambda item: (item[1].type is not EventType.REQUEST_STARTED, item[1].occurred_at, item[0].sequence))
    first = events[0][1]
    if query.endpoint_id is not None and query.endpoint_id != first.endpoint_id:
        raise InvalidInput(
            [
                FieldViolation(
                    "endpoint_id",
                    f"request {query.request_id} ran on endpoint {first.endpoint_id} "
                    f"(entry {events[0][0].log_id}#{events[0][0].sequence}), not {query.endpoint_id}",
                )
            ]
        )
    span = (
        min(event.occurred_at for _, event in events),
        max(event.occurred_at for _, event in events),
        any(event.type is EventType.REQUEST_FINISHED for _, event in events),
    )
    if window is None:
        window = _request_window(source, evidence, org_id, first, events, now)
    return _Target(org_id, first.endpoint_id, window[0], window[1], first.workload_id, span, query.request_id)


def _request_window(
    source: DisputeSource,
    evidence: _Evidence,
    org_id: str,
    first: UsageEvent,
    events: Sequence[tuple[Entry, UsageEvent]],
    now: int,
) -> tuple[int, int]:
    """A request's time in flight: its start to its finish, or (never finished) to its session's end (R4)."""
    start = min(event.occurred_at for _, event in events)
    finish = max(event.occurred_at for _, event in events)
    if not any(event.type is EventType.REQUEST_FINISHED for _, event in events):
        log_id = org_log_id(org_id)
        loaded = evidence.add(source.workload_entries(log_id, [first.workload_id]))
        stop = [
            event.occurred_at
            for _, event in loaded
            if event is not None
            and event.type in (EventType.WORKLOAD_STOPPED, EventType.WORKLOAD_BOOT_FAILED)
            and event.occurred_at >= start
        ]
        finish = min(stop) if stop else max(now, start)
    return start, max(finish, start + 1)


def _org_of_endpoint(source: DisputeSource, endpoint_id: str) -> str:
    orgs = source.endpoint_orgs(endpoint_id)
    if not orgs:
        raise NotFound(f"R27: no org's log has entries of endpoint {endpoint_id}")
    if len(orgs) > 1:
        raise InvalidInput(
            [FieldViolation("org_id", f"endpoint {endpoint_id} is in the logs of orgs {', '.join(orgs)}: give one")]
        )
    return orgs[0]


_STORAGE_TYPE = b'"type":"STORAGE_SAMPLE"'
_OCCURRED_AT = b'"occurred_at":"'
_INTERVAL = b'"interval_seconds":'


def _storage_outside(entry: Entry, start: int, end: int) -> bool:
    """A STORAGE_SAMPLE entry whose interval misses the window, told from its canonical body without parsing it
    (most of a long session's entries besides requests): the fields are written in one fixed form."""
    body = entry.body
    if _STORAGE_TYPE not in body:
        return False
    at = body.find(_OCCURRED_AT)
    found = body.find(_INTERVAL)
    if at < 0 or found < 0:
        return False  # not the canonical form: parse it the slow way
    occurred = parse_rfc3339_micros(body[at + len(_OCCURRED_AT) : body.index(b'"', at + len(_OCCURRED_AT))].decode())
    digits = body[found + len(_INTERVAL) :].split(b",", 1)[0].split(b"}", 1)[0]
    return not (occurred > start and occurred - int(digits) * MICROS_PER_SECOND < end)


def _storage_overlaps(event: UsageEvent, start: int, end: int) -> bool:
    """Whether a STORAGE_SAMPLE's interval (ending at occurred_at, R13, R14) meets the window [start, end)."""
    if event.type is not EventType.STORAGE_SAMPLE:
        return False
    interval = event.interval_seconds if event.interval_seconds is not None else DEFAULT_STORAGE_INTERVAL_SECONDS
    return event.occurred_at > start and event.occurred_at - interval * MICROS_PER_SECOND < end


def _overlaps(a_start: int, a_end: int, start: int, end: int) -> bool:
    """[a_start, a_end] meets the window [start, end) (an instant event at `start` counts)."""
    return a_start < end and a_end >= start


def _end_of(session: Session, now: int) -> int:
    return session.stop if session.stop is not None else max(now, session.up)


def _stop_refs(session: Session, evidence: _Evidence, log_id: str) -> tuple[EntryRef, ...]:
    seq = session.stop_seq if session.stop_seq is not None else session.boot_failed_seq
    return (evidence.cite(log_id, seq),) if seq is not None else ()


def _session_charge(
    session: Session,
    rating: WorkloadRating,
    evidence: _Evidence,
    lookup: InvoiceLookup,
    log_id: str,
    start: int,
    end: int,
    now: int,
    listed: Sequence[RequestAttribution],
    requests_in_window: int | None = None,
) -> SessionCharge:
    """`listed`: the session's requests the answer lists (_listed_requests). `requests_in_window`: how many
    requests were in flight in the window, when the session's split carries shares only for those the answer lists
    (the rollup-backed lookup)."""
    refs = tuple(evidence.cite(log_id, seq) for seq in session.entry_seqs)
    plan_ref = (
        evidence.cite(log_id, session.plan_version, "ACCOUNT: plan granularity (R10)")
        if session.plan_version is not None
        else None
    )
    in_window = _requests_in_window(session, start, end)
    requests = tuple(_attributed(session, r, evidence, log_id) for r in listed)
    timeline = _timeline(session, rating, evidence, log_id, requests)
    units = tuple(_unit_charges(session, lookup, evidence))
    verdict = Verdict.BILLED if session.amount > 0 else Verdict.NOT_BILLED
    return SessionCharge(
        session=session,
        verdict=verdict,
        timeline=timeline,
        parts=_parts(session, now),
        units=units,
        requests=requests,
        request_count=session.attribution.request_count if session.attribution is not None else 0,
        requests_in_window=len(in_window) if requests_in_window is None else requests_in_window,
        window_amount=session.usage_in(start, end).compute_amount,
        refs=refs,
        plan_ref=plan_ref,
        invoiced=lookup.invoiced_ranges(session),
    )


def _shown_session(session: Session | None, endpoint_id: str, start: int, end: int, now: int) -> bool:
    """Whether the answer lists this session: one of the endpoint's, overlapping the window."""
    return (
        session is not None
        and session.endpoint_id == endpoint_id
        and _overlaps(session.up, _end_of(session, now), start, end)
    )


def _listed_requests(
    ratings: Mapping[str, WorkloadRating], endpoint_id: str, start: int, end: int, now: int
) -> dict[str, list[RequestAttribution]]:
    """The requests the answer lists, by workload: the first MAX_LISTED_REQUESTS in flight in the window across the
    endpoint's sessions, by start and then entry, each in start order under its session (R27)."""
    found = []
    for workload_id, rating in ratings.items():
        session = rating.session
        if _shown_session(session, endpoint_id, start, end, now):
            assert session is not None  # _shown_session
            found += [((r.started_at, r.started_seq), workload_id, r) for r in _requests_in_window(session, start, end)]
    found.sort(key=lambda item: item[0])
    listing: dict[str, list[RequestAttribution]] = {}
    for _, workload_id, request in found[:MAX_LISTED_REQUESTS]:
        listing.setdefault(workload_id, []).append(request)
    return listing


def _requests_in_window(session: Session, start: int, end: int) -> list[RequestAttribution]:
    """The session's requests in flight at some point of the window, by start (R3, R25)."""
    if session.attribution is None:
        return []
    return [r for r in session.attribution.requests if _overlaps(r.started_at, r.in_flight_to, start, end)]


def _attributed(session: Session, attributed: RequestAttribution, evidence: _Evidence, log_id: str) -> RequestCharge:
    seqs = [attributed.started_seq] + ([attributed.finished_seq] if attributed.finished_seq is not None else [])
    refs = tuple(evidence.cite(log_id, seq) for seq in seqs)
    rules: tuple[str, ...] = ("R3", "R25")
    micros, amount = attributed.attributed_micros, attributed.attributed_amount
    seconds_text, seconds_exact = ratio_text(micros.numerator, micros.denominator * 1_000_000)
    amount_text, amount_exact = ratio_text(amount.numerator, amount.denominator)
    explanation = attributed.explain(
        seconds_text if seconds_exact else format_seconds(micros),
        "$" + amount_text if amount_exact else format_money(amount),
    )
    killed = attributed.finished_seq is None and session.stop is not None
    if killed:
        rules = ("R3", "R4", "R25")
        reason = session.stop_reason.value if session.stop_reason else "a stop"
        explanation += (
            f"; R4: the workload stopped ({reason}) at {format_micros(session.stop or 0)} with the request in flight, "
            "so it is billed up to that instant"
        )
    return RequestCharge(
        request_id=attributed.request_id,
        workload_id=session.workload_id,
        endpoint_id=session.endpoint_id,
        started_at=attributed.started_at,
        finished_at=attributed.finished_at,
        in_flight_from=attributed.in_flight_from,
        in_flight_to=attributed.in_flight_to,
        attributed_micros=attributed.attributed_micros,
        attributed_amount=attributed.attributed_amount,
        rules=rules,
        explanation=explanation,
        refs=refs,
        session_stop_reason=session.stop_reason if killed else None,
        attributed_seconds_text=seconds_text,
        attributed_amount_text=amount_text,
        attributed_amount_exact=amount_exact,
    )


def _timeline(
    session: Session,
    rating: WorkloadRating,
    evidence: _Evidence,
    log_id: str,
    requests: Sequence[RequestCharge],
) -> tuple[TimelineStep, ...]:
    steps: list[TimelineStep] = []

    def step(seq: int, verdict: Verdict, rule: str, explanation: str) -> None:
        fact = evidence.facts[(log_id, seq)]
        steps.append(
            TimelineStep(
                fact.occurred_at,
                fact.type,
                verdict,
                rule,
                explanation,
                evidence.cite(log_id, seq),
                fact.request_id,
                fact.stop_reason,
            )
        )

    for line in rating.zero_lines:
        if line.rule == "R1":
            step(line.seqs[0], Verdict.NOT_BILLED, "R1", line.explanation)
    step(session.up_seq, Verdict.BILLED, "R1", f"R1: observed up: metering starts (entry #{session.up_seq})")
    if session.ready_seq is not None:
        cold = format_seconds(max(0, (session.ready or session.up) - session.up))
        step(
            session.ready_seq,
            Verdict.BILLED,
            "R2",
            f"R2: ready after a {cold} s cold start (model load), billed at the same rate; R25: cold start ends here",
        )
    for request in requests:
        in_flight = f"{format_micros(request.in_flight_from or 0)} to {format_micros(request.in_flight_to or 0)}"
        started, *finished = [ref.sequence for ref in request.refs]
        step(started, Verdict.BILLED, "R3", f"R3: request {request.request_id} started: serving ({in_flight})")
        if finished:
            step(finished[0], Verdict.BILLED, "R3", f"R3: request {request.request_id} finished")
    if session.stop_seq is not None:
        reason = session.stop_reason.value if session.stop_reason else "no reason"
        step(
            session.stop_seq,
            Verdict.BILLED,
            "R4",
            f"R4: stopped ({reason}): billed up to this instant; R10: the last partial "
            f"{session.granularity.unit_name()} is rounded up",
        )
    elif session.boot_failed_seq is not None:
        step(
            session.boot_failed_seq,
            Verdict.BILLED,
            "R5",
            "R5: boot failed after the workload was observed up: the session ends here like a stop with reason CRASH",
        )
    steps.sort(key=lambda s: (s.at, s.ref.sequence))
    return tuple(steps)


def _parts(session: Session, now: int) -> tuple[ChargePart, ...]:
    """The billed quantity split by the rule that bills each part; the parts add up to the session (R25)."""
    unit = session.granularity.unit_name()
    ended = "the stop" if session.stop is not None else f"now ({format_micros(now)})"
    split = session.attribution
    if split is not None:
        return (
            ChargePart(
                "cold_start",
                split.cold_start_micros,
                split.cold_start_amount,
                ("R2", "R25"),
                "R2: model load between UP and READY, billed at the same rate",
            ),
            ChargePart(
                "serving",
                split.serving_micros,
                split.serving_amount,
                ("R3", "R25"),
                f"R3: at least one request in flight; shared by {split.request_count} request(s) (R25)",
            ),
            ChargePart(
                "idle",
                split.idle_micros,
                split.idle_amount,
                ("R3", "R25"),
                "R3: ready and no request in flight (a warm replica, or the idle wait before scale-down)",
            ),
            ChargePart(
                "rounding",
                split.rounding_micros,
                split.rounding_amount,
                ("R10", "R25"),
                f"R10: billed past {ended}: the session's last partial {unit} rounded up",
            ),
        )
    # An open session bills its units as they start (R10), so it has no rounding yet.
    metered_micros = session.duration_micros if session.stop is not None else session.billed_micros
    metered = money_between(session.runs, session.up, session.up + metered_micros)
    name, rule, why = (
        ("build", "R6", "R6: the image build, billed from UP to STOPPED whether it succeeds or fails")
        if session.workload_kind is WorkloadKind.BUILD
        else ("training", "R7", "R7: training, billed wall-clock from UP to STOPPED")
    )
    return (
        ChargePart(name, metered_micros, metered, (rule,), why),
        ChargePart(
            "rounding",
            session.billed_micros - metered_micros,
            exact_sum([session.amount, -metered]),
            ("R10",),
            f"R10: billed past {ended}: the session's last partial {unit} rounded up",
        ),
    )


def _unit_charges(session: Session, lookup: InvoiceLookup, evidence: _Evidence) -> list[UnitCharge]:
    """The session's unit runs split where the invoice covering their units changes (R17, R22)."""
    charges: list[UnitCharge] = []
    for run in session.runs:
        price_ref = evidence.cite(SYSTEM_LOG, run.price_version, f"PRICE_BOOK v{run.price_version} (R11, R12)")
        last = run.first_unit_index + run.count - 1
        for lo, hi, coverage in _invoice_pieces(session, run.first_unit_index, last, lookup):
            part = run.clip(run.unit_start(lo), run.unit_start(hi) + run.unit_micros)
            if part is not None:
                charges.append(UnitCharge(part, price_ref, coverage))
    return charges


def _invoice_pieces(
    session: Session, lo: int, hi: int, lookup: InvoiceLookup
) -> list[tuple[int, int, InvoiceCoverage]]:
    """Units lo..hi of a session grouped by the invoice covering them, in unit order.

    A session's units are invoiced in order (R10: each as it starts; R22: late ones on the next invoice), so equal
    coverage at both ends of a range means the whole range, and a run splits at a few points found by bisection
    instead of one lookup per unit (a day of per-second units is 86,400 of them).
    """
    pieces: list[tuple[int, int, InvoiceCoverage]] = []
    stack = [(lo, hi, lookup.unit(session, lo), lookup.unit(session, hi))]
    while stack:
        a, b, first, last = stack.pop()
        if first == last:
            pieces.append((a, b, first))
        elif b - a == 1:
            pieces.extend([(a, a, first), (b, b, last)])
        else:
            middle = (a + b) // 2
            stack.append((middle + 1, b, lookup.unit(session, middle + 1), last))  # popped after the left half
            stack.append((a, middle, first, lookup.unit(session, middle)))
    merged: list[tuple[int, int, InvoiceCoverage]] = []
    for piece in pieces:
        if merged and merged[-1][2] == piece[2] and merged[-1][1] + 1 == piece[0]:
            merged[-1] = (merged[-1][0], piece[1], piece[2])
        else:
            merged.append(piece)
    return merged


def _zero_charge(line: ZeroLine, evidence: _Evidence, log_id: str) -> ZeroCharge:
    refs = tuple(evidence.cite(log_id, seq) for seq in line.seqs)
    return ZeroCharge(line.rule, line.start, line.end, line.explanation, refs, line.workload_id, line.event_type, line)


def _scaled_to_zero(
    endpoint_id: str,
    spans: Sequence[tuple[int, int, tuple[EntryRef, ...], tuple[EntryRef, ...]]],
    start: int,
    end: int,
) -> list[ZeroCharge]:
    """R9: the stretches of the window in which no workload of the endpoint was up: no session, no charge."""
    gaps: list[ZeroCharge] = []
    cursor = start
    before: tuple[EntryRef, ...] = ()
    for up, stop, up_refs, stop_refs in sorted(spans, key=lambda s: (s[0], s[1])):
        if up > cursor and cursor < end:
            gaps.append(_gap(endpoint_id, cursor, min(up, end), before + up_refs))
        if stop >= cursor:
            cursor, before = stop, stop_refs
    if cursor < end:
        gaps.append(_gap(endpoint_id, cursor, end, before))
    return gaps


def _gap(endpoint_id: str, start: int, end: int, refs: tuple[EntryRef, ...]) -> ZeroCharge:
    bounds = ", ".join(f"entry {r.log_id}#{r.sequence}" for r in refs)
    shown = f" (between {bounds})" if bounds else ""
    return ZeroCharge(
        "R9",
        start,
        end,
        f"R9: no workload of {endpoint_id} was up from {format_micros(start)} to {format_micros(end)}{shown}: "
        "scaled to zero, no session, no charge",
        refs,
    )


def _request_charge(
    request_id: str,
    workload_id: str | None,
    ratings: Mapping[str, WorkloadRating],
    evidence: _Evidence,
    log_id: str,
) -> RequestCharge:
    rating = ratings.get(workload_id or "")
    if rating is not None and rating.session is not None and rating.session.attribution is not None:
        for attributed in rating.session.attribution.requests:
            if attributed.request_id == request_id:
                return _attributed(rating.session, attributed, evidence, log_id)
    # Not part of a billed session: a development workload (R8) or an anomaly (R26).
    seqs = sorted(
        seq for (log, seq), event in evidence.events.items() if log == log_id and event.request_id == request_id
    )
    refs = tuple(evidence.cite(log_id, seq) for seq in seqs)
    times = [evidence.events[(log_id, seq)].occurred_at for seq in seqs]
    development = rating is not None and any(z.rule == "R8" for z in rating.zero_lines)
    rule, why = (
        ("R8", f"R8: request {request_id} ran on development workload {workload_id}, which is never billed")
        if development
        else (
            "R26",
            f"R26: request {request_id}'s events contradict workload {workload_id}'s lifecycle; kept, charged nothing",
        )
    )
    return RequestCharge(
        request_id=request_id,
        workload_id=workload_id or "",
        endpoint_id=rating.session.endpoint_id if rating is not None and rating.session is not None else "",
        started_at=min(times) if times else None,
        finished_at=max(times) if len(times) > 1 else None,
        in_flight_from=None,
        in_flight_to=None,
        attributed_micros=Fraction(0),
        attributed_amount=Fraction(0),
        rules=(rule,),
        explanation=why,
        refs=refs,
    )


@traced("ledger.dispute.adjustments")
def _adjustments(
    source: DisputeSource,
    evidence: _Evidence,
    lookup: InvoiceLookup,
    log_id: str,
    adjustment_entries: Sequence[Entry],
    reconstructed: set[tuple[str, int]],
    listed: set[str] | None = None,
) -> list[AdjustmentLine]:
    """R23: the adjustments (the org's ADJUSTMENT entries) citing any entry behind this reconstruction.

    With `listed` (the rollup-backed lookup, which reads only the requests near the window), an adjustment citing
    any other entry of a listed workload counts too: its cited entries are read to tell their workload.
    """
    lines = []
    found = [(entry, Adjustment.from_body(entry.body_json(), entry.sequence)) for entry in adjustment_entries]
    if listed:
        unknown = sorted(
            {r.sequence for _, a in found for r in a.corrects if r.log_id == log_id}
            - {seq for log, seq in reconstructed if log == log_id}
        )
        if unknown:
            indexed: IndexedSource = source  # type: ignore[assignment]
            for cited, event in evidence.add(indexed.entries_at(log_id, unknown)):
                if event is not None and event.workload_id in listed:
                    reconstructed = reconstructed | {(log_id, cited.sequence)}
    for entry, adjustment in found:
        here = tuple(r for r in adjustment.corrects if (r.log_id, r.sequence) in reconstructed)
        if not here:
            continue
        evidence.add([entry])
        ref = evidence.cite(entry.log_id, entry.sequence, f"ADJUSTMENT ticket {adjustment.ticket} (R23)")
        lines.append(AdjustmentLine(adjustment, ref, lookup.adjustment(entry.sequence), here))
    return lines


# -- which entries a reconstruction reads ------------------------------------------------------------------------

LoggedEvents = dict[str, list[tuple[UsageEvent, int]]]


def _whole_workloads(source: DisputeSource, evidence: _Evidence, target: _Target) -> LoggedEvents:
    """Every entry of each workload touching the window (the reads of a store without rollups)."""
    org_id, endpoint_id, start, end = target.org_id, target.endpoint_id, target.start, target.end
    # 1. The endpoint's entries in the window (and just after it, for storage samples covering its end).
    workloads: set[str] = set()
    for _entry, event in evidence.add(
        source.endpoint_window_entries(org_id, endpoint_id, start, end + STORAGE_LOOKAHEAD)
    ):
        if event is not None and (event.occurred_at <= end or _storage_overlaps(event, start, end)):
            workloads.add(event.workload_id)
    # 2. Sessions up across the whole window with no entry inside it (a long idle replica, R3).
    workloads.update(source.live_workloads(org_id, endpoint_id, start))
    if target.request_workload is not None:
        workloads.add(target.request_workload)
    # 3. Every entry of those workloads, so each is rated whole (R10 rounds per session, R25 needs every request).
    # Storage samples outside the window are left out: they change no session, zero line or anomaly (R13, R14).
    by_workload: LoggedEvents = defaultdict(list)
    log_id = org_log_id(org_id)
    loaded = [e for e in source.workload_entries(log_id, sorted(workloads)) if not _storage_outside(e, start, end)]
    for entry, event in evidence.add(loaded):
        if event is None or event.workload_id not in workloads:
            continue
        if event.type is EventType.STORAGE_SAMPLE and not _storage_overlaps(event, start, end):
            continue
        by_workload[event.workload_id].append((event, entry.sequence))
    # 4. A sample covers up to 31 days before its occurred_at (R13, R14): the endpoint's samples after the lookahead
    # that still reach back into the window, of workloads not read whole.
    later = source.endpoint_window_entries(
        org_id, endpoint_id, end + STORAGE_LOOKAHEAD + 1, end + MAX_INTERVAL_SECONDS * MICROS_PER_SECOND
    )
    reaching = [e for e in later if _STORAGE_TYPE in e.body and not _storage_outside(e, start, end)]
    for entry, event in evidence.add(reaching):
        if event is not None and event.workload_id not in workloads and _storage_overlaps(event, start, end):
            by_workload[event.workload_id].append((event, entry.sequence))
    return by_workload


class _IndexedRating:
    """Rate the workloads touching a window from their lifecycle entries and the requests near the window.

    A long replica's R25 split needs the union of all its requests' in-flight time; the rollups keep that union
    (storage.sql.serving), so only requests that can share an instant with a request in the window are read:
    with D the workload's longest request, a request overlapping [start, end] starts after start - D, and any
    request overlapping that one starts after start - 2D and finishes before end + 2D. Requests still in flight
    (no finish) run to the session's end, so their starts are always read, and so is the range they cover when
    they reach into the window. A workload whose requests are not regular (a request started twice, a finish
    with no start, a request before UP), which the engine turns into R26 anomalies, is read whole; request
    events after the stop (anomalies too, but adding no serving time) are read alone, for the engine to list.
    """

    def __init__(
        self,
        source: IndexedSource,
        index: SessionIndex,
        evidence: _Evidence,
        prices: PriceHistory,
        plans: Any,
        now: int,
        target: _Target,
    ) -> None:
        self.source = source
        self.index = index
        self.evidence = evidence
        self.prices = prices
        self.plans = plans
        self.now = now
        self.target = target
        self.log_id = org_log_id(target.org_id)
        self.running: tuple[int | None, dict[str, int]] = (None, {})
        self.in_window: dict[str, int] = {}  # requests in flight in the window, by workload (only some have shares)
        self.storage: list[StorageCharge] = []  # the endpoint's storage intervals meeting the window (R13, R14)
        self.request_hashes: dict[int, bytes] = {}  # entry hashes of the requests read from the rollups, by seq
        self.listing: dict[str, list[RequestAttribution]] = {}  # the requests the answer lists (_listed_requests)

    def _rate(self, events: list[tuple[UsageEvent, int]], workload_id: str) -> WorkloadRating:
        return rate_workload(events, self.prices, self.plans, known_evidence=self.known(workload_id), as_of=self.now)

    def known(self, workload_id: str) -> int | None:
        """R28: the evidence of running a workload's kept events may not show (its requests, samples, HEARTBEATs)."""
        return _known(self.running, workload_id)

    @traced("ledger.dispute.rate_sessions")
    def rate(self) -> tuple[LoggedEvents, dict[str, WorkloadRating]]:
        target, log_id = self.target, self.log_id
        start, end = target.start, target.end
        # Those with an entry of the endpoint in the window or the storage lookahead after it (as the whole read
        # takes them), and those up across the window with no entry inside it (R3), each with its lifecycle and
        # request summary. With them, the endpoint's storage intervals meeting the window (step 0): one round trip.
        window, storage = self.index.window_lifecycles_and_storage(
            target.org_id, target.endpoint_id, start, end, end + STORAGE_LOOKAHEAD
        )
        lifecycles, hashes, summaries = window.lifecycles, window.hashes, window.summaries
        ids = window.workload_ids
        request_workload = target.request_workload
        if request_workload is not None and request_workload not in ids:  # its entries lie outside the window: rare
            ids = sorted([*ids, request_workload])
            more, more_hashes, more_summaries = self.index.lifecycles_and_summaries(log_id, [request_workload])
            lifecycles, hashes, summaries = (
                {**lifecycles, **more},
                {**hashes, **more_hashes},
                {**summaries, **more_summaries},
            )
        # R28: how far each one is proven running, the asked request's workload included: read before it was added,
        # its open session was rated to its lifecycle entries alone, so an unfinished request (in flight to the
        # session's end, R25) ended earlier than the reading of every entry has it.
        self.running = self.source.running_evidence(log_id, ids)
        # The lifecycle events as the rollups keep them, cited by the entry hashes kept with them (R27).
        kept_events = {seq: event for w in ids for event, seq in lifecycles.get(w, ())}
        self.evidence.add_hashed(log_id, hashes, {seq: _Fact.of(event) for seq, event in kept_events.items()})
        self.evidence.events.update(((log_id, seq), event) for seq, event in kept_events.items())
        near = [w for w in ids if lifecycles.get(w) and summaries.get(w, RequestSummary()).regular]
        whole = [w for w in ids if w not in near]

        # 0. The endpoint's storage intervals meeting the window, rated by the rollups and cited by the hashes they
        # keep (R13, R14): no sample is read. Storage changes no session, zero line or anomaly.
        storage_hashes: dict[int, bytes] = {}
        storage_facts: dict[int, _Fact] = {}
        for charge, entry_hash in storage:
            self.storage.append(charge)
            storage_hashes[charge.seq] = entry_hash
            storage_facts[charge.seq] = _Fact(EventType.STORAGE_SAMPLE, charge.end, charge.workload_id)
        self.evidence.add_hashed(log_id, storage_hashes, storage_facts)

        # 1. Each workload from its lifecycle.
        by_workload: LoggedEvents = {}
        ratings: dict[str, WorkloadRating] = {}
        sessions: dict[str, tuple[Session, Attribution, RequestSummary, tuple[int, int], int]] = {}
        for workload_id in near:
            summary = summaries.get(workload_id, RequestSummary())
            kept = list(lifecycles[workload_id])
            base = self._rate(kept, workload_id)
            session = base.session
            development_stop = _development_stop(base, kept, summary)
            if (summary.count == 0 and not summary.in_flight) or _development_quiet(base, kept, summary):
                by_workload[workload_id], ratings[workload_id] = kept, base  # its requests change nothing
            elif development_stop is not None and summary.last_at is not None:
                # A development workload (R8) with request events after its stop: only those make anything (R26
                # anomalies), so they are read alone, as a serving session's late ones are below.
                self._add_late_requests(workload_id, kept, development_stop, summary.last_at)
                by_workload[workload_id] = kept
                ratings[workload_id] = rate_workload(
                    kept, self.prices, self.plans, known_evidence=self.known(workload_id), as_of=self.now
                )
            elif (
                session is None
                or session.attribution is None
                or kept[0][0].workload_kind is not WorkloadKind.SERVING
                or not summary.within(session.up, None)
            ):
                whole.append(workload_id)  # requests the engine would call anomalies (R26): let it see them all
            else:
                late_starts = 0
                if session.stop is not None and summary.last_at is not None and summary.last_at > session.stop:
                    # Request events after the stop (a finish logged after the replica died, R4): R26 anomalies
                    # the engine must see to list them. They add no serving: the split ends at the stop.
                    late_starts = self._add_late_requests(workload_id, kept, session.stop, summary.last_at)
                    base = rate_workload(
                        kept, self.prices, self.plans, known_evidence=self.known(workload_id), as_of=self.now
                    )
                    session = base.session
                if session is None or session.attribution is None:  # the lifecycle decided both: cannot happen
                    raise AssertionError(f"{workload_id}: the session changed with its late request events")
                by_workload[workload_id], ratings[workload_id] = kept, base
                reach = self._reach(workload_id, session, summary)
                sessions[workload_id] = (session, session.attribution, summary, reach, late_starts)

        # 2. Their requests near the window and their serving unions (one read each for all of them), and the
        # R25 split over every request in place of the lifecycle-only one.
        if sessions:
            spans = {}
            for workload_id, (session, lifecycle_split, *_) in sessions.items():
                end_at = session.up + session.billed_micros - lifecycle_split.rounding_micros  # where the engine splits
                spans[workload_id] = (cold_start_end(session.up, session.ready, end_at), end_at)
            picked = self._requests_to_sweep(sessions, spans)
            for workload_id, (session, _, summary, _reach, late_starts) in sessions.items():
                sweep, shown = picked[workload_id]
                union = self.index.serving_union(log_id, workload_id, summary)
                split = self._whole_split(session, summary, sweep, shown, spans[workload_id], union, late_starts)
                session = dataclasses.replace(session, attribution=split)
                ratings[workload_id] = dataclasses.replace(ratings[workload_id], session=session)

        # 3. Workloads read whole.
        if whole:
            loaded = [e for e in self.source.workload_entries(log_id, whole) if not _storage_outside(e, start, end)]
            read: LoggedEvents = defaultdict(list)
            for entry, event in self.evidence.add(loaded):
                if event is None or (
                    event.type is EventType.STORAGE_SAMPLE and not _storage_overlaps(event, start, end)
                ):
                    continue
                read[event.workload_id].append((event, entry.sequence))
            for workload_id in whole:
                if read.get(workload_id):
                    by_workload[workload_id] = read[workload_id]
                    ratings[workload_id] = rate_workload(
                        read[workload_id],
                        self.prices,
                        self.plans,
                        known_evidence=self.known(workload_id),
                        as_of=self.now,
                    )

        # 4. The heads of the request entries the answer lists, in one read (they are cited one by one): what
        # each is comes from the pairing the rating used, so their bodies are neither read nor decoded.
        facts: dict[int, _Fact] = {}
        self.listing = _listed_requests(ratings, target.endpoint_id, start, end, self.now)
        for workload_id, rating in ratings.items():
            session = rating.session
            if session is None or session.attribution is None:
                continue
            asked = [r for r in session.attribution.requests if r.request_id == target.request_id]
            listed = [*self.listing.get(workload_id, ()), *asked]
            for r in listed:
                facts[r.started_seq] = _Fact(EventType.REQUEST_STARTED, r.started_at, session.workload_id, r.request_id)
                if r.finished_seq is not None and r.finished_at is not None:
                    facts[r.finished_seq] = _Fact(
                        EventType.REQUEST_FINISHED, r.finished_at, session.workload_id, r.request_id
                    )
        # Most were read with their hashes from the rollups (_requests_to_sweep); only a request in flight since
        # before the reach's range was not.
        self.evidence.add_hashed(log_id, {s: h for s, h in self.request_hashes.items() if s in facts}, facts)
        unread = [seq for seq in facts if (log_id, seq) not in self.evidence.loaded and seq not in self.request_hashes]
        if unread:
            self.evidence.add_heads(self.source.entry_heads(log_id, unread), facts)
        return by_workload, dict(sorted(ratings.items()))

    def _add_late_requests(self, workload_id: str, kept: list[tuple[UsageEvent, int]], stop: int, last_at: int) -> int:
        """Append to `kept` the workload's request events after its stop, up to its last one (R26 anomalies for
        the engine to list); returns how many of them are starts."""
        late = self.source.workload_entries_between(self.log_id, [workload_id], stop + 1, last_at)
        starts = 0
        for entry, event in self.evidence.add(late.get(workload_id, ())):
            if event is not None and event.request_id is not None:
                kept.append((event, entry.sequence))
                starts += event.type is EventType.REQUEST_STARTED
        return starts

    def _reach(self, workload_id: str, session: Session, summary: RequestSummary) -> tuple[int, int]:
        """The occurred_at range holding every request that can share an instant with one in the window."""
        start, end = self.target.start, self.target.end
        reach = 2 * summary.longest
        lo, hi = start - reach, end + reach
        session_end = _end_of(session, self.now)
        for started_at, _ in summary.in_flight.values():
            if started_at <= hi:
                lo, hi = min(lo, started_at - summary.longest), max(hi, session_end)
        span = self.target.request_span if self.target.request_workload == workload_id else None
        if span is not None:
            lo, hi = min(lo, span[0] - reach), max(hi, span[1] + reach if span[2] else session_end)
        return lo, hi

    def _requests_to_sweep(
        self,
        sessions: Mapping[str, tuple[Session, Attribution, RequestSummary, tuple[int, int], int]],
        spans: Mapping[str, tuple[int, int]],
    ) -> dict[str, tuple[list[RequestSpan], set[str]]]:
        """For each workload, the requests the R25 sweep needs (every one whose flight meets a listed one's) and the
        ones the answer may list (the first MAX_LISTED_REQUESTS in flight in the window across them, and the one
        asked for); `in_window` gets how many were in flight in the window. Two statements for all the workloads.

        The reach of a busy replica holds a thousand requests, and only these are read: a request started in the
        window is in flight in it, so those are counted in SQL and the first few read; of those started before it,
        only the ones started at most the longest request D before its start can still be in flight at its start
        (a request with no finish is in the summary); and a request meeting a listed one's flight started at most
        D before that flight. Each is taken as `_spans` takes the reach's requests, so the answer is the same.
        """
        target, log_id = self.target, self.log_id
        start, stop = target.start, target.end
        ranges: dict[str, tuple[int, int, int]] = {}
        for workload_id, (session, _, summary, (lo, hi), _) in sessions.items():
            last = min(hi, stop - 1) if session.stop is None else min(hi, stop - 1, session.stop)
            first = max(lo, start - summary.longest)
            # When last < first the session stopped before `first`: nothing is counted, and what is read before the
            # split lies after the stop, which `_spans` leaves out.
            ranges[workload_id] = (first, max(first, start, session.up), last)
        asked = None
        if (
            target.request_id is not None
            and target.request_workload is not None
            and target.request_workload in sessions
        ):
            asked = (target.request_workload, target.request_id)  # its reach holds it (_reach), wherever it is
        found, self.request_hashes = self.index.window_request_spans(log_id, ranges, MAX_LISTED_REQUESTS, asked)
        shown: dict[str, set[str]] = {workload_id: set() for workload_id in sessions}
        flights: dict[str, list[tuple[int, int]]] = {}
        firsts: list[tuple[int, int, str, str]] = []  # each session's first requests in the window: (start, seq, ...)
        flight_by_workload: dict[str, dict[str, tuple[int, int]]] = {}
        for workload_id, (session, _, summary, reach, _) in sessions.items():
            _, end = spans[workload_id]
            up = session.up
            after_split, rows = found[workload_id]
            in_window = []
            flight_of = {}
            for request_id, at, seq, finished_at, _ in _spans(rows, summary, reach, session):
                flight_of[request_id] = (at, _in_flight_to(at, finished_at, up, end))
                if at < stop and flight_of[request_id][1] >= start:
                    in_window.append((at, seq, request_id))
            in_window.sort()
            # Those started before the split are read; every one from the split on is counted in SQL (the reach
            # runs 2D past the window, so a request of the session started in the window is in that range). A split
            # ending before the window has nothing in flight in it.
            split_at = ranges[workload_id][1]
            count = 0 if end < start else sum(1 for at, *_ in in_window if at < split_at) + after_split
            self.in_window[workload_id] = count
            firsts += [(at, seq, workload_id, request_id) for at, seq, request_id in in_window[:MAX_LISTED_REQUESTS]]
            flight_by_workload[workload_id] = flight_of
        # The first few across these sessions hold every one of theirs the answer lists (_listed_requests picks
        # among them and the requests of workloads read whole).
        firsts.sort()
        for _, _, workload_id, request_id in firsts[:MAX_LISTED_REQUESTS]:
            shown[workload_id].add(request_id)
        if asked is not None:
            shown[asked[0]].add(asked[1])
        for workload_id, flight_of in flight_by_workload.items():
            flights[workload_id] = _merged(flight_of[r] for r in shown[workload_id] if r in flight_of)
        reads = {}
        for workload_id, merged in flights.items():
            lo, hi = sessions[workload_id][3]
            if merged:
                longest = sessions[workload_id][2].longest
                reads[workload_id] = (max(lo, merged[0][0] - longest), min(hi, max(b for _, b in merged)))
        swept = self.index.request_spans(log_id, reads) if reads else {}
        picked: dict[str, tuple[list[RequestSpan], set[str]]] = {}
        for workload_id, (session, _, summary, reach, _) in sessions.items():
            _, end = spans[workload_id]
            merged = flights[workload_id]
            sweep = [
                RequestSpan(*r)
                for r in _spans(swept.get(workload_id, ()), summary, reach, session)
                if _meets_any(r[1], _in_flight_to(r[1], r[3], session.up, end), merged)
            ]
            picked[workload_id] = (sweep, shown[workload_id])
        return picked

    def _whole_split(
        self,
        session: Session,
        summary: RequestSummary,
        sweep: Sequence[RequestSpan],
        shown: set[str],
        span: tuple[int, int],
        union: ServingUnion,
        late_starts: int,
    ) -> Attribution:
        """The R25 split over every request (from the rollups), with the shares of the requests the answer lists
        (`shown`). A request's share integrates 1 / (requests in flight) over its own flight, so `sweep` holds only
        the requests whose flights meet theirs (_requests_to_sweep); the split's totals come from the serving union.
        Shares are made only for what the answer shows: making one (two exact Fractions) costs more than sweeping."""
        cold_end, end = span

        def wanted(request: RequestSpan, in_flight_from: int, in_flight_to: int) -> bool:
            return request.request_id in shown

        shares = attribute_serving(
            session.up, session.ready, end, session.billed_micros, session.amount, session.runs, sweep, wanted
        )
        in_flight_from = min((at for at, _ in summary.in_flight.values() if _in_session(at, session)), default=None)
        micros, amount = serving_totals(union, session.runs, cold_end, end, in_flight_from)
        return split_session(
            session.up,
            session.ready,
            end,
            session.billed_micros,
            session.amount,
            session.runs,
            micros,
            amount,
            shares.requests,
            summary.count - late_starts,  # a request started after the stop is an anomaly, not the session's
        )


def _merged(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Closed intervals merged where they meet, in order."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(intervals):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def _meets_any(lo: int, hi: int, merged: Sequence[tuple[int, int]]) -> bool:
    """Whether the closed interval [lo, hi] meets one of `merged` (sorted, disjoint)."""
    at = bisect.bisect_right(merged, (hi, math.inf)) - 1  # the last interval starting at or before hi
    return at >= 0 and merged[at][1] >= lo


def _in_flight_to(started_at: int, finished_at: int | None, up: int, end: int) -> int:
    """Where R25 ends a request's flight: its finish, or the session's end without one (attribute_serving)."""
    start = min(max(started_at, up), end)
    finish = end if finished_at is None else finished_at
    return min(max(finish, start), end)


def _development_line(base: WorkloadRating, kept: Sequence[tuple[UsageEvent, int]]) -> ZeroLine | None:
    """The R8 line of a serving development workload (no session, never billed), None for any other."""
    development = [line for line in base.zero_lines if line.rule == "R8"]
    if base.session is None and len(development) == 1 and kept[0][0].workload_kind is WorkloadKind.SERVING:
        return development[0]
    return None


def _development_quiet(base: WorkloadRating, kept: Sequence[tuple[UsageEvent, int]], summary: RequestSummary) -> bool:
    """A development workload (R8) whose requests all fall inside its lifecycle: the engine makes nothing of them,
    neither a charge nor an anomaly (R26), so they need not be read."""
    line = _development_line(base, kept)
    return line is not None and summary.within(line.start, line.end)


def _development_stop(
    base: WorkloadRating, kept: Sequence[tuple[UsageEvent, int]], summary: RequestSummary
) -> int | None:
    """The stop of a stopped development workload (R8) whose request events all come at or after its UP: the
    engine makes nothing of those up to the stop, and an R26 anomaly of each one after it (a finish logged after
    the replica died), whatever came before it. None for any other workload."""
    line = _development_line(base, kept)
    if line is None or line.end is None or not summary.within(line.start, None):
        return None
    return line.end


def _in_session(at: int, session: Session) -> bool:
    """A request event the engine counts in the session: from UP to the stop, both included (TYPE_ORDER)."""
    return session.up <= at and (session.stop is None or at <= session.stop)


def _spans(
    started: Iterable[StartedSpan], summary: RequestSummary, reach: tuple[int, int], session: Session
) -> list[StartedSpan]:
    """Requests as the engine pairs them, from those started in this workload's reach and its requests in flight.
    A finish outside the reach is left out: such a request cannot meet a request the answer lists (see the class).
    Events after the stop are the engine's anomalies (R26): a request finished only after it is in flight to the
    end, as the engine has it. Plain tuples, in RequestSpan's field order: a busy window has a thousand of them
    and only the few the sweep needs become RequestSpans."""
    lo, hi = reach
    up, stop = session.up, session.stop
    spans: dict[str, StartedSpan] = {
        request_id: (request_id, at, seq, None, None)
        for request_id, (at, seq) in summary.in_flight.items()
        if _in_session(at, session)
    }
    for span in started:
        request_id, at, seq, finished_at, _ = span
        if at < up or (stop is not None and at > stop):  # not _in_session, inlined
            continue
        if finished_at is not None and lo <= finished_at <= hi and _in_session(finished_at, session):
            spans[request_id] = span
        else:
            spans[request_id] = (request_id, at, seq, None, None)
    return list(spans.values())


def _org_of_query(source: DisputeSource, query: DisputeQuery) -> str | None:
    """The org a query is about, read before the lookup proper; None when the request names no single org
    (reconstruct then says so)."""
    if query.org_id is not None:
        return query.org_id
    if query.request_id is not None:
        orgs = {org_of_log(entry.log_id) for entry in source.request_entries(query.request_id)}
        return orgs.pop() if len(orgs) == 1 else None
    assert query.endpoint_id is not None  # DisputeQuery.check
    return _org_of_endpoint(source, query.endpoint_id)


@dataclass(frozen=True)
class _LookupStart:
    """What a lookup of one org reads first, in one round trip on a SQL store: its ACCOUNT entries (R10's plans),
    its ADJUSTMENT entries (R23), the refs of its INVOICE entries (R17), and whether its rollups are current
    with the log (with the system log's size, all the price books' cache needs to know)."""

    account_entries: list[Entry]
    adjustment_entries: list[Entry]
    invoice_refs: list[tuple[int, bytes]] | None
    rollups: UsageRollups | None  # None: the store keeps none
    current: bool
    prices: PriceHistory


@traced("ledger.dispute.lookup_start", ids=("org_id",))
def _lookup_start(ledger: Any, org_id: str) -> _LookupStart:
    from storage.sql import SqlStore
    from storage.sql.rollups import UsageRollups

    log_id = org_log_id(org_id)
    kinds = [EntryKind.ACCOUNT.value, EntryKind.ADJUSTMENT.value]  # both few: one read (ix_entries_kind)
    rollups, invoice_refs, current = None, None, True
    if isinstance(ledger.store, SqlStore):
        rollups = UsageRollups(ledger.store)
        read, invoice_refs, (state_rows,) = ledger.store.entries_and_refs_of_kind(
            log_id, kinds, EntryKind.INVOICE.value, [rollups.state_read(org_id)]
        )
        applied, system_log_size = rollups.state_of(state_rows)
        current = applied is not None
        prices = ledger.price_history(system_log_size)
    else:
        read = ledger.store.entries_of_kind(log_id, kinds)
        prices = ledger.price_history()
    return _LookupStart(
        [entry for entry in read if entry.kind is EntryKind.ACCOUNT],
        [entry for entry in read if entry.kind is EntryKind.ADJUSTMENT],
        invoice_refs,
        rollups,
        current,
        prices,
    )


def _plans_of(account_entries: Sequence[Entry]) -> PlanHistory:
    """R10: the plan history the org's ACCOUNT entries make."""
    return AccountHistory(tuple(AccountChange.from_body(e.body_json(), e.sequence) for e in account_entries)).plans()


# -- the ledger-level entry points ------------------------------------------------------------------------------


@traced("ledger.dispute.reconstruct")
def reconstruct_charges(ledger: Any, query: DisputeQuery, *, with_proofs: bool = False) -> Reconstruction:
    """R27 for a ledger.intake.Ledger whose store offers the DisputeSource reads: invoices from ledger.billing when it
    exists; with `with_proofs`, inclusion proofs against each log's newest signed checkpoint when there is one.

    The whole lookup reads on one connection (SqlStore.session), and all of it that follows finding the org runs in
    one snapshot (SqlStore.snapshot): an append landing mid-lookup is in all of the answer or none of it. When the
    rollups are behind the log, they catch up first (their own transaction) and the lookup reads again in a new
    snapshot, which sees what the catch-up wrote.
    """
    query.check()
    source: DisputeSource = ledger.store
    session = getattr(ledger.store, "session", contextlib.nullcontext)
    snapshot = getattr(ledger.store, "snapshot", contextlib.nullcontext)
    now = ledger.clock()
    with session():
        org_id = _org_of_query(source, query)
        if org_id is None:
            with snapshot():
                return _answer(ledger, query, now, None, with_proofs)
        query = dataclasses.replace(query, org_id=org_id)
        with snapshot():
            start = _lookup_start(ledger, org_id)
            if start.current:
                return _answer(ledger, query, now, start, with_proofs)
        assert start.rollups is not None  # only rollups can be behind
        RollupFollower(start.rollups).catch_up(org_id, start.prices, _plans_of(start.account_entries))
        with snapshot():
            return _answer(ledger, query, now, _lookup_start(ledger, org_id), with_proofs)


def _answer(
    ledger: Any, query: DisputeQuery, now: int, start: _LookupStart | None, with_proofs: bool
) -> Reconstruction:
    """The reconstruction, inside the lookup's snapshot; `start` None when the query names no single org."""
    refs = start.invoice_refs if start is not None else None
    rollups = start.rollups if start is not None else None
    result = reconstruct(
        ledger.store,
        start.prices if start is not None else ledger.price_history(),
        query,
        now,
        invoices=lambda org_id: invoices_for(ledger, org_id, refs),
        index=None if rollups is None else (lambda _org_id: rollups),
        account_entries=start.account_entries if start is not None else None,
        adjustment_entries=start.adjustment_entries if start is not None else None,
    )
    if not with_proofs:
        return dataclasses.replace(result, notes=(*result.notes, PROOFS_ON_REQUEST))
    proofs, notes = prove_cited(ledger.store, result.cited())
    return dataclasses.replace(result, proofs=proofs, notes=result.notes + notes)


def adjust_charges(
    ledger: Any,
    org_id: str,
    ticket: str,
    amount: str,
    reason: str,
    corrects: Sequence[tuple[str, int, bytes | None]],
    request_id: str | None = None,
) -> tuple[Adjustment, EntryRef, bool]:
    """R23: append an ADJUSTMENT entry citing the entries it corrects and the ticket; True when it was already there.

    A hash given with a reference must be that entry's, so a credit never cites an entry support did not look at.
    Idempotent (Ledger.append_adjustment): a resent or re-run request appends nothing new.
    """
    bad = []
    for i, (log_id, sequence, entry_hash) in enumerate(corrects):
        if entry_hash:
            try:
                stored = ledger.entry(log_id, sequence)
            except NotFound:
                continue  # append_adjustment names it
            if stored.entry_hash != entry_hash:
                bad.append(
                    FieldViolation(
                        f"corrects[{i}].entry_hash",
                        f"R23: entry {log_id}:{sequence} has hash {stored.entry_hash.hex()[:16]}…, not "
                        f"{entry_hash.hex()[:16]}…",
                    )
                )
    if bad:
        raise InvalidInput(bad)
    adjustment, appended = ledger.append_adjustment(
        org_id, ticket, amount, reason, [(log_id, seq) for log_id, seq, _ in corrects], request_id
    )
    return adjustment, EntryRef(appended.log_id, appended.sequence, appended.entry_hash), appended.duplicate


__all__ = [
    "DEFAULT_TOLERANCE",
    "NOT_YET_INVOICED",
    "PROOFS_ON_REQUEST",
    "AdjustmentLine",
    "AnomalyLine",
    "BillingInvoices",
    "ChargePart",
    "DisputeQuery",
    "DisputeSource",
    "EntryProofs",
    "Evidence",
    "InvoiceCoverage",
    "InvoiceLookup",
    "InvoiceSummary",
    "InvoicedRange",
    "NoInvoices",
    "Reconstruction",
    "RequestCharge",
    "SessionCharge",
    "StorageLine",
    "TimelineStep",
    "UnitCharge",
    "Verdict",
    "ZeroCharge",
    "adjust_charges",
    "decimal_text",
    "invoices_for",
    "prove_cited",
    "reconstruct",
    "reconstruct_charges",
]


def _known(running: tuple[int | None, dict[str, int]], workload_id: str) -> int | None:
    """R28: the later of the org's latest HEARTBEAT and the workload's latest event, as the log says."""
    heartbeat, latest = running
    own = latest.get(workload_id)
    if heartbeat is None:
        return own
    return heartbeat if own is None else max(heartbeat, own)
