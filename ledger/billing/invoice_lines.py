"""Invoice lines and their amounts (R10-R14, R16, R20-R23): which line each unit or storage interval goes on, and
how usage, a discount, an adjustment or a carried balance becomes a line rounded half-up to cents (R21)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

from ledger.billing.cents import exact_usd, round_cents, usd
from ledger.billing.invoice_entry import CoveredSession, Invoice, InvoiceLine, LineKind, RecordedAdjustment
from ledger.events import StorageKind, format_decimal
from ledger.rating.money import EXACT
from ledger.rating.storage import (
    CONTAINER_DISK_PER_GB_MONTH,
    NETWORK_VOLUME_BEYOND_PER_GB_MONTH,
    NETWORK_VOLUME_FIRST_TIER_PER_GB_MONTH,
    NETWORK_VOLUME_TIER_GB,
    SECONDS_PER_MONTH,
    StorageCharge,
)
from ledger.timeutil import format_micros


@dataclass
class LineGroup:
    """What one line gathers: its quantity and the usage period it spans (a late line shows it, R22)."""

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


# What puts usage on the same line: (late, reversal, endpoint, workload kind, instance type, worker type, unit
# seconds, unit price) for compute; (late, endpoint, storage kind, volume, rule, price per GB-month) for storage.
ComputeKey = tuple[bool, bool, str, str, str, str, int, Decimal]
StorageKey = tuple[bool, str, str, str | None, str, Decimal]


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


def line_order(key: tuple[Any, ...]) -> tuple[str, ...]:
    """Lines in a stable order on the invoice: by their key's parts as text."""
    return tuple(str(part) for part in key)


def _price(value: Fraction) -> Decimal:
    return Decimal(value.numerator) / Decimal(value.denominator)


# R13, R14 prices per GB-month as decimals, made once (every storage interval of every draft uses them).
_ZERO_PRICE = Decimal(0)
_TIER_GB = Decimal(NETWORK_VOLUME_TIER_GB)
_CONTAINER_DISK_PRICE = _price(CONTAINER_DISK_PER_GB_MONTH)
_FIRST_TIER_PRICE = _price(NETWORK_VOLUME_FIRST_TIER_PER_GB_MONTH)
_BEYOND_TIER_PRICE = _price(NETWORK_VOLUME_BEYOND_PER_GB_MONTH)


def _unit_name(unit_seconds: int) -> str:
    return "minute" if unit_seconds == 60 else "second"


def compute_line(key: ComputeKey, group: LineGroup) -> InvoiceLine:
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


def storage_line(key: StorageKey, group: LineGroup) -> InvoiceLine:
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


def adjustment_line(recorded: RecordedAdjustment) -> InvoiceLine:
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


def discount_line(subtotal: Decimal, percent: Decimal) -> InvoiceLine:
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


def carried_line(previous: Invoice) -> InvoiceLine:
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
