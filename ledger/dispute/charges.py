"""The answer's lines (R27) and the rule behind each: a session's timeline, parts and units by invoice, the request
asked for, zero lines and scaled-to-zero gaps (R1, R5, R8, R9), and the adjustments correcting them (R23)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction

from ledger.adjustments import Adjustment
from ledger.dispute.evidence import CaseFile
from ledger.dispute.invoices import InvoiceLookup
from ledger.dispute.report import (
    AdjustmentLine,
    ChargePart,
    InvoiceCoverage,
    RequestCharge,
    SessionCharge,
    TimelineStep,
    UnitCharge,
    Verdict,
    ZeroCharge,
)
from ledger.dispute.window import window_requests
from ledger.events import WorkloadKind
from ledger.log.entry import SYSTEM_LOG, Entry, EntryRef
from ledger.ports import DisputeSource, IndexedSource
from ledger.rating import RequestAttribution, Session, WorkloadRating, ZeroLine
from ledger.rating.money import exact_sum, format_money, format_seconds, ratio_text
from ledger.rating.units import money_between
from ledger.timeutil import format_micros
from ledger.tracing import traced


def stop_refs_of(session: Session, evidence: CaseFile, log_id: str) -> tuple[EntryRef, ...]:
    seq = session.stop_seq if session.stop_seq is not None else session.boot_failed_seq
    return (evidence.cite(log_id, seq),) if seq is not None else ()


def session_charge(
    session: Session,
    rating: WorkloadRating,
    evidence: CaseFile,
    lookup: InvoiceLookup,
    log_id: str,
    start: int,
    end: int,
    now: int,
    listed: Sequence[RequestAttribution],
    requests_in_window: int | None = None,
) -> SessionCharge:
    """`listed`: the session's requests the answer lists (listed_requests). `requests_in_window`: how many
    requests were in flight in the window, when the session's split carries shares only for those the answer lists
    (the rollup-backed lookup)."""
    refs = tuple(evidence.cite(log_id, seq) for seq in session.entry_seqs)
    plan_ref = (
        evidence.cite(log_id, session.plan_version, "ACCOUNT: plan granularity (R10)")
        if session.plan_version is not None
        else None
    )
    in_window = window_requests(session, start, end)
    requests = tuple(_attributed(session, r, evidence, log_id) for r in listed)
    timeline = _timeline(session, rating, evidence, log_id, requests)
    units = tuple(_unit_charges(session, lookup, evidence))
    verdict = Verdict.BILLED if session.amount > 0 else Verdict.NOT_BILLED
    return SessionCharge(
        session=session,
        verdict=verdict,
        timeline=timeline,
        parts=_parts(session, now),
        units=units,
        requests=requests,
        request_count=session.attribution.request_count if session.attribution is not None else 0,
        requests_in_window=len(in_window) if requests_in_window is None else requests_in_window,
        window_amount=session.usage_in(start, end).compute_amount,
        refs=refs,
        plan_ref=plan_ref,
        invoiced=lookup.invoiced_ranges(session),
    )


def _attributed(session: Session, attributed: RequestAttribution, evidence: CaseFile, log_id: str) -> RequestCharge:
    seqs = [attributed.started_seq] + ([attributed.finished_seq] if attributed.finished_seq is not None else [])
    refs = tuple(evidence.cite(log_id, seq) for seq in seqs)
    rules: tuple[str, ...] = ("R3", "R25")
    micros, amount = attributed.attributed_micros, attributed.attributed_amount
    seconds_text, seconds_exact = ratio_text(micros.numerator, micros.denominator * 1_000_000)
    amount_text, amount_exact = ratio_text(amount.numerator, amount.denominator)
    explanation = attributed.explain(
        seconds_text if seconds_exact else format_seconds(micros),
        "$" + amount_text if amount_exact else format_money(amount),
    )
    killed = attributed.finished_seq is None and session.stop is not None
    if killed:
        rules = ("R3", "R4", "R25")
        reason = session.stop_reason.value if session.stop_reason else "a stop"
        explanation += (
            f"; R4: the workload stopped ({reason}) at {format_micros(session.stop or 0)} with the request in flight, "
            "so it is billed up to that instant"
        )
    return RequestCharge(
        request_id=attributed.request_id,
        workload_id=session.workload_id,
        endpoint_id=session.endpoint_id,
        started_at=attributed.started_at,
        finished_at=attributed.finished_at,
        in_flight_from=attributed.in_flight_from,
        in_flight_to=attributed.in_flight_to,
        attributed_micros=attributed.attributed_micros,
        attributed_amount=attributed.attributed_amount,
        rules=rules,
        explanation=explanation,
        refs=refs,
        session_stop_reason=session.stop_reason if killed else None,
        attributed_seconds_text=seconds_text,
        attributed_amount_text=amount_text,
        attributed_amount_exact=amount_exact,
    )


def _timeline(
    session: Session,
    rating: WorkloadRating,
    evidence: CaseFile,
    log_id: str,
    requests: Sequence[RequestCharge],
) -> tuple[TimelineStep, ...]:
    steps: list[TimelineStep] = []

    def step(seq: int, verdict: Verdict, rule: str, explanation: str) -> None:
        fact = evidence.facts[(log_id, seq)]
        steps.append(
            TimelineStep(
                fact.occurred_at,
                fact.type,
                verdict,
                rule,
                explanation,
                evidence.cite(log_id, seq),
                fact.request_id,
                fact.stop_reason,
            )
        )

    for line in rating.zero_lines:
        if line.rule == "R1":
            step(line.seqs[0], Verdict.NOT_BILLED, "R1", line.explanation)
    step(session.up_seq, Verdict.BILLED, "R1", f"R1: observed up: metering starts (entry #{session.up_seq})")
    if session.ready_seq is not None:
        cold = format_seconds(max(0, (session.ready or session.up) - session.up))
        step(
            session.ready_seq,
            Verdict.BILLED,
            "R2",
            f"R2: ready after a {cold} s cold start (model load), billed at the same rate; R25: cold start ends here",
        )
    for request in requests:
        in_flight = f"{format_micros(request.in_flight_from or 0)} to {format_micros(request.in_flight_to or 0)}"
        started, *finished = [ref.sequence for ref in request.refs]
        step(started, Verdict.BILLED, "R3", f"R3: request {request.request_id} started: serving ({in_flight})")
        if finished:
            step(finished[0], Verdict.BILLED, "R3", f"R3: request {request.request_id} finished")
    if session.stop_seq is not None:
        reason = session.stop_reason.value if session.stop_reason else "no reason"
        step(
            session.stop_seq,
            Verdict.BILLED,
            "R4",
            f"R4: stopped ({reason}): billed up to this instant; R10: the last partial "
            f"{session.granularity.unit_name()} is rounded up",
        )
    elif session.boot_failed_seq is not None:
        step(
            session.boot_failed_seq,
            Verdict.BILLED,
            "R5",
            "R5: boot failed after the workload was observed up: the session ends here like a stop with reason CRASH",
        )
    steps.sort(key=lambda s: (s.at, s.ref.sequence))
    return tuple(steps)


def _parts(session: Session, now: int) -> tuple[ChargePart, ...]:
    """The billed quantity split by the rule that bills each part; the parts add up to the session (R25)."""
    unit = session.granularity.unit_name()
    ended = "the stop" if session.stop is not None else f"now ({format_micros(now)})"
    split = session.attribution
    if split is not None:
        return (
            ChargePart(
                "cold_start",
                split.cold_start_micros,
                split.cold_start_amount,
                ("R2", "R25"),
                "R2: model load between UP and READY, billed at the same rate",
            ),
            ChargePart(
                "serving",
                split.serving_micros,
                split.serving_amount,
                ("R3", "R25"),
                f"R3: at least one request in flight; shared by {split.request_count} request(s) (R25)",
            ),
            ChargePart(
                "idle",
                split.idle_micros,
                split.idle_amount,
                ("R3", "R25"),
                "R3: ready and no request in flight (a warm replica, or the idle wait before scale-down)",
            ),
            ChargePart(
                "rounding",
                split.rounding_micros,
                split.rounding_amount,
                ("R10", "R25"),
                f"R10: billed past {ended}: the session's last partial {unit} rounded up",
            ),
        )
    # An open session bills its units as they start (R10), so it has no rounding yet.
    metered_micros = session.duration_micros if session.stop is not None else session.billed_micros
    metered = money_between(session.runs, session.up, session.up + metered_micros)
    name, rule, why = (
        ("build", "R6", "R6: the image build, billed from UP to STOPPED whether it succeeds or fails")
        if session.workload_kind is WorkloadKind.BUILD
        else ("training", "R7", "R7: training, billed wall-clock from UP to STOPPED")
    )
    return (
        ChargePart(name, metered_micros, metered, (rule,), why),
        ChargePart(
            "rounding",
            session.billed_micros - metered_micros,
            exact_sum([session.amount, -metered]),
            ("R10",),
            f"R10: billed past {ended}: the session's last partial {unit} rounded up",
        ),
    )


def _unit_charges(session: Session, lookup: InvoiceLookup, evidence: CaseFile) -> list[UnitCharge]:
    """The session's unit runs split where the invoice covering their units changes (R17, R22)."""
    charges: list[UnitCharge] = []
    for run in session.runs:
        price_ref = evidence.cite(SYSTEM_LOG, run.price_version, f"PRICE_BOOK v{run.price_version} (R11, R12)")
        last = run.first_unit_index + run.count - 1
        for lo, hi, coverage in _invoice_pieces(session, run.first_unit_index, last, lookup):
            part = run.clip(run.unit_start(lo), run.unit_start(hi) + run.unit_micros)
            if part is not None:
                charges.append(UnitCharge(part, price_ref, coverage))
    return charges


