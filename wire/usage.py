"""UsageService's messages: a usage query's groupings and buckets, and rated usage rows (R10, R13, R14)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from usageledger.v1 import ledger_pb2 as lpb
from usageledger.v1 import usage_pb2 as upb

from ledger.errors import FieldViolation
from ledger.events import format_decimal
from ledger.pricebook import MONEY_CURRENCY
from ledger.rating import BucketSize
from ledger.rating.money import fraction_text
from ledger.usage import UsageReport
from wire.convert import micros_to_timestamp

_GROUPS = {
    upb.GROUP_BY_ENDPOINT: "endpoint_id",
    upb.GROUP_BY_WORKLOAD_KIND: "workload_kind",
    upb.GROUP_BY_INSTANCE_TYPE: "instance_type",
    upb.GROUP_BY_WORKER_TYPE: "worker_type",
}
_BUCKETS = {upb.BUCKET_HOUR: BucketSize.HOUR, upb.BUCKET_DAY: BucketSize.DAY}


def query_violations(request: upb.QueryUsageRequest) -> list[FieldViolation]:
    """Every field of a QueryUsage request that is missing or names no grouping or bucket this build knows."""
    violations = []
    if not request.org_id:
        violations.append(FieldViolation("org_id", "is required"))
    for name in ("start_time", "end_time"):
        if not request.HasField(name):
            violations.append(FieldViolation(name, "is required"))
    unknown = [g for g in request.group_by if g not in _GROUPS]
    if unknown:
        violations.append(FieldViolation("group_by", f"unknown grouping {unknown[0]}"))
    if request.bucket not in (upb.BUCKET_UNSPECIFIED, *_BUCKETS):
        violations.append(FieldViolation("bucket", "must be BUCKET_HOUR or BUCKET_DAY"))
    return violations


def group_fields(group_by: Iterable[int]) -> list[str]:
    """The usage-row fields of the groupings asked (known ones: query_violations refused the rest)."""
    return [_GROUPS[g] for g in group_by]


def bucket_size(bucket: int) -> BucketSize | None:
    return _BUCKETS.get(bucket)


def usage_to_proto(report: UsageReport) -> upb.QueryUsageResponse:
    rows = []
    for row in report.rows:
        message = upb.UsageRow(
            endpoint_id=row.endpoint_id or "",
            workload_kind=row.workload_kind or "",
            instance_type=row.instance_type or "",
            worker_type=row.worker_type or "",
            unit=row.unit,
            quantity=row.quantity,
            amount=format_decimal(row.amount),
            storage_kind=row.storage_kind or "",
            amount_fraction=fraction_text(row.exact_amount),
            # The closed value sets again as enums, beside the strings existing clients read.
            workload_kind_value=_enum_value(lpb.WorkloadKind, "WORKLOAD_KIND_", row.workload_kind),
            worker_type_value=_enum_value(lpb.WorkerType, "WORKER_TYPE_", row.worker_type),
            unit_value=_enum_value(upb.UsageUnit, "USAGE_UNIT_", row.unit),
            storage_kind_value=_enum_value(lpb.StorageKind, "STORAGE_KIND_", row.storage_kind),
        )
        if row.storage is not None:
            message.gigabyte_seconds = format_decimal(row.storage.gigabyte_seconds)
            if row.storage.first_tier_gigabyte_seconds is not None:
                message.first_tier_gigabyte_seconds = format_decimal(row.storage.first_tier_gigabyte_seconds)
            if row.storage.beyond_tier_gigabyte_seconds is not None:
                message.beyond_tier_gigabyte_seconds = format_decimal(row.storage.beyond_tier_gigabyte_seconds)
        if row.bucket_start is not None:
            message.bucket_start_time.CopyFrom(micros_to_timestamp(row.bucket_start))
        rows.append(message)
    return upb.QueryUsageResponse(
        rows=rows,
        total_amount=format_decimal(report.total),
        currency_code=MONEY_CURRENCY,
        as_of_size=report.as_of_size,
        total_amount_fraction=fraction_text(report.exact_total),
    )


def _enum_value(enum: Any, prefix: str, name: str | None) -> int:
    """The enum number of `name` (such as "SERVING" or "interval"); 0 (unspecified) when unset."""
    return int(enum.Value(prefix + name.upper())) if name else 0
