"""SupportService: dispute reconstruction (R27) and adjustments (R23) over gRPC, and their proto mapping."""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from usageledger.v1 import ledger_pb2 as lpb
from usageledger.v1 import support_pb2 as spb
from usageledger.v1 import support_pb2_grpc as spb_grpc

from ledger.core import Ledger
from ledger.dispute import (
    AdjustmentLine,
    AnomalyLine,
    DisputeQuery,
    EntryProofs,
    Evidence,
    InvoiceCoverage,
    InvoiceSummary,
    Reconstruction,
    RequestCharge,
    SessionCharge,
    StorageLine,
    TimelineStep,
    UnitCharge,
    Verdict,
    ZeroCharge,
    adjust_charges,
    decimal_text,
    reconstruct_charges,
)
from ledger.entry import EntryRef
from ledger.errors import LedgerError
from ledger.events import EventType, StopReason, format_decimal
from ledger.pricebook import MONEY_CURRENCY
from server.convert import micros_to_timestamp, timestamp_to_micros
from server.errors import abort


class SupportServicer(spb_grpc.SupportServiceServicer):  # type: ignore[misc]
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def ReconstructCharges(
        self, request: spb.ReconstructChargesRequest, context: grpc.ServicerContext
    ) -> spb.ReconstructChargesResponse:
        try:
            return reconstruction_to_proto(reconstruct_charges(self.ledger, query_from_proto(request)))
        except LedgerError as err:
            abort(context, err)
            raise

    def AdjustCharges(
        self, request: spb.AdjustChargesRequest, context: grpc.ServicerContext
    ) -> spb.AdjustChargesResponse:
        corrects = [(ref.log_id, ref.sequence, bytes(ref.entry_hash) or None) for ref in request.corrects]
        try:
            adjustment, ref, duplicate = adjust_charges(
                self.ledger,
                request.org_id,
                request.ticket,
                request.amount,
                request.reason,
                corrects,
                request.request_id or None,
            )
        except LedgerError as err:
            abort(context, err)
            raise
        return spb.AdjustChargesResponse(
            adjustment=spb.DisputeAdjustment(
                ticket=adjustment.ticket,
                amount=format_decimal(adjustment.amount),
                reason=adjustment.reason,
                ref=ref_to_proto(ref),
                corrects=[ref_to_proto(r) for r in adjustment.corrects],
                invoice=coverage_to_proto(InvoiceCoverage()),
                explanation=(
                    f"R23: adjustment for ticket {adjustment.ticket} "
                    f"{'was already appended' if duplicate else 'appended'} as entry {ref.log_id}:{ref.sequence}; "
                    "it lands on the org's next invoice"
                ),
            ),
            duplicate=duplicate,
        )


def register_support(ledger: Ledger, server: grpc.Server) -> str:
    spb_grpc.add_SupportServiceServicer_to_server(SupportServicer(ledger), server)
    return str(spb.DESCRIPTOR.services_by_name["SupportService"].full_name)


# -- proto to domain --------------------------------------------------------------------------------------------


def query_from_proto(request: spb.ReconstructChargesRequest) -> DisputeQuery:
    def instant(name: str) -> int | None:
        return timestamp_to_micros(getattr(request, name)) if request.HasField(name) else None

    tolerance = None
    if request.HasField("tolerance"):
        tolerance = request.tolerance.seconds * 1_000_000 + request.tolerance.nanos // 1000
    return DisputeQuery(
        endpoint_id=request.endpoint_id or None,
        org_id=request.org_id or None,
        request_id=request.request_id or None,
        start=instant("start_time"),
        end=instant("end_time"),
        around=instant("approximate_time"),
        tolerance=tolerance,
    )


def query_to_proto(query: DisputeQuery) -> spb.ReconstructChargesRequest:
    """The client side of query_from_proto."""
    message = spb.ReconstructChargesRequest(
        org_id=query.org_id or "", endpoint_id=query.endpoint_id or "", request_id=query.request_id or ""
    )
    for name, value in (("start_time", query.start), ("end_time", query.end), ("approximate_time", query.around)):
        if value is not None:
            getattr(message, name).CopyFrom(micros_to_timestamp(value))
    if query.tolerance is not None:
        seconds, micros = divmod(query.tolerance, 1_000_000)
        message.tolerance.CopyFrom(Duration(seconds=seconds, nanos=micros * 1000))
    return message


# -- domain to proto --------------------------------------------------------------------------------------------


def _money(amount: Decimal) -> str:
    return format_decimal(amount)


def _seconds(micros: int) -> str:
    return decimal_text(Fraction(micros, 1_000_000))[0]


def _time(micros: int | None) -> Timestamp | None:
    return micros_to_timestamp(micros) if micros is not None else None


def _event_type(value: EventType | None) -> int:
    return int(lpb.EventType.Value("EVENT_TYPE_" + value.value)) if value is not None else 0


def _stop_reason(value: StopReason | None) -> int:
    return int(lpb.StopReason.Value("STOP_REASON_" + value.value)) if value is not None else 0


