"""Usage inside time windows: units by the instant each starts (R10), storage by its interval's start (R15)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from enum import Enum

from ledger.errors import FieldViolation, InvalidInput
from ledger.rating.money import exact_sum
from ledger.rating.sessions import Session
from ledger.rating.storage import StorageCharge
from ledger.rating.units import WindowUsage, usage_of_runs
from ledger.timeutil import MICROS_PER_SECOND

MAX_BUCKETS = 100_000  # about eleven years of hours: more is a caller's mistake, not a chart


class BucketSize(int, Enum):
    """UTC-aligned buckets (Unix time has no leap seconds, so every hour and day is a fixed length)."""

    HOUR = 3600 * MICROS_PER_SECOND
    DAY = 86400 * MICROS_PER_SECOND


def usage_in_window(sessions: Iterable[Session], storage: Iterable[StorageCharge], start: int, end: int) -> WindowUsage:
    """Units (R10: a unit belongs whole to the window containing its start) and storage intervals starting in
    [start, end). Windows that split [start, end) add up to it exactly."""
    compute = usage_of_runs((run for session in sessions for run in session.runs), start, end)
    stored = exact_sum([charge.amount for charge in storage if start <= charge.start < end])
    return WindowUsage(start, end, compute.units, compute.billed_seconds, compute.compute_amount, stored)


def bucket_usage(
    sessions: Iterable[Session], storage: Iterable[StorageCharge], start: int, end: int, size: BucketSize
) -> tuple[WindowUsage, ...]:
    """Every UTC hour or day bucket of [start, end), the first and last clipped to the window, empty ones
    included; they add up exactly to usage_in_window(start, end)."""
    if end <= start:
        return ()
    step = int(size)
    base = start - start % step
    count = -(-(end - base) // step)
    if count > MAX_BUCKETS:
        raise InvalidInput([FieldViolation("end", f"at most {MAX_BUCKETS} buckets per query; got {count}")])
    units = [0] * count
    seconds = [0] * count
    compute: list[list[Decimal]] = [[] for _ in range(count)]
    stored: list[list[Decimal]] = [[] for _ in range(count)]
    for session in sessions:
        for run in session.runs:
            part = run.clip(start, end)
            if part is None:
                continue
            last_start = part.first_unit_start + (part.count - 1) * part.unit_micros
            for index in range((part.first_unit_start - base) // step, (last_start - base) // step + 1):
                piece = part.clip(base + index * step, base + (index + 1) * step)
                if piece is not None:
                    units[index] += piece.count
                    seconds[index] += piece.count * piece.unit_seconds
                    compute[index].append(piece.amount)
    for charge in storage:
        if start <= charge.start < end:
            stored[(charge.start - base) // step].append(charge.amount)
    return tuple(
        WindowUsage(
            max(start, base + index * step),
            min(end, base + (index + 1) * step),
            units[index],
            seconds[index],
            exact_sum(compute[index]),
            exact_sum(stored[index]),
        )
        for index in range(count)
    )
