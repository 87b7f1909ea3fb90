"""Money on invoices (R21): exact amounts rounded half-up to cents only where a figure is written on an invoice."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation, localcontext
from fractions import Fraction

from ledger.errors import FieldViolation
from ledger.events import format_decimal

CURRENCY = "USD"
CENT = Decimal("0.01")
ZERO_CENTS = Decimal("0.00")
# Wide enough that quantize never runs out of digits on any amount the ledger can hold; rounding happens only
# in quantize, where R21 asks for it.
_WIDE = Context(prec=200)


def round_cents(value: Decimal | Fraction | int) -> Decimal:
    """R21: half-up to cents, ties away from zero (0.125 -> 0.13, 0.124999 -> 0.12, -0.125 -> -0.13).

    A Fraction (storage, R13/R14) is rounded exactly, never through a truncated decimal.
    """
    if isinstance(value, Fraction):
        scaled = abs(value) * 100
        cents = int(scaled + Fraction(1, 2))  # floor(|x| * 100 + 1/2): half-up on the magnitude
        signed = -cents if value < 0 else cents
        return Decimal(signed).scaleb(-2)
    with localcontext(_WIDE):
        return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def cents_text(amount: Decimal) -> str:
    """An invoice figure as written in entry bodies: always two decimals (`12.30`, `-0.05`)."""
    return f"{amount.quantize(CENT):f}"


def money_text(amount: Decimal) -> str:
    """An exact figure with at least two decimals: `10.00`, `8.64`, `10.0872` (never rounded)."""
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= -2:
        return cents_text(amount)
    return format_decimal(amount)


def usd(amount: Decimal) -> str:
    """`$12.30`, `-$0.05`: invoice figures for people."""
    text = cents_text(round_cents(amount))
    return f"-${text[1:]}" if text.startswith("-") else f"${text}"


def exact_usd(amount: Decimal) -> str:
    """An exact (unrounded) figure for people: `$0.0456`."""
    text = format_decimal(amount)
    return f"-${text[1:]}" if text.startswith("-") else f"${text}"


def parse_usd(
    text: str, field: str, violations: list[FieldViolation], *, rule: str, allow_zero: bool = False
) -> Decimal | None:
    """A positive USD amount in cents as a person types it (`25`, `25.5`, `25.50`); None after recording why not."""
    try:
        value = Decimal(str(text).strip())
        if not value.is_finite():
            raise ValueError
    except (InvalidOperation, ValueError):
        violations.append(FieldViolation(field, f"{rule}: {text!r} is not a decimal amount in USD, such as 25.00"))
        return None
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        violations.append(FieldViolation(field, f"{rule}: an amount in USD has at most 2 decimals (cents); got {text}"))
        return None
    if value < 0 or (value == 0 and not allow_zero):
        violations.append(FieldViolation(field, f"{rule}: must be more than $0.00; got {text}"))
        return None
    return value
