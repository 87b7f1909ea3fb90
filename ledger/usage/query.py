"""Usage rows from rated sessions and storage intervals: grouping, bucketing and exact totals (pure; R10, R13, R14)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import NamedTuple

from ledger.ports import RolledSessionLike, RolledStorageLike
from ledger.rating import BucketSize, UnitRun
from ledger.rating.money import exact_sum, fraction_to_decimal
from ledger.rating.storage import StorageQuantity, storage_quantity

GROUP_DIMENSIONS = ("endpoint_id", "workload_kind", "instance_type", "worker_type")
STORAGE_UNIT = "interval"  # one STORAGE_SAMPLE interval (R13, R14)
MAX_WINDOW_MICROS = 400 * 86400 * 1_000_000


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One group (and bucket) of usage. Dimensions not grouped by are None; `unit` is minute, second or interval.

    `exact_amount` is the row's exact sum; `amount` is it as a Decimal (exact for compute, R11 rates are decimals;
    storage, R13/R14, repeats and is 50 significant digits there). Storage rows carry their billed samples'
    GB-seconds, and network volumes their R14 tier split, so a person can multiply them out (docs/money.md).
    """

    endpoint_id: str | None
    workload_kind: str | None
    instance_type: str | None
    worker_type: str | None
    unit: str
    quantity: int
    amount: Decimal
    bucket_start: int | None = None
    storage_kind: str | None = None
    exact_amount: Fraction = Fraction(0)
    storage: StorageQuantity | None = None


@dataclass(frozen=True)
class UsageReport:
    """The rows and their total. The total is summed exactly from the rows' exact amounts and converted once, so it
    is the same whatever the grouping or bucketing (a sum of rounded rows would differ in the last digits)."""

    rows: tuple[UsageRow, ...]
    total: Decimal
    as_of_size: int
    exact_total: Fraction = Fraction(0)


def unit_name(unit_seconds: int) -> str:
    return "minute" if unit_seconds == 60 else "second" if unit_seconds == 1 else f"{unit_seconds}s"


def usage_rows(
    sessions: Iterable[RolledSessionLike],
    storage: Iterable[RolledStorageLike],
    start: int,
    end: int,
    group_by: Sequence[str],
    bucket: BucketSize | None,
) -> list[UsageRow]:
    """Sum units by the instant each starts (R10) and storage by its interval's start, per group and bucket.

    Compute and storage never share a row, and neither do minutes and seconds (a plan change, R10).
    """
    grouped = [d for d in GROUP_DIMENSIONS if d in group_by]
    step = int(bucket) if bucket is not None else None
    quantities: dict[_Key, int] = {}
    amounts: dict[_Key, list[Decimal]] = {}
    for session in sessions:
        endpoint, kind, instance, worker = (
            str(getattr(session, d)) if d in grouped else None for d in GROUP_DIMENSIONS
        )
        for run in session.runs:
            for piece_start, piece_end in _buckets(start, end, step, run):
                piece = run.clip(piece_start, piece_end)
                if piece is None:
                    continue
                key = _Key(
                    endpoint, kind, instance, worker, unit_name(run.unit_seconds), piece_start if step else None, None
                )
                quantities[key] = quantities.get(key, 0) + piece.count
                amounts.setdefault(key, []).append(piece.amount)
    storage_sums: dict[_Key, Fraction] = {}
    storage_quantities: dict[_Key, StorageQuantity] = {}
    for charge in storage:
        if not start <= charge.start < end:
            continue
        bucket_start = max(start, charge.start - charge.start % step) if step else None
        key = _Key(
            charge.endpoint_id if "endpoint_id" in grouped else None,
            None,
            None,
            None,
            STORAGE_UNIT,
            bucket_start,
            charge.storage_kind,
        )
        quantities[key] = quantities.get(key, 0) + 1
        storage_sums[key] = storage_sums.get(key, Fraction(0)) + charge.exact_amount
        # R8: a development workload's samples bill nothing, so their GB-seconds would not multiply out to the row.
        if not charge.development and charge.gigabytes is not None and charge.interval_seconds is not None:
            sample = storage_quantity(charge.storage_kind, charge.gigabytes, charge.interval_seconds)
            prior = storage_quantities.get(key)
            storage_quantities[key] = sample if prior is None else prior + sample
    rows = []
    for key, quantity in quantities.items():
        if key.storage_kind is not None:
            exact = storage_sums[key]
            amount = fraction_to_decimal(exact)
        else:
            amount = exact_sum(amounts[key])
            exact = Fraction(amount)
        rows.append(
            UsageRow(
                *key[:5],
                quantity=quantity,
                amount=amount,
                bucket_start=key.bucket_start,
                storage_kind=key.storage_kind,
                exact_amount=exact,
                storage=storage_quantities.get(key) if key.storage_kind is not None else None,
            )
        )
    rows.sort(key=_row_order)
    return rows


class _Key(NamedTuple):
    endpoint_id: str | None
    workload_kind: str | None
    instance_type: str | None
    worker_type: str | None
    unit: str
    bucket_start: int | None
    storage_kind: str | None


def _row_order(row: UsageRow) -> tuple[object, ...]:
    return (
        row.bucket_start or 0,
        row.unit == STORAGE_UNIT,
        row.endpoint_id or "",
        row.workload_kind or "",
        row.instance_type or "",
        row.worker_type or "",
        row.unit,
        row.storage_kind or "",
    )


def _buckets(start: int, end: int, step: int | None, run: UnitRun) -> Iterable[tuple[int, int]]:
    """The window, or the UTC buckets of it that the run's unit starts can fall in."""
    if step is None:
        yield start, end
        return
    first = max(start, run.first_unit_start)
    last = min(end, run.end)
    if last <= first:
        return
    position = first - first % step
    while position < last:
        yield max(start, position), min(end, position + step)
        position += step
