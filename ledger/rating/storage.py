"""Storage charges (R13 container disk, R14 network volume): one charge per STORAGE_SAMPLE interval."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from ledger.events import DEFAULT_STORAGE_INTERVAL_SECONDS, EventType, StorageKind, UsageEvent, format_decimal
from ledger.rating.money import EXACT, ZERO, format_money, fraction_to_decimal
from ledger.timeutil import MICROS_PER_SECOND, format_micros

SECONDS_PER_MONTH = 2_592_000  # R13: a month is 30 days
CONTAINER_DISK_PER_GB_MONTH = Fraction(10, 100)  # R13: $0.10
NETWORK_VOLUME_TIER_GB = 1000  # R14: the first 1,000 GB ...
NETWORK_VOLUME_FIRST_TIER_PER_GB_MONTH = Fraction(7, 100)  # ... at $0.07
NETWORK_VOLUME_BEYOND_PER_GB_MONTH = Fraction(5, 100)  # R14: beyond 1,000 GB at $0.05


@dataclass(frozen=True, slots=True)
class StorageCharge:
    """One storage interval [start, end) = [occurred_at - interval_seconds, occurred_at) and its charge.

    `exact_amount` is the exact Fraction; `amount` is it as a Decimal (exact when it terminates, else 50
    significant digits). `rule` is R13, R14, or R8 for a development workload's storage, which bills nothing.
    """

    seq: int
    event_id: str
    org_id: str
    endpoint_id: str
    workload_id: str
    workspace_id: str | None
    storage_kind: StorageKind
    volume_id: str | None
    gigabytes: Decimal
    interval_seconds: int
    start: int
    end: int
    rule: str
    exact_amount: Fraction
    amount: Decimal

    @property
    def explanation(self) -> str:
        """The charge in words, with the rule's arithmetic (made on demand: billing rates many and shows none)."""
        terms = _terms(self.storage_kind, self.gigabytes, self.interval_seconds, self.rule == "R8")
        size = f"{terms.gigabytes_text} GB for {self.interval_seconds} s"
        period = f"{format_micros(self.start)} to {format_micros(self.end)}, entry #{self.seq}"
        if self.rule == "R8":
            return (
                f"R8: development workload {self.workload_id}: {self.storage_kind.value} {size} ({period}) "
                "is not billed"
            )
        if self.storage_kind is StorageKind.CONTAINER_DISK:
            return f"R13: container disk {size} ({period}): {terms.arithmetic}"
        return f"R14: network volume {self.volume_id} {size} ({period}): {terms.arithmetic}"


@dataclass(frozen=True, slots=True)
class _Terms:
    """What a sample's size, interval and kind decide, whichever sample it is: many samples repeat them."""

    rule: str
    exact_amount: Fraction
    amount: Decimal
    gigabytes_text: str
    arithmetic: str  # the rule's arithmetic in words, ending in the amount


@functools.lru_cache(maxsize=4096)
def _terms(storage_kind: StorageKind, gigabytes: Decimal, interval_seconds: int, development: bool) -> _Terms:
    """R13/R14 (R8 for development workloads) on a size and an interval. Cached: a replica's samples mostly repeat
    one size and interval, and equal Decimals (72 and 72.0) rate alike."""
    gb = Fraction(gigabytes)
    months = Fraction(interval_seconds, SECONDS_PER_MONTH)
    months_text = f"{interval_seconds}/{SECONDS_PER_MONTH}"
    gb_text = format_decimal(gigabytes)
    if development:
        return _Terms("R8", Fraction(0), ZERO, gb_text, "not billed")
    if storage_kind is StorageKind.CONTAINER_DISK:
        exact = gb * CONTAINER_DISK_PER_GB_MONTH * months
        arithmetic = f"{gb_text} GB x $0.10/GB-month x {months_text} = {format_money(exact)}"
        return _Terms("R13", exact, fraction_to_decimal(exact) if exact else ZERO, gb_text, arithmetic)
    first_tier = min(gb, Fraction(NETWORK_VOLUME_TIER_GB))
    beyond = max(gb - NETWORK_VOLUME_TIER_GB, Fraction(0))
    per_month = first_tier * NETWORK_VOLUME_FIRST_TIER_PER_GB_MONTH + beyond * NETWORK_VOLUME_BEYOND_PER_GB_MONTH
    exact = per_month * months
    first_text = format_decimal(min(gigabytes, Decimal(NETWORK_VOLUME_TIER_GB)))
    beyond_text = format_decimal(max(gigabytes - NETWORK_VOLUME_TIER_GB, ZERO))
    arithmetic = (
        f"({first_text} GB x $0.07 + {beyond_text} GB x $0.05)/GB-month x {months_text} = {format_money(exact)}"
    )
    return _Terms("R14", exact, fraction_to_decimal(exact) if exact else ZERO, gb_text, arithmetic)


