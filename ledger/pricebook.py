"""Price books (R11, R12): per-second flex and active rates per instance type, versioned by effective instant."""

from __future__ import annotations

import bisect
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ledger.errors import FieldViolation, InvalidInput, NotFound
from ledger.events import INSTANCE_TYPE_RE, WorkerType, format_decimal
from ledger.timeutil import format_micros, parse_rfc3339_micros

MONEY_CURRENCY = "USD"


class PriceUnknownAtTime(NotFound):
    """R12: no price-book version is in force at the instant asked about."""

    reason = "PRICE_UNKNOWN_AT_TIME"

    def __init__(self, instant: int) -> None:
        self.instant = instant
        super().__init__(f"R12: no price book is in force at {format_micros(instant)}")

    @property
    def metadata(self) -> Mapping[str, str]:
        return {"time": format_micros(self.instant)}


class InstanceTypeNotPriced(NotFound):
    """R11: the instance type has no rate in the price-book version in force."""

    reason = "INSTANCE_TYPE_NOT_PRICED"

    def __init__(self, instance_type: str, version: int) -> None:
        self.instance_type = instance_type
        self.version = version
        super().__init__(f"R11: instance type {instance_type!r} is not in price book v{version}")

    @property
    def metadata(self) -> Mapping[str, str]:
        return {"instance_type": self.instance_type, "price_version": str(self.version)}


@dataclass(frozen=True, slots=True)
class InstanceRate:
    """R11: per-second rates of one instance type; a per-minute unit costs 60 x these."""

    flex_per_second: Decimal
    active_per_second: Decimal

    def per_second(self, worker_type: WorkerType) -> Decimal:
        return self.active_per_second if worker_type is WorkerType.ACTIVE else self.flex_per_second


@dataclass(frozen=True)
class PriceBook:
    """One price-book version. `version` is the sequence number of its PRICE_BOOK entry in the system log (R12)."""

    effective_from: int
    rates: Mapping[str, InstanceRate]
    version: int = 0
    note: str = ""

    def rate(self, instance_type: str) -> InstanceRate:
        try:
            return self.rates[instance_type]
        except KeyError:
            raise InstanceTypeNotPriced(instance_type, self.version) from None

    def body(self) -> dict[str, Any]:
        """The canonical PRICE_BOOK entry body."""
        return {
            "effective_from": format_micros(self.effective_from),
            "note": self.note,
            "currency": MONEY_CURRENCY,
            "rates": {
                name: {
                    "flex_per_second": format_decimal(rate.flex_per_second),
                    "active_per_second": format_decimal(rate.active_per_second),
                }
                for name, rate in sorted(self.rates.items())
            },
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any], version: int) -> PriceBook:
        rates = {
            name: InstanceRate(Decimal(r["flex_per_second"]), Decimal(r["active_per_second"]))
            for name, r in body["rates"].items()
        }
        return cls(parse_rfc3339_micros(body["effective_from"]), rates, version, body.get("note", ""))


def parse_price_book(raw: Mapping[str, Any], *, default_effective_from: int) -> PriceBook:
    """Validate a price-book update: {"effective_from": T, "rates": {TYPE: {flex_per_second, active_per_second}}}."""
    violations: list[FieldViolation] = []
    effective_from = default_effective_from
    if raw.get("effective_from"):
        try:
            effective_from = parse_rfc3339_micros(str(raw["effective_from"]))
        except ValueError as err:
            violations.append(FieldViolation("effective_from", f"not an RFC 3339 time: {err}"))
    rates: dict[str, InstanceRate] = {}
    raw_rates = raw.get("rates")
    if not isinstance(raw_rates, Mapping) or not raw_rates:
        violations.append(
            FieldViolation("rates", "must map each instance type to its flex and active per-second rates")
        )
        raw_rates = {}
    for name, pair in raw_rates.items():
        if not isinstance(name, str) or not INSTANCE_TYPE_RE.match(name):
            violations.append(FieldViolation(f"rates[{str(name)[:40]!r}]", "bad instance type name"))
            continue
        parsed: list[Decimal] = []
        for key in ("flex_per_second", "active_per_second"):
            value = pair.get(key) if isinstance(pair, Mapping) else None
            try:
                if isinstance(value, float) or value is None:
                    raise ValueError
                amount = Decimal(str(value))
                if not amount.is_finite() or amount < 0:
                    raise ValueError
                parsed.append(amount)
            except (ValueError, ArithmeticError):
                violations.append(FieldViolation(f"rates[{name!r}].{key}", "must be a non-negative decimal string"))
        if len(parsed) == 2:
            rates[name] = InstanceRate(parsed[0], parsed[1])
    if violations:
        raise InvalidInput(violations)
    return PriceBook(effective_from, rates, note=str(raw.get("note", ""))[:200])