def _verdict(value: Verdict) -> int:
    return int(spb.Verdict.Value("VERDICT_" + value.value))


def ref_to_proto(ref: EntryRef | None) -> spb.DisputeEntryRef | None:
    if ref is None:
        return None
    return spb.DisputeEntryRef(log_id=ref.log_id, sequence=ref.sequence, entry_hash=ref.entry_hash)


def coverage_to_proto(coverage: InvoiceCoverage) -> spb.DisputeInvoiceCoverage:
    return spb.DisputeInvoiceCoverage(
        invoiced=coverage.invoiced,
        invoice_id=coverage.invoice_id or "",
        invoice_ref=ref_to_proto(coverage.ref),
        late=coverage.late,
        explanation=coverage.explanation,
    )


def _step(step: TimelineStep) -> spb.DisputeTimelineStep:
    return spb.DisputeTimelineStep(
        occur_time=micros_to_timestamp(step.at),
        event_type=_event_type(step.event_type),
        request_id=step.request_id or "",
        stop_reason=_stop_reason(step.stop_reason),
        verdict=_verdict(step.verdict),
        rule=step.rule,
        explanation=step.explanation,
        ref=ref_to_proto(step.ref),
    )


def _unit_run(charge: UnitCharge) -> spb.DisputeUnitRun:
    run = charge.run
    return spb.DisputeUnitRun(
        first_unit_index=run.first_unit_index,
        count=run.count,
        unit_seconds=run.unit_seconds,
        first_unit_start_time=micros_to_timestamp(run.first_unit_start),
        price_version=run.price_version,
        price_ref=ref_to_proto(charge.price_ref),
        rate_per_second=_money(run.rate_per_second),
        unit_price=_money(run.unit_price),
        amount=_money(run.amount),
        invoice=coverage_to_proto(charge.invoice),
        explanation=run.explanation,
    )


def request_to_proto(charge: RequestCharge) -> spb.DisputeRequest:
    amount, exact = decimal_text(charge.attributed_amount)
    return spb.DisputeRequest(
        request_id=charge.request_id,
        workload_id=charge.workload_id,
        endpoint_id=charge.endpoint_id,
        start_time=_time(charge.started_at),
        finish_time=_time(charge.finished_at),
        in_flight_start_time=_time(charge.in_flight_from),
        in_flight_end_time=_time(charge.in_flight_to),
        attributed_seconds=decimal_text(charge.attributed_micros / 1_000_000)[0],
        attributed_amount=amount,
        attributed_amount_exact=exact,
        attributed_amount_fraction=f"{charge.attributed_amount.numerator}/{charge.attributed_amount.denominator}",
        rules=list(charge.rules),
        explanation=charge.explanation,
        refs=[ref_to_proto(r) for r in charge.refs],
        killed_by=_stop_reason(charge.session_stop_reason),
    )


def session_to_proto(charge: SessionCharge) -> spb.DisputeSession:
    session = charge.session
    message = spb.DisputeSession(
        workload_id=session.workload_id,
        endpoint_id=session.endpoint_id,
        workload_kind=lpb.WorkloadKind.Value("WORKLOAD_KIND_" + session.workload_kind.value),
        instance_type=session.instance_type,
        worker_type=lpb.WorkerType.Value("WORKER_TYPE_" + session.worker_type.value),
        up_time=micros_to_timestamp(session.up),
        ready_time=_time(session.ready),
        stop_time=_time(session.stop),
        stop_reason=_stop_reason(session.stop_reason),
        unit=charge.unit,
        billed_units=session.billed_units,
        duration_seconds=_seconds(session.duration_micros),
        amount=_money(session.amount),
        rules=list(session.rules),
        timeline=[_step(step) for step in charge.timeline],
        units=[_unit_run(unit) for unit in charge.units],
        parts=[
            spb.DisputeChargePart(
                name=part.name,
                seconds=_seconds(part.micros),
                amount=_money(part.amount),
                rules=list(part.rules),
                explanation=part.explanation,
            )
            for part in charge.parts
        ],
        requests=[request_to_proto(r) for r in charge.requests],
        request_count=charge.request_count,
        requests_in_window=charge.requests_in_window,
        explanation=session.explanation,
        verdict=_verdict(charge.verdict),
        refs=[ref_to_proto(r) for r in charge.refs],
        plan_ref=ref_to_proto(charge.plan_ref),
        window_amount=_money(charge.window_amount),
    )
    split = session.attribution
    if split is not None:
        message.attribution.CopyFrom(
            spb.DisputeAttribution(
                cold_start_seconds=_seconds(split.cold_start_micros),
                serving_seconds=_seconds(split.serving_micros),
                idle_seconds=_seconds(split.idle_micros),
                rounding_seconds=_seconds(split.rounding_micros),
                cold_start_amount=_money(split.cold_start_amount),
                serving_amount=_money(split.serving_amount),
                idle_amount=_money(split.idle_amount),
                rounding_amount=_money(split.rounding_amount),
            )
        )
    return message


