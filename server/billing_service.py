"""BillingService (credits R16, invoices R17-R23, payments R18-R19), the billing engine of each server and its
period closer, and the hook the append path calls to wake the closer."""

from __future__ import annotations

import base64
import contextlib
import contextvars
import logging
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

import grpc
from usageledger.v1 import account_pb2 as apb
from usageledger.v1 import billing_pb2 as bpb
from usageledger.v1 import billing_pb2_grpc as bpb_grpc

from ledger.billing.cents import CURRENCY, cents_text
from ledger.billing.closer import PeriodCloser
from ledger.billing.credits import CreditBalance, credit_left
from ledger.billing.engine import DEFAULT_INVOICE_GRACE_SECONDS, BillingEngine, OrgBooks
from ledger.billing.invoices import Cadence, CoveredSession, Invoice, InvoiceLine, Trigger
from ledger.billing.payments import Payment, PaymentOutcome, cadence_at, is_paid
from ledger.errors import FieldViolation, InvalidInput, LedgerError
from ledger.events import format_decimal
from ledger.intake import Ledger
from ledger.log.entry import org_log_id, org_of_log
from ledger.metrics import readings, rollup_lag_sources
from ledger.orgs import require_org
from ledger.ports import Appended
from server.errors import abort
from storage.sql.rollups import UsageRollups
from wire.convert import micros_to_timestamp, timestamp_to_micros

log = logging.getLogger("usageledger.billing")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class BillingOptions:
    """How the server runs billing. `close_interval` seconds between closer ticks (R15, R17, R19); None runs no
    closer: invoices and state then change only through the RPCs (CloseBillingPeriod, payment-method changes)."""

    close_interval: float | None = None
    # R17: a month-end invoice is issued on the wall clock this long after its month ended, if the settled-through
    # time (R28) has not reached the end by then.
    invoice_grace_seconds: int = DEFAULT_INVOICE_GRACE_SECONDS
    # R19: the credit every new org starts with (0: none).
    starter_credit: Decimal = Decimal(0)


_OPTIONS: contextvars.ContextVar[BillingOptions | None] = contextvars.ContextVar("billing_options", default=None)
_ENGINES: weakref.WeakKeyDictionary[Ledger, BillingEngine] = weakref.WeakKeyDictionary()
_CLOSERS: weakref.WeakKeyDictionary[Ledger, PeriodCloser] = weakref.WeakKeyDictionary()
# Per server: the call that stops exporting its gauges (usageledger.rollup.lag).
_GAUGES: weakref.WeakKeyDictionary[Ledger, Callable[[], None]] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def billing_options(options: BillingOptions) -> Iterator[None]:
    """The options register_billing uses while the server's services are registered (server.app.start_server)."""
    token = _OPTIONS.set(options)
    try:
        yield
    finally:
        _OPTIONS.reset(token)


def engine_for(ledger: Ledger) -> BillingEngine:
    """The one billing engine (and state hub) of a server's ledger, shared by its services and its closer."""
    engine = _ENGINES.get(ledger)
    if engine is None:
        engine = _ENGINES.setdefault(ledger, BillingEngine(ledger))
    return engine


def closer_for(ledger: Ledger) -> PeriodCloser | None:
    return _CLOSERS.get(ledger)


def wake_billing(ledger: Ledger, appended: Iterable[Appended]) -> None:
    """After an append: ask the period closer (if any) to re-evaluate the orgs that got new entries (R15, R19)."""
    closer = _CLOSERS.get(ledger)
    if closer is not None:
        logs = {a.log_id for a in appended if not a.duplicate}  # per event: the cheapest test first
        orgs = {org for log_id in logs if (org := org_of_log(log_id)) is not None}
        if orgs:
            closer.notify(orgs)


def stop_billing(ledger: Ledger) -> None:
    """Stop the closer (finishing its current org) and end every watch stream; call before the store closes."""
    stop_gauges = _GAUGES.pop(ledger, None)
    if stop_gauges is not None:
        stop_gauges()
    closer = _CLOSERS.pop(ledger, None)
    if closer is not None:
        closer.stop()
    engine = _ENGINES.get(ledger)
    if engine is not None:
        engine.hub.close()


def _serving(server: grpc.Server) -> Callable[[], bool]:
    ref = weakref.ref(server)

    def serving() -> bool:
        live = ref()
        # wait_for_termination returns True when it timed out, i.e. the server still runs.
        return live is not None and bool(live.wait_for_termination(timeout=0))

    return serving


