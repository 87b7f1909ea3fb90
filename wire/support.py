"""SupportService's messages: a dispute query (R27) and its reconstruction, adjustments (R23), proofs."""

from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from usageledger.v1 import ledger_pb2 as lpb
from usageledger.v1 import support_pb2 as spb

from ledger.adjustments import Adjustment
from ledger.dispute import (
    AdjustmentLine,
    AnomalyLine,
    DisputeQuery,
    EntryProofs,
    Evidence,
    InvoiceCoverage,
    InvoicedRange,
    InvoiceSummary,
    Reconstruction,
    RequestCharge,
    SessionCharge,
    StorageLine,
    TimelineStep,
    UnitCharge,
    Verdict,
    ZeroCharge,
)
from ledger.events import EventType, StopReason, StorageKind, format_decimal
from ledger.log.entry import EntryKind, EntryRef
from ledger.pricebook import MONEY_CURRENCY
from ledger.rating.money import fraction_text
from ledger.rating.storage import storage_quantity
from ledger.timeutil import MICROS_PER_SECOND
from wire.convert import micros_to_timestamp, timestamp_to_micros

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


def corrects_from_proto(refs: Iterable[spb.DisputeEntryRef]) -> list[tuple[str, int, bytes | None]]:
    """The entries an adjustment corrects (R23): each with the hash support saw, or None when none was given."""
    return [(ref.log_id, ref.sequence, bytes(ref.entry_hash) or None) for ref in refs]


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
#
# A busy window's answer holds hundreds of cited entries, timeline steps and requests, so messages are filled in
# place (`add()`, field assignment) rather than built as temporaries that protobuf then copies into their parent,
# and enum numbers come from maps made once.

_EVENT_TYPES = {t: int(lpb.EventType.Value("EVENT_TYPE_" + t.value)) for t in EventType}
_STOP_REASONS = {r: int(lpb.StopReason.Value("STOP_REASON_" + r.value)) for r in StopReason}
_VERDICTS = {v: int(spb.Verdict.Value("VERDICT_" + v.value)) for v in Verdict}
_ENTRY_KINDS = {k: int(lpb.EntryKind.Value("ENTRY_KIND_" + k.value)) for k in EntryKind}
_STORAGE_KINDS = {k: int(lpb.StorageKind.Value("STORAGE_KIND_" + k.value)) for k in StorageKind}


def _money(amount: Decimal) -> str:
    return format_decimal(amount)


def seconds_text(micros: int) -> str:
    """Whole microseconds as exact decimal seconds, as decimal_text writes them ("90", "1.5", "0.000001")."""
    whole, fraction = divmod(abs(micros), 1_000_000)
    sign = "-" if micros < 0 else ""
    if not fraction:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{fraction:06d}".rstrip("0")


def _set_time(message: Timestamp, micros: int) -> None:
    seconds, fraction = divmod(micros, 1_000_000)
    message.seconds = seconds
    message.nanos = fraction * 1000


def _event_type(value: EventType | None) -> int:
    return _EVENT_TYPES[value] if value is not None else 0


def _stop_reason(value: StopReason | None) -> int:
    return _STOP_REASONS[value] if value is not None else 0


def _set_ref(message: spb.DisputeEntryRef, ref: EntryRef) -> None:
    message.log_id = ref.log_id
    message.sequence = ref.sequence
    message.entry_hash = ref.entry_hash


def _add_refs(repeated: Any, refs: Iterable[EntryRef]) -> None:
    for ref in refs:
        _set_ref(repeated.add(), ref)


def ref_to_proto(ref: EntryRef | None) -> spb.DisputeEntryRef | None:
    if ref is None:
        return None
    return spb.DisputeEntryRef(log_id=ref.log_id, sequence=ref.sequence, entry_hash=ref.entry_hash)


def coverage_to_proto(coverage: InvoiceCoverage) -> spb.DisputeInvoiceCoverage:
    message = spb.DisputeInvoiceCoverage()
    _set_coverage(message, coverage)
    return message


