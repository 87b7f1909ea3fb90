"""Org account settings as ACCOUNT entries: plan granularity (R10), discount (R20), spend limit (R15), cadence (R18).

Each ACCOUNT entry sets some settings from an `effective_from` instant; the settings in force at an instant fold
every entry in force by then, in (effective_from, sequence) order, so a later entry overrides only what it names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from ledger.errors import FieldViolation, InvalidInput
from ledger.events import format_decimal
from ledger.plans import Granularity, Plan, PlanHistory
from ledger.timeutil import format_micros, parse_rfc3339_micros

DEFAULT_SPEND_LIMIT_PER_HOUR = Decimal("80.00")  # R15
DEFAULT_INVOICE_THRESHOLD = Decimal("50.00")  # R17
DEFAULT_MONTHLY_AFTER_PAID_INVOICES = 3  # R18
MAX_DISCOUNT_PERCENT = Decimal("100")


@dataclass(frozen=True, slots=True)
class AccountSettings:
    """The settings in force for an org at some instant."""

    granularity: Granularity = Granularity.PER_MINUTE
    discount_percent: Decimal = Decimal("0")
    spend_limit_per_hour: Decimal = DEFAULT_SPEND_LIMIT_PER_HOUR
    monthly_after_paid_invoices: int = DEFAULT_MONTHLY_AFTER_PAID_INVOICES


@dataclass(frozen=True, slots=True)
class AccountChange:
    """One ACCOUNT entry: the settings it names (None = unchanged) from `effective_from`."""

    effective_from: int
    sequence: int = -1
    granularity: Granularity | None = None
    discount_percent: Decimal | None = None
    spend_limit_per_hour: Decimal | None = None
    monthly_after_paid_invoices: int | None = None
    note: str = ""

    def body(self, org_id: str) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        if self.granularity is not None:
            settings["granularity"] = self.granularity.value
        if self.discount_percent is not None:
            settings["discount_percent"] = format_decimal(self.discount_percent)
        if self.spend_limit_per_hour is not None:
            settings["spend_limit_per_hour"] = format_decimal(self.spend_limit_per_hour)
        if self.monthly_after_paid_invoices is not None:
            settings["monthly_after_paid_invoices"] = self.monthly_after_paid_invoices
        return {
            "org_id": org_id,
            "effective_from": format_micros(self.effective_from),
            "settings": settings,
            "note": self.note,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any], sequence: int) -> AccountChange:
        s = body.get("settings", {})
        return cls(
            effective_from=parse_rfc3339_micros(body["effective_from"]),
            sequence=sequence,
            granularity=Granularity(s["granularity"]) if "granularity" in s else None,
            discount_percent=Decimal(s["discount_percent"]) if "discount_percent" in s else None,
            spend_limit_per_hour=Decimal(s["spend_limit_per_hour"]) if "spend_limit_per_hour" in s else None,
            monthly_after_paid_invoices=s.get("monthly_after_paid_invoices"),
            note=body.get("note", ""),
        )

    def apply(self, settings: AccountSettings) -> AccountSettings:
        changes: dict[str, Any] = {
            name: getattr(self, name)
            for name in ("granularity", "discount_percent", "spend_limit_per_hour", "monthly_after_paid_invoices")
            if getattr(self, name) is not None
        }
        return replace(settings, **changes)


def parse_account_change(raw: Mapping[str, Any], *, default_effective_from: int) -> AccountChange:
    """Validate a settings update given by field name; every bad field is reported."""
    violations: list[FieldViolation] = []
    effective_from = default_effective_from
    if raw.get("effective_from"):
        try:
            effective_from = parse_rfc3339_micros(str(raw["effective_from"]))
        except ValueError as err:
            violations.append(FieldViolation("effective_from", f"not an RFC 3339 time: {err}"))
    granularity = None
    if raw.get("granularity"):
        try:
            granularity = Granularity(raw["granularity"])
        except ValueError:
            violations.append(FieldViolation("granularity", "R10: must be PER_MINUTE or PER_SECOND"))
    discount = _decimal(raw, "discount_percent", violations, upper=MAX_DISCOUNT_PERCENT, rule="R20")
    limit = _decimal(raw, "spend_limit_per_hour", violations, upper=None, rule="R15")
    cadence = raw.get("monthly_after_paid_invoices")
    if cadence is not None and (not isinstance(cadence, int) or isinstance(cadence, bool) or not 1 <= cadence <= 1000):
        violations.append(FieldViolation("monthly_after_paid_invoices", "R18: a whole number from 1 to 1000"))
        cadence = None
    if violations:
        raise InvalidInput(violations)
    if granularity is None and discount is None and limit is None and cadence is None:
        raise InvalidInput([FieldViolation("settings", "name at least one setting to change")])
    return AccountChange(
        effective_from=effective_from,
        granularity=granularity,
        discount_percent=discount,
        spend_limit_per_hour=limit,
        monthly_after_paid_invoices=cadence,
        note=str(raw.get("note", ""))[:200],
    )


def _decimal(
    raw: Mapping[str, Any], name: str, violations: list[FieldViolation], *, upper: Decimal | None, rule: str
) -> Decimal | None:
    value = raw.get(name)
    if value is None or value == "":
        return None
    try:
        if isinstance(value, float):
            raise ValueError("a float is not exact")
        amount = Decimal(str(value))
        if not amount.is_finite() or amount < 0 or (upper is not None and amount > upper):
            raise ValueError("out of range")
    except (ValueError, InvalidOperation):
        bound = f" up to {upper}" if upper is not None else ""
        violations.append(FieldViolation(name, f"{rule}: must be a non-negative decimal string{bound}"))
        return None
    return amount


@dataclass(frozen=True)
class AccountHistory:
    """Every ACCOUNT entry of one org; answers which settings are in force at an instant."""

    changes: Sequence[AccountChange] = field(default_factory=tuple)

    def at(self, instant: int) -> AccountSettings:
        settings = AccountSettings()
        for change in sorted(self.changes, key=lambda c: (c.effective_from, c.sequence)):
            if change.effective_from <= instant:
                settings = change.apply(settings)
        return settings

    def plans(self) -> PlanHistory:
        """The granularity changes as a PlanHistory for rating (R10: a session uses the plan in force at its UP)."""
        return PlanHistory(
            tuple(
                Plan(effective_from=c.effective_from, granularity=c.granularity, version=c.sequence, note=c.note)
                for c in self.changes
                if c.granularity is not None
            )
        )