# -- paging (AIP-158) ---------------------------------------------------------------------------------------------


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidInput([FieldViolation("page_size", "must not be negative")])
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def page_start(token: str) -> int:
    """Page tokens are opaque to clients: base64 of the next position."""
    if not token:
        return 0
    try:
        value = int(base64.urlsafe_b64decode(token.encode()).decode())
        if value < 0:
            raise ValueError
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidInput([FieldViolation("page_token", "is not a page token this server issued")]) from err
    return value


def page_token(position: int, total: int) -> str:
    return base64.urlsafe_b64encode(str(position).encode()).decode() if position < total else ""


# -- proto conversion -----------------------------------------------------------------------------------------------

_CADENCE = {
    Cadence.THRESHOLD_OR_MONTH_END: apb.INVOICE_CADENCE_THRESHOLD_OR_MONTH_END,
    Cadence.MONTHLY: apb.INVOICE_CADENCE_MONTHLY,
}
_TRIGGER = {Trigger.THRESHOLD: bpb.INVOICE_TRIGGER_THRESHOLD, Trigger.MONTH_END: bpb.INVOICE_TRIGGER_MONTH_END}
_OUTCOME_TO_PROTO = {
    PaymentOutcome.SUCCEEDED: bpb.PAYMENT_OUTCOME_SUCCEEDED,
    PaymentOutcome.FAILED: bpb.PAYMENT_OUTCOME_FAILED,
}
_OUTCOME_FROM_PROTO = {v: k for k, v in _OUTCOME_TO_PROTO.items()}


def cadence_to_proto(cadence: Cadence) -> int:
    return int(_CADENCE[cadence])


def credit_to_proto(balance: CreditBalance) -> bpb.Credit:
    grant = balance.grant
    message = bpb.Credit(
        sequence=grant.sequence,
        amount=cents_text(grant.amount),
        used=cents_text(balance.used),
        left=cents_text(balance.left),
        reason=grant.reason,
        grant_time=micros_to_timestamp(grant.granted_at),
        expired=balance.expired,
        request_id=grant.request_id,
        currency_code=CURRENCY,
    )
    if grant.expires_at is not None:
        message.expire_time.CopyFrom(micros_to_timestamp(grant.expires_at))
    return message


def payment_status(invoice: Invoice, payments: Sequence[Payment]) -> tuple[int, str]:
    """The invoice's settlement (and the reference of its last outcome) from the PAYMENT entries."""
    mine = [p for p in payments if p.invoice_number == invoice.number]
    reference = mine[-1].reference if mine else ""
    if invoice.amount_due <= 0:
        return bpb.PAYMENT_STATUS_NOT_DUE, reference
    if is_paid(invoice, payments):
        paid = next(p for p in reversed(mine) if p.outcome is PaymentOutcome.SUCCEEDED)
        return bpb.PAYMENT_STATUS_PAID, paid.reference
    if mine:
        return bpb.PAYMENT_STATUS_FAILED, reference
    return bpb.PAYMENT_STATUS_PENDING, reference


def line_to_proto(line: InvoiceLine) -> bpb.InvoiceLine:
    message = bpb.InvoiceLine(
        kind=bpb.InvoiceLineKind.Value("INVOICE_LINE_KIND_" + line.kind.value),
        description=line.description,
        rule=line.rule,
        quantity=format_decimal(line.quantity),
        unit=line.unit,
        unit_price=format_decimal(line.unit_price),
        price_unit=line.price_unit,
        quantity_divisor=line.quantity_divisor,
        amount=cents_text(line.amount),
        late=line.late,
        reversal=line.reversal,
        endpoint_id=line.endpoint_id or "",
        workload_kind=line.workload_kind or "",
        instance_type=line.instance_type or "",
        worker_type=line.worker_type or "",
        storage_kind=line.storage_kind or "",
        volume_id=line.volume_id or "",
        reference=line.reference or 0,
    )
    if line.usage_start is not None and line.usage_end is not None:
        message.usage_start_time.CopyFrom(micros_to_timestamp(line.usage_start))
        message.usage_end_time.CopyFrom(micros_to_timestamp(line.usage_end))
    return message