def _set_coverage(message: spb.DisputeInvoiceCoverage, coverage: InvoiceCoverage) -> None:
    message.invoiced = coverage.invoiced
    if coverage.invoice_id:
        message.invoice_id = coverage.invoice_id
    if coverage.ref is not None:
        _set_ref(message.invoice_ref, coverage.ref)
    message.late = coverage.late
    message.explanation = coverage.explanation


def _set_step(message: spb.DisputeTimelineStep, step: TimelineStep) -> None:
    _set_time(message.occur_time, step.at)
    message.event_type = _EVENT_TYPES[step.event_type]
    if step.request_id:
        message.request_id = step.request_id
    message.stop_reason = _stop_reason(step.stop_reason)
    message.verdict = _VERDICTS[step.verdict]
    message.rule = step.rule
    message.explanation = step.explanation
    _set_ref(message.ref, step.ref)


def _set_unit_run(message: spb.DisputeUnitRun, charge: UnitCharge) -> None:
    run = charge.run
    message.first_unit_index = run.first_unit_index
    message.count = run.count
    message.unit_seconds = run.unit_seconds
    _set_time(message.first_unit_start_time, run.first_unit_start)
    message.price_version = run.price_version
    if charge.price_ref is not None:
        _set_ref(message.price_ref, charge.price_ref)
    message.rate_per_second = _money(run.rate_per_second)
    message.unit_price = _money(run.unit_price)
    message.amount = _money(run.amount)
    _set_coverage(message.invoice, charge.invoice)
    message.explanation = run.explanation


def _set_invoiced_range(message: spb.DisputeInvoicedRange, invoiced: InvoicedRange) -> None:
    message.invoice_id = invoiced.invoice_id
    if invoiced.ref is not None:
        _set_ref(message.invoice_ref, invoiced.ref)
    message.first_unit_index = invoiced.first_unit_index
    message.count = invoiced.count
    message.unit_price = _money(invoiced.unit_price)
    message.price_version = invoiced.price_version
    message.amount = _money(invoiced.amount)
    message.reversal = invoiced.reversal
    message.late = invoiced.late
    message.explanation = invoiced.explanation


def _set_request(message: spb.DisputeRequest, charge: RequestCharge) -> None:
    message.request_id = charge.request_id
    message.workload_id = charge.workload_id
    message.endpoint_id = charge.endpoint_id
    if charge.started_at is not None:
        _set_time(message.start_time, charge.started_at)
    if charge.finished_at is not None:
        _set_time(message.finish_time, charge.finished_at)
    if charge.in_flight_from is not None:
        _set_time(message.in_flight_start_time, charge.in_flight_from)
    if charge.in_flight_to is not None:
        _set_time(message.in_flight_end_time, charge.in_flight_to)
    message.attributed_seconds = charge.attributed_seconds_text
    message.attributed_amount = charge.attributed_amount_text
    message.attributed_amount_exact = charge.attributed_amount_exact
    message.attributed_amount_fraction = fraction_text(charge.attributed_amount)
    message.attributed_seconds_fraction = fraction_text(charge.attributed_micros / MICROS_PER_SECOND)
    message.rules.extend(charge.rules)
    message.explanation = charge.explanation
    _add_refs(message.refs, charge.refs)
    message.killed_by = _stop_reason(charge.session_stop_reason)


