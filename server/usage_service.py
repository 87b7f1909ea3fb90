"""PricingService and UsageService: price-book versions (R11, R12) and usage from rollups (R10, R13, R14)."""

from __future__ import annotations

import grpc
from usageledger.v1 import pricing_pb2 as ppb
from usageledger.v1 import pricing_pb2_grpc as ppb_grpc
from usageledger.v1 import usage_pb2 as upb
from usageledger.v1 import usage_pb2_grpc as upb_grpc

from ledger.errors import FieldViolation, InvalidInput
from ledger.intake import Ledger
from ledger.orgs import require_org
from ledger.usage import UsageView
from wire.convert import timestamp_to_micros
from wire.pricing import price_book_request_to_raw, price_book_to_proto
from wire.usage import bucket_size, group_fields, query_violations, usage_to_proto


class PricingServicer(ppb_grpc.PricingServiceServicer):  # type: ignore[misc]
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def SetPriceBook(self, request: ppb.SetPriceBookRequest, context: grpc.ServicerContext) -> ppb.SetPriceBookResponse:
        book, _ = self.ledger.set_price_book(price_book_request_to_raw(request))
        return ppb.SetPriceBookResponse(price_book=price_book_to_proto(book))

    def GetPriceBook(self, request: ppb.GetPriceBookRequest, context: grpc.ServicerContext) -> ppb.GetPriceBookResponse:
        at = timestamp_to_micros(request.at_time) if request.HasField("at_time") else self.ledger.clock()
        return ppb.GetPriceBookResponse(price_book=price_book_to_proto(self.ledger.price_history().at(at)))

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
        violations = query_violations(request)
        if violations:
            raise InvalidInput(violations)
        require_org(self.ledger.store, request.org_id)
        report = self.usage.query(
            request.org_id,
            timestamp_to_micros(request.start_time),
            timestamp_to_micros(request.end_time),
            endpoint_id=request.endpoint_id or None,
            group_by=group_fields(request.group_by),
            bucket=bucket_size(request.bucket),
        )
        return usage_to_proto(report)

    def RebuildRollups(
        self, request: upb.RebuildRollupsRequest, context: grpc.ServicerContext
    ) -> upb.RebuildRollupsResponse:
        if not request.org_id:
            raise InvalidInput([FieldViolation("org_id", "is required")])
        entries, workloads = self.usage.rebuild(request.org_id)
        return upb.RebuildRollupsResponse(entries=entries, workloads=workloads)