def covered_to_proto(covered: CoveredSession) -> bpb.CoveredSession:
    return bpb.CoveredSession(
        workload_id=covered.workload_id,
        up_sequence=covered.up_seq,
        session_start_time=micros_to_timestamp(covered.up),
        unit_seconds=covered.unit_seconds,
        first_unit_index=covered.first,
        end_unit_index=covered.end,
        reversal=covered.reversal,
        priced=[
            bpb.PricedUnits(
                first_unit_index=p.first,
                end_unit_index=p.end,
                unit_price=format_decimal(p.unit_price),
                price_version=p.price_version,
            )
            for p in covered.priced
        ],
        endpoint_id=covered.endpoint_id,
        workload_kind=covered.workload_kind,
        instance_type=covered.instance_type,
        worker_type=covered.worker_type,
    )


def invoice_to_proto(invoice: Invoice, payments: Sequence[Payment], *, full: bool = True) -> bpb.Invoice:
    status, reference = payment_status(invoice, payments)
    message = bpb.Invoice(
        org_id=invoice.org_id,
        number=invoice.number,
        log_id=org_log_id(invoice.org_id),
        sequence=max(invoice.sequence, 0),
        entry_hash=invoice.entry_hash,
        period_start_time=micros_to_timestamp(invoice.period_start),
        period_end_time=micros_to_timestamp(invoice.period_end),
        trigger=_TRIGGER.get(invoice.trigger, bpb.INVOICE_TRIGGER_UNSPECIFIED),
        cadence=_CADENCE[invoice.cadence],
        subtotal=cents_text(invoice.subtotal),
        discount_percent=format_decimal(invoice.discount_percent),
        discount=cents_text(invoice.discount),
        total=cents_text(invoice.total),
        credits_applied=[
            bpb.CreditApplication(credit_sequence=c.credit_sequence, amount=cents_text(c.amount))
            for c in invoice.credits_applied
        ],
        credits_total=cents_text(invoice.credits_total),
        amount_due=cents_text(invoice.amount_due),
        balance_carried_forward=cents_text(invoice.balance_carried_forward),
        carried_from_invoice=invoice.carried_from_invoice or 0,
        currency_code=CURRENCY,
        payment_status=status,
        payment_reference=reference,
        late_line_count=len(invoice.late_lines),
    )
    if invoice.settled_through is not None:
        message.settled_through_time.CopyFrom(micros_to_timestamp(invoice.settled_through))
    if invoice.issued_at is not None:
        message.issue_time.CopyFrom(micros_to_timestamp(invoice.issued_at))
    if invoice.grace is not None:
        message.grace.CopyFrom(
            bpb.InvoiceGrace(
                fired=True,
                wall_clock_time=micros_to_timestamp(invoice.grace.wall_clock),
                grace_seconds=invoice.grace.grace_seconds,
            )
        )
    if invoice.rated_log_size is not None:
        message.rated_log_size = invoice.rated_log_size
    if full:
        message.lines.extend(line_to_proto(line) for line in invoice.lines)
        message.covered_sessions.extend(covered_to_proto(s) for s in invoice.sessions)
        message.covered_storage_sequences.extend(invoice.storage_sequences)
        message.covered_adjustment_sequences.extend(invoice.adjustment_sequences)
    return message


def payment_to_proto(payment: Payment) -> bpb.Payment:
    return bpb.Payment(
        org_id=payment.org_id,
        sequence=max(payment.sequence, 0),
        invoice_number=payment.invoice_number,
        outcome=_OUTCOME_TO_PROTO[payment.outcome],
        reference=payment.reference,
        amount=cents_text(payment.amount),
        currency_code=CURRENCY,
        record_time=micros_to_timestamp(payment.recorded_at),
    )


# -- the service ------------------------------------------------------------------------------------------------