def _invoice_pieces(
    session: Session, lo: int, hi: int, lookup: InvoiceLookup
) -> list[tuple[int, int, InvoiceCoverage]]:
    """Units lo..hi of a session grouped by the invoice covering them, in unit order.

    A session's units are invoiced in order (R10: each as it starts; R22: late ones on the next invoice), so equal
    coverage at both ends of a range means the whole range, and a run splits at a few points found by bisection
    instead of one lookup per unit (a day of per-second units is 86,400 of them).
    """
    pieces: list[tuple[int, int, InvoiceCoverage]] = []
    stack = [(lo, hi, lookup.unit(session, lo), lookup.unit(session, hi))]
    while stack:
        a, b, first, last = stack.pop()
        if first == last:
            pieces.append((a, b, first))
        elif b - a == 1:
            pieces.extend([(a, a, first), (b, b, last)])
        else:
            middle = (a + b) // 2
            stack.append((middle + 1, b, lookup.unit(session, middle + 1), last))  # popped after the left half
            stack.append((a, middle, first, lookup.unit(session, middle)))
    merged: list[tuple[int, int, InvoiceCoverage]] = []
    for piece in pieces:
        if merged and merged[-1][2] == piece[2] and merged[-1][1] + 1 == piece[0]:
            merged[-1] = (merged[-1][0], piece[1], piece[2])
        else:
            merged.append(piece)
    return merged


