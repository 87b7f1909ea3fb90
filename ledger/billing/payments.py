"""Payments (R18, R19): PAYMENT entries with the processor's outcome for an invoice, and opaque references only.

R19: card and bank data are never stored. The ledger keeps the payment processor's opaque reference (`pm_…` for
a payment method, `ch_…`/`pi_…` for a charge) and refuses anything that looks like a card number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from ledger.billing.cents import CURRENCY, cents_text
from ledger.billing.invoice_entry import Cadence, Invoice
from ledger.errors import FieldViolation
from ledger.timeutil import format_micros, parse_rfc3339_micros

# A processor token: a short lowercase-or-letter prefix, an underscore, then an opaque [A-Za-z0-9_-] id.
OPAQUE_REFERENCE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,15}_[A-Za-z0-9_-]{6,200}$")
OPAQUE_REFERENCE_RULE = "an opaque processor reference such as pm_1NqLiJLkdIwHu7ix (letters, digits, _ and -)"
# 13 to 19 digits, possibly grouped by spaces or dashes: the shape of a card number (PAN).
_CARD_LIKE_RE = re.compile(r"(?:\d[ -]?){12,18}\d")
_LONG_DIGITS_RE = re.compile(r"\d{13,}")


class PaymentOutcome(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class Payment:
    """One PAYMENT entry: the processor's outcome for invoice `invoice_number`, with its opaque reference."""

    org_id: str
    invoice_number: int
    invoice_sequence: int
    outcome: PaymentOutcome
    reference: str
    amount: Decimal
    recorded_at: int
    sequence: int = -1

    def body(self) -> dict[str, Any]:
        return {
            "org_id": self.org_id,
            # R24-style: the processor's reference names one outcome; recording it twice appends it once.
            "idempotency_key": f"payment:{self.reference}",
            "invoice_number": self.invoice_number,
            "invoice_sequence": self.invoice_sequence,
            "outcome": self.outcome.value,
            "reference": self.reference,
            "amount": cents_text(self.amount),
            "currency": CURRENCY,
            "recorded_at": format_micros(self.recorded_at),
            "rule": "R18",
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any], sequence: int) -> Payment:
        return cls(
            org_id=body["org_id"],
            invoice_number=int(body["invoice_number"]),
            invoice_sequence=int(body["invoice_sequence"]),
            outcome=PaymentOutcome(body["outcome"]),
            reference=body["reference"],
            amount=Decimal(body["amount"]),
            recorded_at=parse_rfc3339_micros(body["recorded_at"]),
            sequence=sequence,
        )


def check_opaque_reference(reference: str, field: str, violations: list[FieldViolation]) -> None:
    """R19: accept only an opaque processor token; a card number (13-19 digits) is refused and never echoed."""
    text = reference or ""
    if _CARD_LIKE_RE.search(text) or _LONG_DIGITS_RE.search(text):
        violations.append(
            FieldViolation(
                field,
                "R19: this looks like a card or account number; the ledger never stores card or bank data, only "
                "the payment processor's opaque reference (such as pm_1NqLiJLkdIwHu7ix)",
            )
        )
    elif not OPAQUE_REFERENCE_RE.match(text):
        violations.append(FieldViolation(field, f"R19: must be {OPAQUE_REFERENCE_RULE}"))


def is_paid(invoice: Invoice, payments: Iterable[Payment], at: int | None = None) -> bool:
    """Settled: nothing was due (R16 credits covered it) or the processor reported SUCCEEDED (by `at`)."""
    if invoice.amount_due <= 0:
        return True
    return any(
        p.invoice_number == invoice.number
        and p.outcome is PaymentOutcome.SUCCEEDED
        and (at is None or p.recorded_at <= at)
        for p in payments
    )


def paid_streak(invoices: Sequence[Invoice], payments: Sequence[Payment], at: int) -> int:
    """R18: consecutive paid invoices counting back from the newest. An invoice with no outcome yet is pending
    and neither counts nor breaks the streak; a FAILED outcome without a later success breaks it."""
    streak = 0
    for invoice in reversed(invoices):
        if is_paid(invoice, payments, at):
            streak += 1
            continue
        failed = any(
            p.invoice_number == invoice.number and p.outcome is PaymentOutcome.FAILED and p.recorded_at <= at
            for p in payments
        )
        if failed:
            break
    return streak


def cadence_at(invoices: Sequence[Invoice], payments: Sequence[Payment], monthly_after: int, at: int) -> Cadence:
    """R18: monthly once `monthly_after` consecutive invoices were paid; R17's threshold before that."""
    if invoices and paid_streak(invoices, payments, at) >= monthly_after:
        return Cadence.MONTHLY
    return Cadence.THRESHOLD_OR_MONTH_END
