"""Storage charges (R13 container disk, R14 network volume): one charge per STORAGE_SAMPLE interval."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from ledger.events import DEFAULT_STORAGE_INTERVAL_SECONDS, EventType, StorageKind, UsageEvent, format_decimal
from ledger.rating.money import ZERO, format_money, fraction_to_decimal
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
    explanation: str


def rate_storage_sample(event: UsageEvent, seq: int) -> StorageCharge:
    """R13/R14 (R8 for development workloads): the charge of one STORAGE_SAMPLE."""
    if event.type is not EventType.STORAGE_SAMPLE or event.storage_kind is None or event.gigabytes is None:
        raise ValueError(f"entry #{seq} is not a complete STORAGE_SAMPLE")
    interval = event.interval_seconds if event.interval_seconds is not None else DEFAULT_STORAGE_INTERVAL_SECONDS
    gigabytes = Fraction(event.gigabytes)
    months = Fraction(interval, SECONDS_PER_MONTH)
    period = f"{format_micros(event.occurred_at - interval * MICROS_PER_SECOND)} to {format_micros(event.occurred_at)}"
    size = f"{format_decimal(event.gigabytes)} GB for {interval} s"
    if event.development:
        rule, exact = "R8", Fraction(0)
        explanation = (
            f"R8: development workload {event.workload_id}: {event.storage_kind.value} {size} "
            f"({period}, entry #{seq}) is not billed"
        )
    elif event.storage_kind is StorageKind.CONTAINER_DISK:
        rule = "R13"
        exact = gigabytes * CONTAINER_DISK_PER_GB_MONTH * months
        explanation = (
            f"R13: container disk {size} ({period}, entry #{seq}): "
            f"{format_decimal(event.gigabytes)} GB x $0.10/GB-month x {interval}/{SECONDS_PER_MONTH} "
            f"= {format_money(exact)}"
        )
    else:
        rule = "R14"
        first_tier = min(gigabytes, Fraction(NETWORK_VOLUME_TIER_GB))
        beyond = max(gigabytes - NETWORK_VOLUME_TIER_GB, Fraction(0))
        exact = (
            first_tier * NETWORK_VOLUME_FIRST_TIER_PER_GB_MONTH + beyond * NETWORK_VOLUME_BEYOND_PER_GB_MONTH
        ) * months
        explanation = (
            f"R14: network volume {event.volume_id} {size} ({period}, entry #{seq}): "
            f"({format_decimal(min(event.gigabytes, Decimal(NETWORK_VOLUME_TIER_GB)))} GB x $0.07 + "
            f"{format_decimal(max(event.gigabytes - NETWORK_VOLUME_TIER_GB, ZERO))} GB x $0.05)/GB-month "
            f"x {interval}/{SECONDS_PER_MONTH} = {format_money(exact)}"
        )
    return StorageCharge(
        seq=seq,
        event_id=event.event_id,
        org_id=event.org_id,
        endpoint_id=event.endpoint_id,
        workload_id=event.workload_id,
        workspace_id=event.workspace_id,
        storage_kind=event.storage_kind,
        volume_id=event.volume_id,
        gigabytes=event.gigabytes,
        interval_seconds=interval,
        start=event.occurred_at - interval * MICROS_PER_SECOND,
        end=event.occurred_at,
        rule=rule,
        exact_amount=exact,
        amount=fraction_to_decimal(exact) if exact else ZERO,
        explanation=explanation,
    )