def zero_charge(line: ZeroLine, evidence: CaseFile, log_id: str) -> ZeroCharge:
    refs = tuple(evidence.cite(log_id, seq) for seq in line.seqs)
    return ZeroCharge(line.rule, line.start, line.end, line.explanation, refs, line.workload_id, line.event_type, line)


def scaled_to_zero(
    endpoint_id: str,
    spans: Sequence[tuple[int, int, tuple[EntryRef, ...], tuple[EntryRef, ...]]],
    start: int,
    end: int,
) -> list[ZeroCharge]:
    """R9: the stretches of the window in which no workload of the endpoint was up: no session, no charge."""
    gaps: list[ZeroCharge] = []
    cursor = start
    before: tuple[EntryRef, ...] = ()
    for up, stop, up_refs, stop_refs in sorted(spans, key=lambda s: (s[0], s[1])):
        if up > cursor and cursor < end:
            gaps.append(_gap(endpoint_id, cursor, min(up, end), before + up_refs))
        if stop >= cursor:
            cursor, before = stop, stop_refs
    if cursor < end:
        gaps.append(_gap(endpoint_id, cursor, end, before))
    return gaps


def _gap(endpoint_id: str, start: int, end: int, refs: tuple[EntryRef, ...]) -> ZeroCharge:
    bounds = ", ".join(f"entry {r.log_id}#{r.sequence}" for r in refs)
    shown = f" (between {bounds})" if bounds else ""
    return ZeroCharge(
        "R9",
        start,
        end,
        f"R9: no workload of {endpoint_id} was up from {format_micros(start)} to {format_micros(end)}{shown}: "
        "scaled to zero, no session, no charge",
        refs,
    )