@dataclass(frozen=True, slots=True)
class StorageQuantity:
    """What a person multiplies by the rates to check storage charges: GB x seconds, and for network volumes the
    R14 split into the first 1,000 GB and the gigabytes beyond (None for container disk, R13, which has one rate).
    Each is exact (gigabytes have at most 9 decimals, intervals are whole seconds)."""

    gigabyte_seconds: Decimal
    first_tier_gigabyte_seconds: Decimal | None
    beyond_tier_gigabyte_seconds: Decimal | None

    def __add__(self, other: StorageQuantity) -> StorageQuantity:
        return StorageQuantity(
            EXACT.add(self.gigabyte_seconds, other.gigabyte_seconds),
            _add_tier(self.first_tier_gigabyte_seconds, other.first_tier_gigabyte_seconds),
            _add_tier(self.beyond_tier_gigabyte_seconds, other.beyond_tier_gigabyte_seconds),
        )


def _add_tier(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    return b if a is None else a if b is None else EXACT.add(a, b)


def storage_quantity(storage_kind: StorageKind | str, gigabytes: Decimal, interval_seconds: int) -> StorageQuantity:
    """R13/R14's quantity of one sample: amount = GB-seconds x rate per GB-month / 2,592,000, per tier for R14."""
    total = EXACT.multiply(gigabytes, Decimal(interval_seconds))
    if storage_kind != StorageKind.NETWORK_VOLUME:
        return StorageQuantity(total, None, None)
    first = EXACT.multiply(min(gigabytes, Decimal(NETWORK_VOLUME_TIER_GB)), Decimal(interval_seconds))
    return StorageQuantity(total, first, EXACT.subtract(total, first))


def rate_storage_sample(event: UsageEvent, seq: int) -> StorageCharge:
    """R13/R14 (R8 for development workloads): the charge of one STORAGE_SAMPLE."""
    if event.type is not EventType.STORAGE_SAMPLE or event.storage_kind is None or event.gigabytes is None:
        raise ValueError(f"entry #{seq} is not a complete STORAGE_SAMPLE")
    interval = event.interval_seconds if event.interval_seconds is not None else DEFAULT_STORAGE_INTERVAL_SECONDS
    return storage_charge(
        seq,
        event.event_id,
        event.org_id,
        event.endpoint_id,
        event.workload_id,
        event.workspace_id,
        event.storage_kind,
        event.volume_id,
        event.gigabytes,
        interval,
        event.occurred_at,
        development=event.development,
    )


def storage_charge(
    seq: int,
    event_id: str,
    org_id: str,
    endpoint_id: str,
    workload_id: str,
    workspace_id: str | None,
    storage_kind: StorageKind,
    volume_id: str | None,
    gigabytes: Decimal,
    interval_seconds: int,
    occurred_at: int,
    *,
    development: bool,
) -> StorageCharge:
    """R13/R14 (R8 for development workloads) on a sample's fields (the usage rollups keep them)."""
    terms = _terms(storage_kind, gigabytes, interval_seconds, development)
    return StorageCharge(
        seq=seq,
        event_id=event_id,
        org_id=org_id,
        endpoint_id=endpoint_id,
        workload_id=workload_id,
        workspace_id=workspace_id,
        storage_kind=storage_kind,
        volume_id=volume_id,
        gigabytes=gigabytes,
        interval_seconds=interval_seconds,
        start=occurred_at - interval_seconds * MICROS_PER_SECOND,
        end=occurred_at,
        rule=terms.rule,
        exact_amount=terms.exact_amount,
        amount=terms.amount,
    )