def _set_session(message: spb.DisputeSession, charge: SessionCharge) -> None:
    session = charge.session
    message.workload_id = session.workload_id
    message.endpoint_id = session.endpoint_id
    message.workload_kind = lpb.WorkloadKind.Value("WORKLOAD_KIND_" + session.workload_kind.value)
    message.instance_type = session.instance_type
    message.worker_type = lpb.WorkerType.Value("WORKER_TYPE_" + session.worker_type.value)
    _set_time(message.up_time, session.up)
    if session.ready is not None:
        _set_time(message.ready_time, session.ready)
    if session.stop is not None:
        _set_time(message.stop_time, session.stop)
    message.stop_reason = _stop_reason(session.stop_reason)
    message.unit = charge.unit
    message.billed_units = session.billed_units
    message.duration_seconds = seconds_text(session.duration_micros)
    message.amount = _money(session.amount)
    message.rules.extend(session.rules)
    for step in charge.timeline:
        _set_step(message.timeline.add(), step)
    for unit in charge.units:
        _set_unit_run(message.units.add(), unit)
    for invoiced in charge.invoiced:
        _set_invoiced_range(message.invoiced.add(), invoiced)
    for part in charge.parts:
        message.parts.add(
            name=part.name,
            seconds=seconds_text(part.micros),
            amount=_money(part.amount),
            rules=part.rules,
            explanation=part.explanation,
        )
    for request in charge.requests:
        _set_request(message.requests.add(), request)
    message.request_count = charge.request_count
    message.requests_in_window = charge.requests_in_window
    message.explanation = session.explanation
    message.verdict = _VERDICTS[charge.verdict]
    _add_refs(message.refs, charge.refs)
    if charge.plan_ref is not None:
        _set_ref(message.plan_ref, charge.plan_ref)
    message.window_amount = _money(charge.window_amount)
    split = session.attribution
    if split is not None:
        attribution = message.attribution
        attribution.cold_start_seconds = seconds_text(split.cold_start_micros)
        attribution.serving_seconds = seconds_text(split.serving_micros)
        attribution.idle_seconds = seconds_text(split.idle_micros)
        attribution.rounding_seconds = seconds_text(split.rounding_micros)
        attribution.cold_start_amount = _money(split.cold_start_amount)
        attribution.serving_amount = _money(split.serving_amount)
        attribution.idle_amount = _money(split.idle_amount)
        attribution.rounding_amount = _money(split.rounding_amount)


def _set_zero_line(message: spb.DisputeZeroLine, line: ZeroCharge) -> None:
    message.rule = line.rule
    message.event_type = _event_type(line.event_type)
    if line.workload_id:
        message.workload_id = line.workload_id
    _set_time(message.start_time, line.start)
    if line.end is not None:
        _set_time(message.end_time, line.end)
    message.explanation = line.explanation
    _add_refs(message.refs, line.refs)
    message.verdict = _VERDICTS[Verdict.NOT_BILLED]
    message.amount = "0"


def _set_storage_line(message: spb.DisputeStorageLine, line: StorageLine) -> None:
    charge = line.charge
    message.workload_id = charge.workload_id
    message.storage_kind = _STORAGE_KINDS[charge.storage_kind]
    if charge.volume_id:
        message.volume_id = charge.volume_id
    message.gigabytes = format_decimal(charge.gigabytes)
    message.interval_seconds = charge.interval_seconds
    _set_time(message.start_time, charge.start)
    _set_time(message.end_time, charge.end)
    message.rule = charge.rule
    message.amount = _money(charge.amount)
    message.amount_fraction = fraction_text(charge.exact_amount)
    if charge.rule != "R8":  # a development workload's storage bills nothing: no quantity to multiply out
        quantity = storage_quantity(charge.storage_kind, charge.gigabytes, charge.interval_seconds)
        message.gigabyte_seconds = format_decimal(quantity.gigabyte_seconds)
        if quantity.first_tier_gigabyte_seconds is not None and quantity.beyond_tier_gigabyte_seconds is not None:
            message.first_tier_gigabyte_seconds = format_decimal(quantity.first_tier_gigabyte_seconds)
            message.beyond_tier_gigabyte_seconds = format_decimal(quantity.beyond_tier_gigabyte_seconds)
    message.explanation = charge.explanation
    _set_ref(message.ref, line.ref)
    _set_coverage(message.invoice, line.invoice)


def _set_anomaly(message: spb.DisputeAnomaly, line: AnomalyLine) -> None:
    anomaly = line.anomaly
    message.workload_id = anomaly.workload_id
    message.event_type = _event_type(anomaly.event_type)
    _set_time(message.occur_time, anomaly.occurred_at)
    message.reason = anomaly.reason
    _set_ref(message.ref, line.ref)