def request_charge(
    request_id: str,
    workload_id: str | None,
    ratings: Mapping[str, WorkloadRating],
    evidence: CaseFile,
    log_id: str,
) -> RequestCharge:
    rating = ratings.get(workload_id or "")
    if rating is not None and rating.session is not None and rating.session.attribution is not None:
        for attributed in rating.session.attribution.requests:
            if attributed.request_id == request_id:
                return _attributed(rating.session, attributed, evidence, log_id)
    # Not part of a billed session: a development workload (R8) or an anomaly (R26).
    seqs = sorted(
        seq for (log, seq), event in evidence.events.items() if log == log_id and event.request_id == request_id
    )
    refs = tuple(evidence.cite(log_id, seq) for seq in seqs)
    times = [evidence.events[(log_id, seq)].occurred_at for seq in seqs]
    development = rating is not None and any(z.rule == "R8" for z in rating.zero_lines)
    rule, why = (
        ("R8", f"R8: request {request_id} ran on development workload {workload_id}, which is never billed")
        if development
        else (
            "R26",
            f"R26: request {request_id}'s events contradict workload {workload_id}'s lifecycle; kept, charged nothing",
        )
    )
    return RequestCharge(
        request_id=request_id,
        workload_id=workload_id or "",
        endpoint_id=rating.session.endpoint_id if rating is not None and rating.session is not None else "",
        started_at=min(times) if times else None,
        finished_at=max(times) if len(times) > 1 else None,
        in_flight_from=None,
        in_flight_to=None,
        attributed_micros=Fraction(0),
        attributed_amount=Fraction(0),
        rules=(rule,),
        explanation=why,
        refs=refs,
    )


@traced("ledger.dispute.adjustments")
def adjustment_lines(
    source: DisputeSource,
    evidence: CaseFile,
    lookup: InvoiceLookup,
    log_id: str,
    adjustment_entries: Sequence[Entry],
    reconstructed: set[tuple[str, int]],
    listed: set[str] | None = None,
) -> list[AdjustmentLine]:
    """R23: the adjustments (the org's ADJUSTMENT entries) citing any entry behind this reconstruction.

    With `listed` (the rollup-backed lookup, which reads only the requests near the window), an adjustment citing
    any other entry of a listed workload counts too: its cited entries are read to tell their workload.
    """
    lines = []
    found = [(entry, Adjustment.from_body(entry.body_json(), entry.sequence)) for entry in adjustment_entries]
    if listed:
        unknown = sorted(
            {r.sequence for _, a in found for r in a.corrects if r.log_id == log_id}
            - {seq for log, seq in reconstructed if log == log_id}
        )
        if unknown:
            indexed: IndexedSource = source  # type: ignore[assignment]
            for cited, event in evidence.add(indexed.entries_at(log_id, unknown)):
                if event is not None and event.workload_id in listed:
                    reconstructed = reconstructed | {(log_id, cited.sequence)}
    for entry, adjustment in found:
        here = tuple(r for r in adjustment.corrects if (r.log_id, r.sequence) in reconstructed)
        if not here:
            continue
        evidence.add([entry])
        ref = evidence.cite(entry.log_id, entry.sequence, f"ADJUSTMENT ticket {adjustment.ticket} (R23)")
        lines.append(AdjustmentLine(adjustment, ref, lookup.adjustment(entry.sequence), here))
    return lines
