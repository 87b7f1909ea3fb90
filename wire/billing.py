"""BillingService's messages: credits (R16), invoices and lines (R17-R23), payments (R18, R19), backfills (R29)."""

from __future__ import annotations

from collections.abc import Sequence

from usageledger.v1 import account_pb2 as apb
from usageledger.v1 import billing_pb2 as bpb
from usageledger.v1 import ledger_pb2 as pb

from ledger.billing.backfills import Backfill
from ledger.billing.cents import CURRENCY, cents_text
from ledger.billing.credits import CreditBalance
from ledger.billing.invoices import Cadence, CoveredSession, Invoice, InvoiceLine, Trigger
from ledger.billing.payments import Payment, PaymentOutcome, is_paid
from ledger.events import format_decimal
from ledger.log.entry import org_log_id
from wire.convert import micros_to_timestamp

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


def outcome_from_proto(outcome: int) -> PaymentOutcome | None:
    """R18: the outcome a RecordPayment request reports, or None when it names neither."""
    return _OUTCOME_FROM_PROTO.get(outcome)


def backfill_to_proto(backfill: Backfill) -> pb.Backfill:
    message = pb.Backfill(
        org_id=backfill.org_id,
        backfill_id=backfill.backfill_id,
        from_time=micros_to_timestamp(backfill.start),
        to_time=micros_to_timestamp(backfill.end),
        reason=backfill.reason,
        open=backfill.is_open,
        open_time=micros_to_timestamp(backfill.opened.at),
        open_sequence=max(backfill.opened.sequence, 0),
    )
    if backfill.closed is not None:
        message.close_time.CopyFrom(micros_to_timestamp(backfill.closed.at))
        message.close_reason = backfill.closed.reason
        message.close_sequence = max(backfill.closed.sequence, 0)
    return message
