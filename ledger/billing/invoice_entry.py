"""The INVOICE entry (R16, R17, R20-R23): an invoice's lines, what it covers and its canonical body.

An invoice records exactly what it covers, so an auditor can re-derive it from the log: per session
(workload_id, up_seq) the unit index range [first, end) with the unit price of each part, per storage charge its
entry sequence, per adjustment its entry sequence. Every rated unit is on exactly one invoice (net of reversals)
or still uninvoiced (R17). Units are invoiced by the instant each starts (R10).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from functools import cached_property
from typing import Any

from ledger.adjustments import Adjustment
from ledger.billing.cents import CURRENCY, ZERO_CENTS, cents_text
from ledger.billing.credits import CreditApplication
from ledger.events import format_decimal
from ledger.timeutil import MICROS_PER_SECOND, format_micros, parse_rfc3339_micros


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
