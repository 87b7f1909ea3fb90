"""Invoices (R16, R17, R20-R23): INVOICE entries, drafting one from rated usage, and reads for dispute lookup.

An invoice records exactly what it covers, so an auditor can re-derive it from the log: per session
(workload_id, up_seq) the unit index range [first, end) with the unit price of each part, per storage charge its
entry sequence, per adjustment its entry sequence. Every rated unit is on exactly one invoice (net of reversals)
or still uninvoiced (R17). Units are invoiced by the instant each starts (R10).
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from enum import StrEnum
from fractions import Fraction
from functools import cached_property
from typing import Any

from ledger.account import DEFAULT_INVOICE_THRESHOLD
from ledger.adjustments import Adjustment
from ledger.billing.cents import CURRENCY, ZERO_CENTS, cents_text, exact_usd, round_cents, usd
from ledger.billing.credits import CreditApplication, CreditBalance, apply_credits
from ledger.errors import NotFound
from ledger.events import StorageKind, format_decimal
from ledger.intake import Ledger
from ledger.log.entry import EntryKind, org_log_id
from ledger.rating import OrgRating, Session, UnitRun
from ledger.rating.money import EXACT
from ledger.rating.storage import (
    CONTAINER_DISK_PER_GB_MONTH,
    NETWORK_VOLUME_BEYOND_PER_GB_MONTH,
    NETWORK_VOLUME_FIRST_TIER_PER_GB_MONTH,
    NETWORK_VOLUME_TIER_GB,
    SECONDS_PER_MONTH,
    StorageCharge,
)
from ledger.timeutil import MICROS_PER_SECOND, format_micros, parse_rfc3339_micros
from ledger.tracing import traced

INVOICE_THRESHOLD = DEFAULT_INVOICE_THRESHOLD  # R17: $50.00 of uninvoiced usage after discounts


class Trigger(StrEnum):
    """Why an invoice was issued (R17); DRAFT is the running total of the open period, never issued."""

    THRESHOLD = "THRESHOLD"
    MONTH_END = "MONTH_END"
    DRAFT = "DRAFT"


class Cadence(StrEnum):
    """R17 until R18's streak of paid invoices, then monthly."""

    THRESHOLD_OR_MONTH_END = "THRESHOLD_OR_MONTH_END"
    MONTHLY = "MONTHLY"


class LineKind(StrEnum):
    COMPUTE = "COMPUTE"
    STORAGE = "STORAGE"
    DISCOUNT = "DISCOUNT"
    ADJUSTMENT = "ADJUSTMENT"
    CARRIED_BALANCE = "CARRIED_BALANCE"


USAGE_KINDS = frozenset({LineKind.COMPUTE, LineKind.STORAGE})


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    """One line: amount = quantity x unit_price / quantity_divisor, rounded half-up to cents (R21).

    `quantity_divisor` is 1 except for storage, whose quantity is GB-seconds priced per GB-month
    (2,592,000 GB-seconds, R13/R14). `late` lines carry the usage period they belong to (R22).
    """

    kind: LineKind
    description: str
    rule: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    price_unit: str
    amount: Decimal
    quantity_divisor: int = 1
    late: bool = False
    reversal: bool = False
    usage_start: int | None = None
    usage_end: int | None = None
    endpoint_id: str | None = None
    workload_kind: str | None = None
    instance_type: str | None = None
    worker_type: str | None = None
    storage_kind: str | None = None
    volume_id: str | None = None
    reference: int | None = None

    def exact_amount(self) -> Fraction:
        return Fraction(self.quantity) * Fraction(self.unit_price) / self.quantity_divisor

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": self.kind.value,
            "description": self.description,
            "rule": self.rule,
            "quantity": format_decimal(self.quantity),
            "unit": self.unit,
            "unit_price": format_decimal(self.unit_price),
            "price_unit": self.price_unit,
            "quantity_divisor": self.quantity_divisor,
            "amount": cents_text(self.amount),
            "late": self.late,
            "reversal": self.reversal,
        }
        if self.usage_start is not None and self.usage_end is not None:
            body["usage_period"] = {"start": format_micros(self.usage_start), "end": format_micros(self.usage_end)}
        for name in (
            "endpoint_id",
            "workload_kind",
            "instance_type",
            "worker_type",
            "storage_kind",
            "volume_id",
            "reference",
        ):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        return body

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> InvoiceLine:
        period = body.get("usage_period")
        return cls(
            kind=LineKind(body["kind"]),
            description=body["description"],
            rule=body["rule"],
            quantity=Decimal(body["quantity"]),
            unit=body["unit"],
            unit_price=Decimal(body["unit_price"]),
            price_unit=body["price_unit"],
            amount=Decimal(body["amount"]),
            quantity_divisor=int(body.get("quantity_divisor", 1)),
            late=bool(body.get("late", False)),
            reversal=bool(body.get("reversal", False)),
            usage_start=parse_rfc3339_micros(period["start"]) if period else None,
            usage_end=parse_rfc3339_micros(period["end"]) if period else None,
            endpoint_id=body.get("endpoint_id"),
            workload_kind=body.get("workload_kind"),
            instance_type=body.get("instance_type"),
            worker_type=body.get("worker_type"),
            storage_kind=body.get("storage_kind"),
            volume_id=body.get("volume_id"),
            reference=body.get("reference"),
        )