class BillingServicer(bpb_grpc.BillingServiceServicer):  # type: ignore[misc]
    def __init__(self, engine: BillingEngine) -> None:
        self.engine = engine

    def GrantCredit(self, request: bpb.GrantCreditRequest, context: grpc.ServicerContext) -> bpb.GrantCreditResponse:
        try:
            expires = timestamp_to_micros(request.expire_time) if request.HasField("expire_time") else None
            grant, duplicate = self.engine.grant_credit(
                request.org_id, request.amount, request.reason, expires, request.request_id
            )
            books = self.engine.books(request.org_id)
            now = self.engine.now()
            balance = next(b for b in books.balances(now) if b.grant.sequence == grant.sequence)
        except LedgerError as err:
            abort(context, err)
            raise
        return bpb.GrantCreditResponse(credit=credit_to_proto(balance), duplicate=duplicate)

    def ListCredits(self, request: bpb.ListCreditsRequest, context: grpc.ServicerContext) -> bpb.ListCreditsResponse:
        try:
            size = page_size(request.page_size)
            start = page_start(request.page_token)
            now = self.engine.now()
            require_org(self.engine.ledger.store, request.org_id)
            balances = self.engine.books(request.org_id).balances(now)
        except LedgerError as err:
            abort(context, err)
            raise
        page = balances[start : start + size]
        return bpb.ListCreditsResponse(
            credits=[credit_to_proto(b) for b in page],
            next_page_token=page_token(start + size, len(balances)),
            credit_left=cents_text(credit_left(balances, now)),
            currency_code=CURRENCY,
        )

    def CloseBillingPeriod(
        self, request: bpb.CloseBillingPeriodRequest, context: grpc.ServicerContext
    ) -> bpb.CloseBillingPeriodResponse:
        try:
            at = timestamp_to_micros(request.close_time) if request.HasField("close_time") else None
            result = self.engine.close(request.org_id, at)
            payments = self.engine.books(request.org_id).payments if result.issued else ()
        except LedgerError as err:
            abort(context, err)
            raise
        return bpb.CloseBillingPeriodResponse(
            issued=[invoice_to_proto(inv, payments) for inv in result.issued],
            explanation=result.explanation,
            cadence=_CADENCE[result.cadence],
        )

    def ListInvoices(self, request: bpb.ListInvoicesRequest, context: grpc.ServicerContext) -> bpb.ListInvoicesResponse:
        try:
            size = page_size(request.page_size)
            start = page_start(request.page_token)
            require_org(self.engine.ledger.store, request.org_id)
            books = self.engine.books(request.org_id)
        except LedgerError as err:
            abort(context, err)
            raise
        full = request.view == bpb.INVOICE_VIEW_FULL
        page = books.invoices[start : start + size]
        return bpb.ListInvoicesResponse(
            invoices=[invoice_to_proto(inv, books.payments, full=full) for inv in page],
            next_page_token=page_token(start + size, len(books.invoices)),
        )

    def GetInvoice(self, request: bpb.GetInvoiceRequest, context: grpc.ServicerContext) -> bpb.GetInvoiceResponse:
        try:
            if request.number < 1:
                raise InvalidInput([FieldViolation("number", "invoice numbers start at 1")])
            require_org(self.engine.ledger.store, request.org_id)
            invoice, books = self.engine.invoice(request.org_id, request.number)
        except LedgerError as err:
            abort(context, err)
            raise
        return bpb.GetInvoiceResponse(invoice=invoice_to_proto(invoice, books.payments))

    def RecordPayment(
        self, request: bpb.RecordPaymentRequest, context: grpc.ServicerContext
    ) -> bpb.RecordPaymentResponse:
        try:
            outcome = _OUTCOME_FROM_PROTO.get(request.outcome)
            if outcome is None:
                raise InvalidInput(
                    [FieldViolation("outcome", "R18: PAYMENT_OUTCOME_SUCCEEDED or PAYMENT_OUTCOME_FAILED")]
                )
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
        except LedgerError as err:
            abort(context, err)
            raise
        status, _ = payment_status(invoice, books.payments)
        return bpb.RecordPaymentResponse(
            payment=payment_to_proto(payment),
            duplicate=duplicate,
            payment_status=status,
            cadence=_CADENCE[cadence],
        )


def register_billing(ledger: Ledger, server: grpc.Server) -> str:
    """Add BillingService and, when BillingOptions.close_interval is set, start the period closer."""
    engine = engine_for(ledger)
    options = _OPTIONS.get() or BillingOptions()
    engine.invoice_grace_seconds = options.invoice_grace_seconds
    engine.starter_credit = options.starter_credit
    if options.close_interval is not None and ledger not in _CLOSERS:
        closer = PeriodCloser(engine, options.close_interval, serving=_serving(server))
        _CLOSERS[ledger] = closer
        closer.start()
        log.info("period closer running every %.1f s", options.close_interval)
    if isinstance(engine.usage.rollups, UsageRollups) and ledger not in _GAUGES:
        rollups = engine.usage.rollups
        _GAUGES[ledger] = rollup_lag_sources.add(lambda: readings(rollups.lag()))
    bpb_grpc.add_BillingServiceServicer_to_server(BillingServicer(engine), server)
    return str(bpb.DESCRIPTOR.services_by_name["BillingService"].full_name)
