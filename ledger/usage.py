"""Rated usage of an org: the one view invoicing, spend limits and usage queries read.

`org_rating` re-rates an org's events (complete, with R25 detail); `query` answers usage questions from derived
rollups kept current as entries are appended, so it never re-reads or re-rates a whole log.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, NamedTuple, Protocol

from ledger.errors import FieldViolation, InvalidInput, NotFound
from ledger.intake import Ledger
from ledger.log.entry import org_log_id
from ledger.plans import PlanHistory
from ledger.pricebook import PriceHistory
from ledger.rating import BucketSize, OrgRating, UnitRun, rate_org
from ledger.rating.money import exact_sum, fraction_to_decimal
from ledger.rating.storage import StorageQuantity, storage_quantity
from ledger.tracing import traced

if TYPE_CHECKING:
    from ledger.billing.scope import BillingScope

GROUP_DIMENSIONS = ("endpoint_id", "workload_kind", "instance_type", "worker_type")
STORAGE_UNIT = "interval"  # one STORAGE_SAMPLE interval (R13, R14)
MAX_WINDOW_MICROS = 400 * 86400 * 1_000_000


class RolledSessionLike(Protocol):
    @property
    def endpoint_id(self) -> str: ...
    @property
    def workload_kind(self) -> str: ...
    @property
    def instance_type(self) -> str: ...
    @property
    def worker_type(self) -> str: ...
    @property
    def unit_seconds(self) -> int: ...
    @property
    def runs(self) -> tuple[UnitRun, ...]: ...


class RolledStorageLike(Protocol):
    @property
    def endpoint_id(self) -> str: ...
    @property
    def storage_kind(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def exact_amount(self) -> Fraction: ...
    @property
    def gigabytes(self) -> Decimal | None: ...
    @property
    def interval_seconds(self) -> int | None: ...
    @property
    def development(self) -> bool: ...


class RollupSource(Protocol):
    """Derived rollups (storage/sql/rollups.py implements it)."""

    def catch_up(self, org_id: str, prices: PriceHistory, plans: PlanHistory) -> int: ...

    def rebuild(self, org_id: str, prices: PriceHistory, plans: PlanHistory) -> tuple[int, int]: ...

    def sessions_in(
        self,
        org_id: str,
        start: int,
        end: int,
        endpoint_id: str | None,
        prices: PriceHistory,
        plans: PlanHistory,
        as_of: int | None = None,
    ) -> Sequence[RolledSessionLike]: ...

    def storage_in(self, org_id: str, start: int, end: int, endpoint_id: str | None) -> Sequence[RolledStorageLike]: ...

    def billing_rating(
        self,
        org_id: str,
        prices: PriceHistory,
        plans: PlanHistory,
        *,
        changed_from: int,
        units_from: int | None,
    ) -> OrgRating: ...


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


class UsageView:
    def __init__(self, ledger: Ledger, rollups: RollupSource | None = None) -> None:
        self.ledger = ledger
        self.rollups = rollups

    @traced("ledger.rating.org", ids=("org_id",))
    def org_rating(self, org_id: str, as_of: int | None = None) -> OrgRating:
        """Every session, zero line, storage charge and anomaly of the org, re-rated from the whole log: open
        sessions to their evidence (R10, R28), cut at `as_of` when given. `log_size` is exactly the entries read."""
        try:
            size = self.ledger.store.head(org_log_id(org_id)).size
        except NotFound:
            size = 0
        events = self.ledger.events_of(org_id, stop=size)
        prices = self.ledger.price_history()
        rating = rate_org(events, prices, self.ledger.account_history(org_id).plans(), as_of=as_of)
        return replace(rating, log_size=size)

    @traced("ledger.rating.billing", ids=("org_id",))
    def billing_rating(self, org_id: str, scope: BillingScope) -> OrgRating:
        """The sessions and storage charges a billing evaluation needs (ledger/billing/scope.py), open sessions
        to their evidence (R28); from the rollups when there are any. No zero lines or anomalies: billing charges
        none. `log_size` is exactly how many of the log's entries it reflects."""
        if self.rollups is None:
            return self.org_rating(org_id)
        prices = self.ledger.price_history()
        plans = self.ledger.account_history(org_id).plans()
        size = self.rollups.catch_up(org_id, prices, plans)
        rating = self.rollups.billing_rating(
            org_id, prices, plans, changed_from=scope.changed_from, units_from=scope.units_from
        )
        # The rollups say exactly what the rating reflects (read with it); what catch_up returned is a lower bound.
        return rating if rating.log_size is not None else replace(rating, log_size=size)

    @traced("ledger.usage.query", ids=("org_id", "endpoint_id"))
    def query(
        self,
        org_id: str,
        start: int,
        end: int,
        *,
        as_of: int | None = None,
        endpoint_id: str | None = None,
        group_by: Sequence[str] = (),
        bucket: BucketSize | None = None,
    ) -> UsageReport:
        """Billed units and exact amounts in [start, end), current to the last appended entry: open sessions to
        their evidence (R28), cut at `as_of` when given."""
        if self.rollups is None:
            raise RuntimeError("usage queries need rollups (a SQL store)")
        violations = []
        if end <= start:
            violations.append(FieldViolation("end_time", "must be after start_time"))
        elif end - start > MAX_WINDOW_MICROS:
            violations.append(FieldViolation("end_time", "a usage window spans at most 400 days", "WINDOW_TOO_LONG"))
        for name in group_by:
            if name not in GROUP_DIMENSIONS:
                violations.append(FieldViolation("group_by", f"{name!r} is not one of {', '.join(GROUP_DIMENSIONS)}"))
        if violations:
            raise InvalidInput(violations)
        prices = self.ledger.price_history()
        plans = self.ledger.account_history(org_id).plans()
        size = self.rollups.catch_up(org_id, prices, plans)
        sessions = self.rollups.sessions_in(org_id, start, end, endpoint_id, prices, plans, as_of)
        storage = self.rollups.storage_in(org_id, start, end, endpoint_id)
        rows = usage_rows(sessions, storage, start, end, group_by, bucket)
        exact_total = sum((r.exact_amount for r in rows), Fraction(0))
        return UsageReport(tuple(rows), fraction_to_decimal(exact_total), size, exact_total)

    def rebuild(self, org_id: str) -> tuple[int, int]:
        if self.rollups is None:
            raise RuntimeError("rollups need a SQL store")
        return self.rollups.rebuild(org_id, self.ledger.price_history(), self.ledger.account_history(org_id).plans())
