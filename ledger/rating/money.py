"""Exact money and time arithmetic for rating (R21): Decimal contexts, and how amounts and durations are written."""

from __future__ import annotations

from decimal import (
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)
from fractions import Fraction

from ledger.events import format_decimal
from ledger.timeutil import MICROS_PER_SECOND

ZERO = Decimal(0)
MICROS = Decimal(MICROS_PER_SECOND)

# R21: rating never rounds. Rates and microsecond durations are finite decimals, so their products, sums and
# divisions by 10^6 are exact; trapping Inexact turns any hidden rounding into an error instead of a wrong bill.
EXACT = Context(prec=200, traps=[Inexact, InvalidOperation, DivisionByZero, Overflow])
# R13/R14: GB x rate x interval / 2,592,000 is a repeating decimal, so storage is carried as an exact Fraction. Its
# Decimal (the wire's decimal strings, whose meaning predates exact_text) has 50 significant digits, far below a
# cent; a person is shown the exact value (exact_text), and totals are summed as Fractions before converting.
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


# A repetend longer than this is written as the fraction instead: a person can check 7/9973 more easily than 9,972
# repeating digits. Storage amounts (R13, R14: denominators of 2, 3 and 5 only) repeat within 9 digits; an R25
# share among n requests within n - 1.
MAX_REPETEND_DIGITS = 60


def exact_text(value: Fraction | Decimal | int) -> str:
    """A rated amount or quantity written exactly, in plain decimal notation (docs/money.md):

    - a terminating value as its digits: `0.0456`, `-3`;
    - a repeating one with its repetend in parentheses, the digits that repeat forever: 721/4320 is
      `0.16689(814)`, 1/3 is `0.(3)`;
    - with a repetend of more than MAX_REPETEND_DIGITS digits, as its fraction in lowest terms: `7/9973`.

    Never rounded: R21 rounds only invoice lines, to cents.
    """
    if not isinstance(value, Fraction):
        if isinstance(value, Decimal):
            return format_decimal(value)
        value = Fraction(value)
    if _terminates(value):
        return format_decimal(fraction_to_decimal(value))
    sign = "-" if value < 0 else ""
    numerator, denominator = abs(value.numerator), value.denominator
    whole, remainder = divmod(numerator, denominator)
    # Long division until a remainder recurs: the digits from its first occurrence on are the repetend. Every
    # remainder is one of 1..denominator-1, so a repeating value recurs within (non-repeating + repetend) digits.
    prefix = _non_repeating_digits(denominator)
    digits: list[str] = []
    seen: dict[int, int] = {}
    while remainder not in seen:
        if len(digits) > prefix + MAX_REPETEND_DIGITS:
            return fraction_text(value)
        seen[remainder] = len(digits)
        digit, remainder = divmod(remainder * 10, denominator)
        digits.append(str(digit))
    start = seen[remainder]
    return f"{sign}{whole}.{''.join(digits[:start])}({''.join(digits[start:])})"


def fraction_text(value: Fraction | Decimal | int) -> str:
    """`numerator/denominator` in lowest terms (`721/4320`; a whole number is over 1): what the wire carries next to
    a decimal string, so a client can check or re-sum amounts exactly."""
    exact = value if isinstance(value, Fraction) else Fraction(value)
    return f"{exact.numerator}/{exact.denominator}"


def format_money(amount: Decimal | Fraction) -> str:
    """`$0.0456`; a repeating amount with its repetend marked, as exact_text writes it: `$0.16689(814)`."""
    return "$" + exact_text(amount)


def format_seconds(micros: int | Fraction) -> str:
    """A duration in seconds without trailing zeros, exactly: 125300000 µs -> `125.3`; a third of a microsecond
    -> `0.000000(3)` (exact_text)."""
    if isinstance(micros, Fraction):
        return exact_text(micros / MICROS_PER_SECOND)
    return format_decimal(EXACT.divide(Decimal(micros), MICROS))


def _non_repeating_digits(denominator: int) -> int:
    """How many fraction digits come before the repetend: the larger power of 2 or of 5 in the denominator."""
    twos = fives = 0
    while denominator % 2 == 0:
        denominator //= 2
        twos += 1
    while denominator % 5 == 0:
        denominator //= 5
        fives += 1
    return max(twos, fives)


def _terminates(value: Fraction) -> bool:
    """Whether the denominator has no prime factor but 2 and 5."""
    return _terminates_denominator(value.denominator)


def _terminates_denominator(denominator: int) -> bool:
    denominator //= denominator & -denominator  # every factor of 2 at once
    while denominator % 5 == 0:
        denominator //= 5
    return denominator == 1