def _zero_line(line: ZeroCharge) -> spb.DisputeZeroLine:
    return spb.DisputeZeroLine(
        rule=line.rule,
        event_type=_event_type(line.event_type),
        workload_id=line.workload_id or "",
        start_time=micros_to_timestamp(line.start),
        end_time=_time(line.end),
        explanation=line.explanation,
        refs=[ref_to_proto(r) for r in line.refs],
        verdict=_verdict(Verdict.NOT_BILLED),
        amount="0",
    )


def _storage_line(line: StorageLine) -> spb.DisputeStorageLine:
    charge = line.charge
    return spb.DisputeStorageLine(
        workload_id=charge.workload_id,
        storage_kind=lpb.StorageKind.Value("STORAGE_KIND_" + charge.storage_kind.value),
        volume_id=charge.volume_id or "",
        gigabytes=format_decimal(charge.gigabytes),
        interval_seconds=charge.interval_seconds,
        start_time=micros_to_timestamp(charge.start),
        end_time=micros_to_timestamp(charge.end),
        rule=charge.rule,
        amount=_money(charge.amount),
        explanation=charge.explanation,
        ref=ref_to_proto(line.ref),
        invoice=coverage_to_proto(line.invoice),
    )


def _anomaly(line: AnomalyLine) -> spb.DisputeAnomaly:
    anomaly = line.anomaly
    return spb.DisputeAnomaly(
        workload_id=anomaly.workload_id,
        event_type=_event_type(anomaly.event_type),
        occur_time=micros_to_timestamp(anomaly.occurred_at),
        reason=anomaly.reason,
        ref=ref_to_proto(line.ref),
    )


def _adjustment(line: AdjustmentLine) -> spb.DisputeAdjustment:
    adjustment = line.adjustment
    return spb.DisputeAdjustment(
        ticket=adjustment.ticket,
        amount=format_decimal(adjustment.amount),
        reason=adjustment.reason,
        ref=ref_to_proto(line.ref),
        corrects=[ref_to_proto(r) for r in adjustment.corrects],
        invoice=coverage_to_proto(line.invoice),
        explanation=line.explanation,
    )


def _evidence(item: Evidence) -> spb.DisputeEvidence:
    return spb.DisputeEvidence(
        ref=ref_to_proto(item.ref),
        kind=lpb.EntryKind.Value("ENTRY_KIND_" + item.kind.value),
        event_type=_event_type(item.event_type),
        occur_time=_time(item.occurred_at),
        workload_id=item.workload_id or "",
        request_id=item.request_id or "",
        description=item.what,
    )


def _invoice(summary: InvoiceSummary) -> spb.DisputeInvoice:
    def money(value: Decimal | None) -> str:
        return _money(value) if value is not None else ""

    return spb.DisputeInvoice(
        invoice_id=summary.invoice_id,
        ref=ref_to_proto(summary.ref),
        issue_time=_time(summary.issued_at),
        period_start_time=_time(summary.period_start),
        period_end_time=_time(summary.period_end),
        total_amount=money(summary.total),
        credits_applied=money(summary.credits_applied),
        amount_due=money(summary.amount_due),
    )


def _proof(proofs: EntryProofs) -> spb.DisputeProof:
    return spb.DisputeProof(
        log_id=proofs.log_id,
        tree_size=proofs.tree_size,
        root_hash=proofs.root_hash,
        signed_note=proofs.checkpoint_note,
        bundle_json=json.dumps(proofs.bundle, sort_keys=True),
        unproven_sequences=list(proofs.unproven),
    )


def reconstruction_to_proto(result: Reconstruction) -> spb.ReconstructChargesResponse:
    return spb.ReconstructChargesResponse(
        org_id=result.org_id,
        endpoint_id=result.endpoint_id,
        start_time=micros_to_timestamp(result.start),
        end_time=micros_to_timestamp(result.end),
        as_of_time=micros_to_timestamp(result.as_of),
        sessions=[session_to_proto(s) for s in result.sessions],
        zero_lines=[_zero_line(z) for z in result.zero_lines],
        storage=[_storage_line(s) for s in result.storage],
        anomalies=[_anomaly(a) for a in result.anomalies],
        adjustments=[_adjustment(a) for a in result.adjustments],
        request=request_to_proto(result.request) if result.request is not None else None,
        entries=[_evidence(e) for e in result.entries],
        totals=spb.DisputeTotals(
            sessions_amount=_money(result.sessions_amount),
            storage_amount=_money(result.storage_amount),
            adjustments_amount=_money(result.adjustments_amount),
            total_amount=_money(result.total_amount),
            window_compute_amount=_money(result.window_compute_amount),
            window_storage_amount=_money(result.window_storage_amount),
        ),
        invoices=[_invoice(i) for i in result.invoices],
        proofs=[_proof(p) for p in result.proofs],
        notes=list(result.notes),
        currency_code=MONEY_CURRENCY,
    )