@dataclass(frozen=True)
class PriceHistory:
    """Every price-book version in force order; picks the one in force at an instant (R12)."""

    versions: Sequence[PriceBook] = field(default_factory=list)

    def at(self, instant: int) -> PriceBook:
        chosen: PriceBook | None = None
        for book in self.versions:
            if book.effective_from <= instant and (
                chosen is None or (book.effective_from, book.version) >= (chosen.effective_from, chosen.version)
            ):
                chosen = book
        if chosen is None:
            raise PriceUnknownAtTime(instant)
        return chosen

    def knows(self, instance_type: str) -> bool:
        """An instance type is accepted if any version prices it (R11); rating still uses the version in force."""
        return instance_type in self.known_instance_types

    @functools.cached_property
    def known_instance_types(self) -> frozenset[str]:
        """Every instance type some version prices: what `knows` accepts, asked once per ingested event."""
        return frozenset(name for book in self.versions for name in book.rates)

    def prices_at(self, instance_type: str, instant: int) -> bool:
        """R11: whether the version in force at `instant` has a rate for `instance_type`. Asked for every ingested
        event, so the version is found by bisection (`at` scans every version) and the answer is a set lookup."""
        starts, books = self._in_force_order
        position = bisect.bisect_right(starts, instant)
        return position > 0 and instance_type in books[position - 1].rates

    def first_priced(self, instance_type: str) -> int | None:
        """The earliest instant from which some version prices `instance_type`, for R11's refusal message."""
        return min((book.effective_from for book in self.versions if instance_type in book.rates), default=None)

    @functools.cached_property
    def _in_force_order(self) -> tuple[list[int], list[PriceBook]]:
        """The versions by (effective_from, version), as `at` ranks them: the last one starting at or before an
        instant is the one in force then (R12)."""
        books = sorted(self.versions, key=lambda book: (book.effective_from, book.version))
        return [book.effective_from for book in books], books


# R11: the GPU table of 004_4e306631aec1dee8.txt, per second, flex then active.
_DEFAULT_ROWS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("A4000", "A4500", "RTX 4000"), "0.00016", "0.00011"),
    (("4090 PRO",), "0.00031", "0.00021"),
    (("L4", "A5000", "3090"), "0.00019", "0.00013"),
    (("L40", "L40S", "6000 Ada PRO"), "0.00053", "0.00037"),
    (("A6000", "A40"), "0.00034", "0.00024"),
    (("H100 PRO",), "0.00116", "0.00093"),
    (("A100",), "0.00076", "0.00060"),
    (("H200 PRO",), "0.00155", "0.00124"),
    (("B200",), "0.00240", "0.00190"),
)
# The default book is in force from the epoch so that any late event still finds a price.
DEFAULT_EFFECTIVE_FROM = 0


def default_price_book() -> PriceBook:
    rates = {
        name: InstanceRate(Decimal(flex), Decimal(active)) for names, flex, active in _DEFAULT_ROWS for name in names
    }
    return PriceBook(
        DEFAULT_EFFECTIVE_FROM, rates, version=0, note="R11 default: GPU table of 004_4e306631aec1dee8.txt"
    )
