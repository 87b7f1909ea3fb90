"""PricingService and UsageService: price-book versions (R11, R12) and usage from rollups (R10, R13, R14)."""

from __future__ import annotations

from typing import Any

import grpc
from usageledger.v1 import ledger_pb2 as lpb
from usageledger.v1 import pricing_pb2 as ppb
from usageledger.v1 import pricing_pb2_grpc as ppb_grpc
from usageledger.v1 import usage_pb2 as upb
from usageledger.v1 import usage_pb2_grpc as upb_grpc

from ledger.errors import FieldViolation, InvalidInput, LedgerError
from ledger.events import format_decimal
from ledger.intake import Ledger
from ledger.orgs import require_org
from ledger.pricebook import MONEY_CURRENCY, PriceBook
from ledger.rating import BucketSize
from ledger.rating.money import fraction_text
from ledger.timeutil import format_micros
from ledger.usage import UsageView
from server.errors import abort
from wire.convert import micros_to_timestamp, timestamp_to_micros

_GROUPS = {
    upb.GROUP_BY_ENDPOINT: "endpoint_id",
    upb.GROUP_BY_WORKLOAD_KIND: "workload_kind",
    upb.GROUP_BY_INSTANCE_TYPE: "instance_type",
    upb.GROUP_BY_WORKER_TYPE: "worker_type",
}
_BUCKETS = {upb.BUCKET_HOUR: BucketSize.HOUR, upb.BUCKET_DAY: BucketSize.DAY}


def price_book_to_proto(book: PriceBook) -> ppb.PriceBook:
    return ppb.PriceBook(
        version=book.version,
        effective_time=micros_to_timestamp(book.effective_from),
        rates=[
            ppb.InstanceRate(
                instance_type=name,
                flex_per_second=format_decimal(rate.flex_per_second),
                active_per_second=format_decimal(rate.active_per_second),
            )
            for name, rate in sorted(book.rates.items())
        ],
        note=book.note,
        currency_code=MONEY_CURRENCY,
    )


class PricingServicer(ppb_grpc.PricingServiceServicer):  # type: ignore[misc]
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def SetPriceBook(self, request: ppb.SetPriceBookRequest, context: grpc.ServicerContext) -> ppb.SetPriceBookResponse:
        raw: dict[str, object] = {
            "rates": {
                r.instance_type: {"flex_per_second": r.flex_per_second, "active_per_second": r.active_per_second}
                for r in request.rates
            },
            "note": request.note,
        }
        if request.HasField("effective_time"):
            raw["effective_from"] = format_micros(timestamp_to_micros(request.effective_time))
        try:
            book, _ = self.ledger.set_price_book(raw)
        except LedgerError as err:
            abort(context, err)
            raise
        return ppb.SetPriceBookResponse(price_book=price_book_to_proto(book))

    def GetPriceBook(self, request: ppb.GetPriceBookRequest, context: grpc.ServicerContext) -> ppb.GetPriceBookResponse:
        at = timestamp_to_micros(request.at_time) if request.HasField("at_time") else self.ledger.clock()
        try:
            book = self.ledger.price_history().at(at)
        except LedgerError as err:
            abort(context, err)
            raise
        return ppb.GetPriceBookResponse(price_book=price_book_to_proto(book))

    def ListPriceBooks(
        self, request: ppb.ListPriceBooksRequest, context: grpc.ServicerContext
    ) -> ppb.ListPriceBooksResponse:
        books = sorted(self.ledger.price_history().versions, key=lambda b: (b.effective_from, b.version))
        return ppb.ListPriceBooksResponse(price_books=[price_book_to_proto(b) for b in books])


class UsageServicer(upb_grpc.UsageServiceServicer):  # type: ignore[misc]
    """Usage queries and rollup rebuilds over the UsageView it is given (its rollups' follower keeps them current)."""

    def __init__(self, ledger: Ledger, usage: UsageView) -> None:
        self.ledger = ledger
        self.usage = usage

    def QueryUsage(self, request: upb.QueryUsageRequest, context: grpc.ServicerContext) -> upb.QueryUsageResponse:
        try:
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
            if violations:
                raise InvalidInput(violations)
            require_org(self.ledger.store, request.org_id)
            report = self.usage.query(
                request.org_id,
                timestamp_to_micros(request.start_time),
                timestamp_to_micros(request.end_time),
                endpoint_id=request.endpoint_id or None,
                group_by=[_GROUPS[g] for g in request.group_by],
                bucket=_BUCKETS.get(request.bucket),
            )
        except LedgerError as err:
            abort(context, err)
            raise
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

    def RebuildRollups(
        self, request: upb.RebuildRollupsRequest, context: grpc.ServicerContext
    ) -> upb.RebuildRollupsResponse:
        try:
            if not request.org_id:
                raise InvalidInput([FieldViolation("org_id", "is required")])
            entries, workloads = self.usage.rebuild(request.org_id)
        except LedgerError as err:
            abort(context, err)
            raise
        return upb.RebuildRollupsResponse(entries=entries, workloads=workloads)


def register_pricing(ledger: Ledger, server: grpc.Server) -> str:
    ppb_grpc.add_PricingServiceServicer_to_server(PricingServicer(ledger), server)
    return str(ppb.DESCRIPTOR.services_by_name["PricingService"].full_name)


def register_usage(ledger: Ledger, server: grpc.Server, usage: UsageView) -> str:
    """Add UsageService answering from `usage` (built once per store: storage.sql.rollups.usage_view)."""
    upb_grpc.add_UsageServiceServicer_to_server(UsageServicer(ledger, usage), server)
    return str(upb.DESCRIPTOR.services_by_name["UsageService"].full_name)


def _enum_value(enum: Any, prefix: str, name: str | None) -> int:
    """The enum number of `name` (such as "SERVING" or "interval"); 0 (unspecified) when unset."""
    return int(enum.Value(prefix + name.upper())) if name else 0