def _set_adjustment(message: spb.DisputeAdjustment, line: AdjustmentLine) -> None:
    adjustment = line.adjustment
    message.ticket = adjustment.ticket
    message.amount = format_decimal(adjustment.amount)
    message.reason = adjustment.reason
    _set_ref(message.ref, line.ref)
    _add_refs(message.corrects, adjustment.corrects)
    _set_coverage(message.invoice, line.invoice)
    message.explanation = line.explanation


def _set_evidence(message: spb.DisputeEvidence, item: Evidence) -> None:
    _set_ref(message.ref, item.ref)
    message.kind = _ENTRY_KINDS[item.kind]
    if item.event_type is not None:
        message.event_type = _EVENT_TYPES[item.event_type]
    if item.occurred_at is not None:
        _set_time(message.occur_time, item.occurred_at)
    if item.workload_id:
        message.workload_id = item.workload_id
    if item.request_id:
        message.request_id = item.request_id
    message.description = item.what


def _set_invoice(message: spb.DisputeInvoice, summary: InvoiceSummary) -> None:
    message.invoice_id = summary.invoice_id
    if summary.ref is not None:
        _set_ref(message.ref, summary.ref)
    for name, micros in (
        ("issue_time", summary.issued_at),
        ("period_start_time", summary.period_start),
        ("period_end_time", summary.period_end),
    ):
        if micros is not None:
            _set_time(getattr(message, name), micros)
    for name, value in (
        ("total_amount", summary.total),
        ("credits_applied", summary.credits_applied),
        ("amount_due", summary.amount_due),
    ):
        if value is not None:
            setattr(message, name, _money(value))


def _set_proof(message: spb.DisputeProof, proofs: EntryProofs) -> None:
    message.log_id = proofs.log_id
    message.tree_size = proofs.tree_size
    message.root_hash = proofs.root_hash
    message.signed_note = proofs.checkpoint_note
    message.bundle_json = json.dumps(proofs.bundle, sort_keys=True)
    message.unproven_sequences.extend(proofs.unproven)


def reconstruction_to_proto(result: Reconstruction) -> spb.ReconstructChargesResponse:
    message = spb.ReconstructChargesResponse(
        org_id=result.org_id, endpoint_id=result.endpoint_id, notes=result.notes, currency_code=MONEY_CURRENCY
    )
    _set_time(message.start_time, result.start)
    _set_time(message.end_time, result.end)
    _set_time(message.as_of_time, result.as_of)
    for session in result.sessions:
        _set_session(message.sessions.add(), session)
    for zero_line in result.zero_lines:
        _set_zero_line(message.zero_lines.add(), zero_line)
    for storage_line in result.storage:
        _set_storage_line(message.storage.add(), storage_line)
    for anomaly in result.anomalies:
        _set_anomaly(message.anomalies.add(), anomaly)
    for adjustment in result.adjustments:
        _set_adjustment(message.adjustments.add(), adjustment)
    for evidence in result.entries:
        _set_evidence(message.entries.add(), evidence)
    for invoice in result.invoices:
        _set_invoice(message.invoices.add(), invoice)
    for proofs in result.proofs:
        _set_proof(message.proofs.add(), proofs)
    if result.request is not None:
        _set_request(message.request, result.request)
    totals = message.totals
    totals.sessions_amount = _money(result.sessions_amount)
    totals.storage_amount = _money(result.storage_amount)
    totals.adjustments_amount = _money(result.adjustments_amount)
    totals.total_amount = _money(result.total_amount)
    totals.window_compute_amount = _money(result.window_compute_amount)
    totals.window_storage_amount = _money(result.window_storage_amount)
    totals.storage_amount_fraction = fraction_text(result.exact_storage_amount)
    totals.total_amount_fraction = fraction_text(result.exact_total_amount)
    totals.window_storage_amount_fraction = fraction_text(result.exact_window_storage_amount)
    return message


def adjustment_to_proto(adjustment: Adjustment, ref: EntryRef, duplicate: bool) -> spb.AdjustChargesResponse:
    """AdjustCharges' answer: the adjustment as appended (or found appended before, R24) and where it lands (R23)."""
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
