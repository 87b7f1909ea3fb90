"""Exact money and time arithmetic for rating (R21): Decimal contexts, and how amounts and durations are written."""

from __future__ import annotations

from decimal import (
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from fractions import Fraction

from ledger.events import format_decimal
from ledger.timeutil import MICROS_PER_SECOND

ZERO = Decimal(0)
MICROS = Decimal(MICROS_PER_SECOND)

# R21: rating never rounds. Rates and microsecond durations are finite decimals, so their products, sums and
# divisions by 10^6 are exact; trapping Inexact turns any hidden rounding into an error instead of a wrong bill.
EXACT = Context(prec=200, traps=[Inexact, InvalidOperation, DivisionByZero, Overflow])
# R13/R14: GB x rate x interval / 2,592,000 is a repeating decimal, so storage is carried as an exact Fraction and
# written as a Decimal of 50 significant digits, far below a cent (R21 rounds only on invoice lines).
STORAGE_DIGITS = Context(prec=50, traps=[InvalidOperation, DivisionByZero, Overflow])


# The functions below call the contexts' methods rather than entering localcontext(): the same arithmetic under
# the same traps, without a context switch per operation (a dispute lookup formats hundreds of amounts).


def exact_sum(amounts: list[Decimal]) -> Decimal:
    """Sum Decimals without the default 28-digit context rounding them."""
    total = ZERO
    for amount in amounts:
        total = EXACT.add(total, amount)
    return total


def money_of(micros: int, rate_per_second: Decimal) -> Decimal:
    """The exact cost of `micros` microseconds at a per-second rate."""
    return EXACT.divide(EXACT.multiply(Decimal(micros), rate_per_second), MICROS)


def fraction_to_decimal(value: Fraction) -> Decimal:
    """A Fraction as a Decimal: exact when it terminates, else 50 significant digits."""
    context = EXACT if _terminates(value) else STORAGE_DIGITS
    return context.divide(Decimal(value.numerator), Decimal(value.denominator))


def ratio_text(numerator: int, denominator: int) -> tuple[str, bool]:
    """numerator / denominator in plain decimal notation, exact when it terminates, else to 50 significant digits
    (as fraction_to_decimal makes it), and whether it is exact. From the two integers: no Fraction is made."""
    exact = _terminates_denominator(denominator)
    context = EXACT if exact else STORAGE_DIGITS
    return format_decimal(context.divide(Decimal(numerator), Decimal(denominator))), exact


def format_money(amount: Decimal | Fraction) -> str:
    """`$0.0456`; a non-terminating Fraction is shown to 12 significant digits with `≈`."""
    if isinstance(amount, Fraction):
        if not _terminates(amount):
            with localcontext(Context(prec=12)):
                approx = Decimal(amount.numerator) / Decimal(amount.denominator)
            return "≈$" + format_decimal(approx)
        amount = fraction_to_decimal(amount)
    return "$" + format_decimal(amount)


def format_seconds(micros: int | Fraction) -> str:
    """A duration in seconds without trailing zeros: 125300000 µs -> `125.3`."""
    if isinstance(micros, Fraction):
        if not _terminates(micros):
            with localcontext(Context(prec=12)):
                approx = Decimal(micros.numerator) / Decimal(micros.denominator) / MICROS
            return "≈" + format_decimal(approx)
        micros_decimal = fraction_to_decimal(micros)
    else:
        micros_decimal = Decimal(micros)
    return format_decimal(EXACT.divide(micros_decimal, MICROS))


def _terminates(value: Fraction) -> bool:
    """Whether the denominator has no prime factor but 2 and 5."""
    return _terminates_denominator(value.denominator)


def _terminates_denominator(denominator: int) -> bool:
    denominator //= denominator & -denominator  # every factor of 2 at once
    while denominator % 5 == 0:
        denominator //= 5
    return denominator == 1