@dataclass(frozen=True, slots=True)
class PricedRange:
    """Units [first, end) of a session at one unit price (price book version `price_version`, R11/R12)."""

    first: int
    end: int
    unit_price: Decimal
    price_version: int

    def body(self) -> dict[str, Any]:
        return {
            "first": self.first,
            "end": self.end,
            "unit_price": format_decimal(self.unit_price),
            "price_version": self.price_version,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> PricedRange:
        return cls(int(body["first"]), int(body["end"]), Decimal(body["unit_price"]), int(body["price_version"]))


@dataclass(frozen=True, slots=True)
class CoveredSession:
    """The units [first, end) of session (workload_id, up_seq) an invoice charges, or with `reversal` takes back
    (R22/R23: a late stop showed fewer units were due than an earlier invoice charged)."""

    workload_id: str
    up_seq: int
    up: int
    unit_seconds: int
    endpoint_id: str
    workload_kind: str
    instance_type: str
    worker_type: str
    first: int
    end: int
    reversal: bool
    priced: tuple[PricedRange, ...]

    @property
    def key(self) -> tuple[str, int]:
        return (self.workload_id, self.up_seq)

    def unit_start(self, index: int) -> int:
        return self.up + index * self.unit_seconds * MICROS_PER_SECOND

    def body(self) -> dict[str, Any]:
        return {
            "workload_id": self.workload_id,
            "up_seq": self.up_seq,
            "session_start": format_micros(self.up),
            "unit_seconds": self.unit_seconds,
            "endpoint_id": self.endpoint_id,
            "workload_kind": self.workload_kind,
            "instance_type": self.instance_type,
            "worker_type": self.worker_type,
            "from": self.first,
            "to": self.end,
            "reversal": self.reversal,
            "priced": [p.body() for p in self.priced],
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> CoveredSession:
        return cls(
            workload_id=body["workload_id"],
            up_seq=int(body["up_seq"]),
            up=parse_rfc3339_micros(body["session_start"]),
            unit_seconds=int(body["unit_seconds"]),
            endpoint_id=body["endpoint_id"],
            workload_kind=body["workload_kind"],
            instance_type=body["instance_type"],
            worker_type=body["worker_type"],
            first=int(body["from"]),
            end=int(body["to"]),
            reversal=bool(body["reversal"]),
            priced=tuple(PricedRange.from_body(p) for p in body["priced"]),
        )


@dataclass(frozen=True, slots=True)
class GraceFired:
    """R17: a month-end invoice issued on the wall clock, its month's end plus the grace period having passed
    before the settled-through time (R28) reached the end. The one place the wall clock enters an invoice."""

    wall_clock: int
    grace_seconds: int

    def body(self) -> dict[str, Any]:
        return {"fired": True, "wall_clock": format_micros(self.wall_clock), "grace_seconds": self.grace_seconds}

    @classmethod
    def from_body(cls, body: Mapping[str, Any] | None) -> GraceFired | None:
        if not body or not body.get("fired"):
            return None
        return cls(parse_rfc3339_micros(body["wall_clock"]), int(body["grace_seconds"]))


@dataclass(frozen=True, slots=True)
class RecordedAdjustment:
    """An ADJUSTMENT entry (R23) with the instant the ledger recorded it: it lands on the next invoice."""

    adjustment: Adjustment
    recorded_at: int

    @property
    def sequence(self) -> int:
        return self.adjustment.sequence


@dataclass(frozen=True)
class Invoice:
    """One INVOICE entry (or a draft). Figures are in USD cents; `total` is the sum of the lines (R21)."""

    org_id: str
    number: int
    period_start: int
    period_end: int
    trigger: Trigger
    cadence: Cadence
    lines: tuple[InvoiceLine, ...]
    subtotal: Decimal
    discount_percent: Decimal
    discount: Decimal
    total: Decimal
    credits_applied: tuple[CreditApplication, ...]
    amount_due: Decimal
    balance_carried_forward: Decimal
    sessions: tuple[CoveredSession, ...]
    storage_sequences: tuple[int, ...]
    adjustment_sequences: tuple[int, ...]
    carried_from_invoice: int | None = None
    # The rating behind this invoice reflected exactly the org log's first `rated_log_size` entries, and the entry
    # was appended only while the log held exactly those (R17): an auditor re-derives it from the entries before it.
    # None on invoices issued before the field.
    rated_log_size: int | None = None
    # R17/R28: the org's settled-through time when the invoice was cut (period_end is the cut instant), the engine
    # clock when it was issued (R16: the credits available then are applied) and, for a month-end invoice the grace
    # period issued, the wall clock it fired at. None on invoices issued before the fields.
    settled_through: int | None = None
    issued_at: int | None = None
    grace: GraceFired | None = None
    sequence: int = -1
    entry_hash: bytes = b""

    @cached_property
    def sessions_by_workload(self) -> Mapping[str, tuple[CoveredSession, ...]]:
        """`sessions` by workload (a dispute lookup asks about one workload's units at a time)."""
        found: dict[str, list[CoveredSession]] = {}
        for covered in self.sessions:
            found.setdefault(covered.workload_id, []).append(covered)
        return {workload_id: tuple(covered) for workload_id, covered in found.items()}

    @cached_property
    def storage_sequence_set(self) -> frozenset[int]:
        """`storage_sequences` for membership tests (a month's invoice can hold tens of thousands)."""
        return frozenset(self.storage_sequences)

    @property
    def credits_total(self) -> Decimal:
        return sum((c.amount for c in self.credits_applied), ZERO_CENTS)

    @property
    def usage_after_discount(self) -> Decimal:
        """What R17's threshold compares: usage lines less the discount (R20)."""
        return self.subtotal - self.discount

    @property
    def has_charges(self) -> bool:
        """Any non-zero usage, discount or adjustment line (a carried balance alone is not worth an invoice)."""
        return any(line.amount != 0 for line in self.lines if line.kind is not LineKind.CARRIED_BALANCE)

    @property
    def late_lines(self) -> tuple[InvoiceLine, ...]:
        return tuple(line for line in self.lines if line.late)

    def body(self) -> dict[str, Any]:
        return {
            "org_id": self.org_id,
            "idempotency_key": f"invoice:{self.number}",
            "number": self.number,
            "currency": CURRENCY,
            "period": {"start": format_micros(self.period_start), "end": format_micros(self.period_end)},
            "trigger": self.trigger.value,
            "cadence": self.cadence.value,
            "lines": [line.body() for line in self.lines],
            "subtotal": cents_text(self.subtotal),
            "discount_percent": format_decimal(self.discount_percent),
            "discount": cents_text(self.discount),
            "total": cents_text(self.total),
            "credits_applied": [c.body() for c in self.credits_applied],
            "amount_due": cents_text(self.amount_due),
            "balance_carried_forward": cents_text(self.balance_carried_forward),
            "covers": {
                "sessions": [s.body() for s in self.sessions],
                "storage_sequences": list(self.storage_sequences),
                "adjustment_sequences": list(self.adjustment_sequences),
                "carried_from_invoice": self.carried_from_invoice,
            },
            **({} if self.rated_log_size is None else {"rated_log_size": self.rated_log_size}),
            **({} if self.settled_through is None else {"settled_through": format_micros(self.settled_through)}),
            **({} if self.issued_at is None else {"issued_at": format_micros(self.issued_at)}),
            **(
                {}
                if self.issued_at is None
                else {"grace": self.grace.body() if self.grace is not None else {"fired": False}}
            ),
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any], sequence: int = -1, entry_hash: bytes = b"") -> Invoice:
        covers = body["covers"]
        return cls(
            org_id=body["org_id"],
            number=int(body["number"]),
            period_start=parse_rfc3339_micros(body["period"]["start"]),
            period_end=parse_rfc3339_micros(body["period"]["end"]),
            trigger=Trigger(body["trigger"]),
            cadence=Cadence(body["cadence"]),
            lines=tuple(InvoiceLine.from_body(line) for line in body["lines"]),
            subtotal=Decimal(body["subtotal"]),
            discount_percent=Decimal(body["discount_percent"]),
            discount=Decimal(body["discount"]),
            total=Decimal(body["total"]),
            credits_applied=tuple(CreditApplication.from_body(c) for c in body["credits_applied"]),
            amount_due=Decimal(body["amount_due"]),
            balance_carried_forward=Decimal(body["balance_carried_forward"]),
            sessions=tuple(CoveredSession.from_body(s) for s in covers["sessions"]),
            storage_sequences=tuple(int(s) for s in covers["storage_sequences"]),
            adjustment_sequences=tuple(int(s) for s in covers["adjustment_sequences"]),
            carried_from_invoice=covers.get("carried_from_invoice"),
            rated_log_size=int(body["rated_log_size"]) if "rated_log_size" in body else None,
            settled_through=parse_rfc3339_micros(body["settled_through"]) if "settled_through" in body else None,
            issued_at=parse_rfc3339_micros(body["issued_at"]) if "issued_at" in body else None,
            grace=GraceFired.from_body(body.get("grace")),
            sequence=sequence,
            entry_hash=entry_hash,
        )


# -- reads for dispute lookup (R27) ------------------------------------------------------------------------------


# Parsed INVOICE entries by (log, seq, entry hash). Entries are never edited, so a parse stays right for as long
# as the hash matches; an invoice covering a month of a busy org is a large body, and every dispute lookup (R27)
# asks for all of the org's invoices.
_PARSED: OrderedDict[tuple[str, int, bytes], Invoice] = OrderedDict()
_PARSED_MAX = 512
_PARSED_LOCK = threading.Lock()


def invoices_of(ledger: Ledger, org_id: str, refs_read: Sequence[tuple[int, bytes]] | None = None) -> list[Invoice]:
    """Every issued invoice of an org, oldest first. `refs_read`: the (seq, entry_hash) of its INVOICE entries when
    the caller read them already (store.kind_refs), as a dispute lookup does with its first reads."""
    log_id = org_log_id(org_id)
    store: Any = ledger.store
    try:
        if not hasattr(store, "kind_refs"):
            entries = store.entries_of_kind(log_id, [EntryKind.INVOICE.value])
            return [Invoice.from_body(e.body_json(), e.sequence, e.entry_hash) for e in entries]
        if refs_read is None:
            refs_read = store.kind_refs(log_id, EntryKind.INVOICE.value)
        refs = [(log_id, seq, entry_hash) for seq, entry_hash in refs_read]
        with _PARSED_LOCK:
            known = {key: _PARSED[key] for key in refs if key in _PARSED}
        missing = [seq for key in refs if key not in known for seq in (key[1],)]
        for entry in store.entries_at(log_id, missing) if missing else ():
            known[(log_id, entry.sequence, entry.entry_hash)] = Invoice.from_body(
                entry.body_json(), entry.sequence, entry.entry_hash
            )
    except NotFound:
        return []
    with _PARSED_LOCK:
        for key in refs:
            _PARSED[key] = known[key]
            _PARSED.move_to_end(key)
        while len(_PARSED) > _PARSED_MAX:
            _PARSED.popitem(last=False)
    return [known[key] for key in refs]


def invoice_covering_unit(
    invoices: Sequence[Invoice], workload_id: str, unit_index: int, up_seq: int | None = None
) -> Invoice | None:
    """The invoice that charges unit `unit_index` of the workload's session, net of reversals (R17, R22).

    A workload has one session (a second UP is an anomaly, R26), but a late event can replace its UP; pass
    `up_seq` to ask about one session, else the latest invoice still charging the unit is returned.
    """
    holders: dict[int, Invoice | None] = {}
    for invoice in invoices:
        for covered in invoice.sessions_by_workload.get(workload_id, ()):
            if up_seq is not None and covered.up_seq != up_seq:
                continue
            if covered.first <= unit_index < covered.end:
                holders[covered.up_seq] = None if covered.reversal else invoice
    found = [inv for inv in holders.values() if inv is not None]
    return max(found, key=lambda inv: inv.number) if found else None


def invoice_covering_storage(invoices: Sequence[Invoice], seq: int) -> Invoice | None:
    """The invoice that charged the storage interval of STORAGE_SAMPLE entry `seq` (R13, R14, R17)."""
    return next((inv for inv in invoices if seq in inv.storage_sequence_set), None)


def invoice_covering_adjustment(invoices: Sequence[Invoice], seq: int) -> Invoice | None:
    """The invoice that carried ADJUSTMENT entry `seq` (R23)."""
    return next((inv for inv in invoices if seq in inv.adjustment_sequences), None)


# -- drafting ------------------------------------------------------------------------------------------------------


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


@dataclass
class _LineGroup:
    quantity: Decimal
    start: int
    end: int
    versions: set[int] = field(default_factory=set)

    def add(self, quantity: Decimal, start: int, end: int, version: int | None = None) -> None:
        with localcontext(EXACT):
            self.quantity += quantity
        self.start = min(self.start, start)
        self.end = max(self.end, end)
        if version is not None:
            self.versions.add(version)


ComputeKey = tuple[bool, bool, str, str, str, str, int, Decimal]
StorageKey = tuple[bool, str, str, str | None, str, Decimal]


class UsageDraft:
    """Collects what one draft covers and groups it into lines."""

    def __init__(self, late_before: int | None) -> None:
        self.late_before = late_before
        self.sessions: list[CoveredSession] = []
        self.compute: dict[ComputeKey, _LineGroup] = {}
        self.storage: dict[StorageKey, _LineGroup] = {}
        self.storage_sequences: list[int] = []
        self.usage_starts: list[int] = []

    def is_late(self, start: int) -> bool:
        return self.late_before is not None and start < self.late_before

    def _compute_group(
        self, covered: CoveredSession, late: bool, reversal: bool, unit_price: Decimal, count: int, first: int, end: int
    ) -> None:
        key = compute_key(covered, late, reversal, unit_price)
        start, stop = covered.unit_start(first), covered.unit_start(end)
        group = self.compute.setdefault(key, _LineGroup(Decimal(0), start, stop))
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
            group = self.storage.setdefault(key, _LineGroup(Decimal(0), charge.start, charge.end))
            group.add(quantity, charge.start, charge.end)

    def usage_lines(self) -> list[InvoiceLine]:
        lines = [_compute_line(key, group) for key, group in sorted(self.compute.items(), key=lambda kv: _order(kv[0]))]
        lines += [
            _storage_line(key, group) for key, group in sorted(self.storage.items(), key=lambda kv: _order(kv[0]))
        ]
        return lines


def compute_key(covered: CoveredSession, late: bool, reversal: bool, unit_price: Decimal) -> ComputeKey:
    """The line a session's units go on (R10/R11; R22 late, R22/R23 reversal)."""
    return (
        late,
        reversal,
        covered.endpoint_id,
        covered.workload_kind,
        covered.instance_type,
        covered.worker_type,
        covered.unit_seconds,
        unit_price,
    )


def storage_parts(charge: StorageCharge) -> list[tuple[str, Decimal, Decimal]]:
    """(rule, price per GB-month, GB-seconds) of a storage interval: one part, or two across R14's tier."""
    gb_seconds = charge.gigabytes * charge.interval_seconds
    if charge.rule == "R8":
        return [("R8", _ZERO_PRICE, gb_seconds)]
    if charge.storage_kind is StorageKind.CONTAINER_DISK:
        return [("R13", _CONTAINER_DISK_PRICE, gb_seconds)]
    first_tier = min(charge.gigabytes, _TIER_GB) * charge.interval_seconds
    beyond = max(charge.gigabytes - NETWORK_VOLUME_TIER_GB, _ZERO_PRICE) * charge.interval_seconds
    parts = [("R14", _FIRST_TIER_PRICE, first_tier)]
    if beyond > 0:
        parts.append(("R14", _BEYOND_TIER_PRICE, beyond))
    return parts


def storage_key(charge: StorageCharge, late: bool, rule: str, price: Decimal) -> StorageKey:
    """The line a storage part goes on (R13, R14, R8; R22 late)."""
    volume = charge.volume_id if charge.storage_kind is StorageKind.NETWORK_VOLUME else None
    return (late, charge.endpoint_id, charge.storage_kind.value, volume, rule, price)


def compute_amount(quantity: Decimal, unit_price: Decimal) -> Decimal:
    """R21: a compute line's amount, quantity x unit price rounded half-up to cents."""
    with localcontext(EXACT):
        return round_cents(quantity * unit_price)


def storage_amount(gb_seconds: Decimal, price_per_gb_month: Decimal) -> Decimal:
    """R21: a storage line's amount, GB-seconds x price per GB-month / 2,592,000 s rounded half-up to cents.

    Exact, in integers (the threshold walk computes it thousands of times; Fraction arithmetic is the slow way to
    the same cents): x = n / d, cents = floor(|x| x 100 + 1/2), ties away from zero as round_cents has them."""
    with localcontext(EXACT):
        numerator, denominator = (gb_seconds * price_per_gb_month).as_integer_ratio()
    denominator *= SECONDS_PER_MONTH
    cents = (2 * 100 * abs(numerator) + denominator) // (2 * denominator)
    return Decimal(-cents if numerator < 0 else cents).scaleb(-2)


def _order(key: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(str(part) for part in key)


def _price(value: Fraction) -> Decimal:
    return Decimal(value.numerator) / Decimal(value.denominator)


# R13, R14 prices per GB-month as decimals, made once (every storage interval of every draft uses them).
_ZERO_PRICE = Decimal(0)
_TIER_GB = Decimal(NETWORK_VOLUME_TIER_GB)
_CONTAINER_DISK_PRICE = _price(CONTAINER_DISK_PER_GB_MONTH)
_FIRST_TIER_PRICE = _price(NETWORK_VOLUME_FIRST_TIER_PER_GB_MONTH)
_BEYOND_TIER_PRICE = _price(NETWORK_VOLUME_BEYOND_PER_GB_MONTH)


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


def _unit_name(unit_seconds: int) -> str:
    return "minute" if unit_seconds == 60 else "second"


def _compute_line(key: ComputeKey, group: _LineGroup) -> InvoiceLine:
    late, reversal, endpoint, kind, instance, worker, unit_seconds, unit_price = key
    unit = _unit_name(unit_seconds)
    count = int(group.quantity)
    amount = compute_amount(group.quantity, unit_price)
    plural = "s" if abs(count) != 1 else ""
    what = f"{endpoint} {kind} {instance} {worker}: {abs(count)} {unit}{plural} x {exact_usd(unit_price)}"
    period = f"{format_micros(group.start)} to {format_micros(group.end)}"
    if reversal:
        rule = "R22/R23"
        description = (
            f"R22/R23: reversal of {what} charged on an earlier invoice for usage {period}: a late stop showed "
            "fewer units were due (the earlier invoice is not edited)"
        )
    elif late:
        rule = "R22"
        description = f"R22: late usage from {period}, an already-invoiced period: {what} (R10/R11)"
    else:
        rule = "R10/R11"
        description = f"R10/R11: {what} per {unit}"
    return InvoiceLine(
        kind=LineKind.COMPUTE,
        description=description,
        rule=rule,
        quantity=group.quantity,
        unit=unit,
        unit_price=unit_price,
        price_unit=unit,
        amount=amount,
        late=late or reversal,
        reversal=reversal,
        usage_start=group.start,
        usage_end=group.end,
        endpoint_id=endpoint,
        workload_kind=kind,
        instance_type=instance,
        worker_type=worker,
    )


def _storage_line(key: StorageKey, group: _LineGroup) -> InvoiceLine:
    late, endpoint, storage_kind, volume, rule, price = key
    period = f"{format_micros(group.start)} to {format_micros(group.end)}"
    what = "container disk" if storage_kind == StorageKind.CONTAINER_DISK.value else f"network volume {volume}"
    if rule == "R8":
        description = (
            f"R8: {endpoint} {what} of a development workload, {format_decimal(group.quantity)} GB-seconds, not billed"
        )
    else:
        tier = ""
        if rule == "R14":
            tier = (
                " (first 1,000 GB)"
                if Fraction(price) == NETWORK_VOLUME_FIRST_TIER_PER_GB_MONTH
                else " (beyond 1,000 GB)"
            )
        description = (
            f"{rule}: {endpoint} {what}{tier}, {format_decimal(group.quantity)} GB-seconds x "
            f"{exact_usd(price)} per GB-month / {SECONDS_PER_MONTH:,} s"
        )
    if late:
        description = f"R22: late usage from {period}, an already-invoiced period: " + description
    return InvoiceLine(
        kind=LineKind.STORAGE,
        description=description,
        rule=f"R22/{rule}" if late else rule,
        quantity=group.quantity,
        unit="GB-second",
        unit_price=price,
        price_unit="GB-month",
        amount=storage_amount(group.quantity, price),
        quantity_divisor=SECONDS_PER_MONTH,
        late=late,
        usage_start=group.start,
        usage_end=group.end,
        endpoint_id=endpoint,
        storage_kind=storage_kind,
        volume_id=volume,
    )


def _adjustment_line(recorded: RecordedAdjustment) -> InvoiceLine:
    adjustment = recorded.adjustment
    corrects = ", ".join(f"{r.log_id}:{r.sequence}" for r in adjustment.corrects)
    kind = "credit" if adjustment.amount < 0 else "debit"
    return InvoiceLine(
        kind=LineKind.ADJUSTMENT,
        description=(
            f"R23: adjustment ({kind}) for ticket {adjustment.ticket}, entry #{adjustment.sequence}, "
            f"correcting {corrects}: {adjustment.reason}"
        ),
        rule="R23",
        quantity=Decimal(1),
        unit="adjustment",
        unit_price=adjustment.amount,
        price_unit="adjustment",
        amount=round_cents(adjustment.amount),
        reference=adjustment.sequence,
    )


def _discount_line(subtotal: Decimal, percent: Decimal) -> InvoiceLine:
    with localcontext(EXACT):
        rate = -percent / 100
        amount = round_cents(subtotal * rate)
    return InvoiceLine(
        kind=LineKind.DISCOUNT,
        description=f"R20: {format_decimal(percent)}% discount on the usage subtotal {usd(subtotal)}, before credits",
        rule="R20",
        quantity=subtotal,
        unit="USD",
        unit_price=rate,
        price_unit="USD",
        amount=amount,
    )


def _carried_line(previous: Invoice) -> InvoiceLine:
    carried = previous.balance_carried_forward
    return InvoiceLine(
        kind=LineKind.CARRIED_BALANCE,
        description=(
            f"R16/R23: balance of {usd(carried)} carried from invoice #{previous.number}, whose lines totalled "
            "below zero (an amount due never goes below zero)"
        ),
        rule="R16/R23",
        quantity=Decimal(1),
        unit="balance",
        unit_price=carried,
        price_unit="balance",
        amount=carried,
        reference=previous.number,
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
        lines.append(_discount_line(subtotal, discount_percent))
    discount = -sum((line.amount for line in lines if line.kind is LineKind.DISCOUNT), ZERO_CENTS)

    covered_adjustments = {seq for invoice in prior for seq in invoice.adjustment_sequences}
    new_adjustments = [a for a in adjustments if a.sequence not in covered_adjustments and a.recorded_at <= period_end]
    lines += [_adjustment_line(a) for a in new_adjustments]
    carried_from = None
    if previous is not None and previous.balance_carried_forward < 0:
        lines.append(_carried_line(previous))
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
