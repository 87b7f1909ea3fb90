"""BillingService: credits (R16), invoices (R17-R23) and payments (R18, R19) over the one billing engine."""

from __future__ import annotations

import grpc
from usageledger.v1 import billing_pb2 as bpb
from usageledger.v1 import billing_pb2_grpc as bpb_grpc

from ledger.billing.books import OrgBooks
from ledger.billing.cents import CURRENCY, cents_text
from ledger.billing.credits import credit_left
from ledger.billing.engine import BillingEngine
from ledger.billing.payments import cadence_at
from ledger.errors import FieldViolation, InvalidInput
from ledger.orgs import require_org
from wire import paging
from wire.billing import (
    cadence_to_proto,
    credit_to_proto,
    invoice_to_proto,
    outcome_from_proto,
    payment_status,
    payment_to_proto,
)
from wire.convert import timestamp_to_micros


class BillingServicer(bpb_grpc.BillingServiceServicer):  # type: ignore[misc]
    def __init__(self, engine: BillingEngine) -> None:
        self.engine = engine

    def GrantCredit(self, request: bpb.GrantCreditRequest, context: grpc.ServicerContext) -> bpb.GrantCreditResponse:
        expires = timestamp_to_micros(request.expire_time) if request.HasField("expire_time") else None
        grant, duplicate = self.engine.grant_credit(
            request.org_id, request.amount, request.reason, expires, request.request_id
        )
        books = self.engine.books(request.org_id)
        now = self.engine.now()
        balance = next(b for b in books.balances(now) if b.grant.sequence == grant.sequence)
        return bpb.GrantCreditResponse(credit=credit_to_proto(balance), duplicate=duplicate)

    def ListCredits(self, request: bpb.ListCreditsRequest, context: grpc.ServicerContext) -> bpb.ListCreditsResponse:
        size = paging.page_size(request.page_size)
        start = paging.position_token(request.page_token)
        now = self.engine.now()
        require_org(self.engine.ledger.store, request.org_id)
        balances = self.engine.books(request.org_id).balances(now)
        page = balances[start : start + size]
        return bpb.ListCreditsResponse(
            credits=[credit_to_proto(b) for b in page],
            next_page_token=paging.next_position_token(start + size, len(balances)),
            credit_left=cents_text(credit_left(balances, now)),
            currency_code=CURRENCY,
        )

    def CloseBillingPeriod(
        self, request: bpb.CloseBillingPeriodRequest, context: grpc.ServicerContext
    ) -> bpb.CloseBillingPeriodResponse:
        at = timestamp_to_micros(request.close_time) if request.HasField("close_time") else None
        result = self.engine.close(request.org_id, at)
        payments = self.engine.books(request.org_id).payments if result.issued else ()
        return bpb.CloseBillingPeriodResponse(
            issued=[invoice_to_proto(inv, payments) for inv in result.issued],
            explanation=result.explanation,
            cadence=cadence_to_proto(result.cadence),
        )

    def ListInvoices(self, request: bpb.ListInvoicesRequest, context: grpc.ServicerContext) -> bpb.ListInvoicesResponse:
        size = paging.page_size(request.page_size)
        start = paging.position_token(request.page_token)
        require_org(self.engine.ledger.store, request.org_id)
        books = self.engine.books(request.org_id)
        full = request.view == bpb.INVOICE_VIEW_FULL
        page = books.invoices[start : start + size]
        return bpb.ListInvoicesResponse(
            invoices=[invoice_to_proto(inv, books.payments, full=full) for inv in page],
            next_page_token=paging.next_position_token(start + size, len(books.invoices)),
        )

    def GetInvoice(self, request: bpb.GetInvoiceRequest, context: grpc.ServicerContext) -> bpb.GetInvoiceResponse:
        if request.number < 1:
            raise InvalidInput([FieldViolation("number", "invoice numbers start at 1")])
        require_org(self.engine.ledger.store, request.org_id)
        invoice, books = self.engine.invoice(request.org_id, request.number)
        return bpb.GetInvoiceResponse(invoice=invoice_to_proto(invoice, books.payments))

    def RecordPayment(
        self, request: bpb.RecordPaymentRequest, context: grpc.ServicerContext
    ) -> bpb.RecordPaymentResponse:
        outcome = outcome_from_proto(request.outcome)
        if outcome is None:
            raise InvalidInput([FieldViolation("outcome", "R18: PAYMENT_OUTCOME_SUCCEEDED or PAYMENT_OUTCOME_FAILED")])
        if request.invoice_number < 1:
            raise InvalidInput([FieldViolation("invoice_number", "invoice numbers start at 1")])
        payment, duplicate = self.engine.record_payment(
            request.org_id, request.invoice_number, outcome.value, request.reference
        )
        books: OrgBooks = self.engine.books(request.org_id)
        invoice = books.invoice(payment.invoice_number)
        now = self.engine.now()
        monthly_after = books.account.at(now).monthly_after_paid_invoices
        cadence = cadence_at(books.invoices, books.payments, monthly_after, now)
        status, _ = payment_status(invoice, books.payments)
        return bpb.RecordPaymentResponse(
            payment=payment_to_proto(payment),
            duplicate=duplicate,
            payment_status=status,
            cadence=cadence_to_proto(cadence),
        )
