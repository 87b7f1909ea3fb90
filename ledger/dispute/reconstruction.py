"""Rebuilding a ticket's charges from the log (R27): rate every workload touching the window, from its entries or
from the rollups (rollup_rating.py), and turn the ratings into the answer's lines (charges.py)."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Sequence

from ledger.dispute.charges import (
    adjustment_lines,
    request_charge,
    scaled_to_zero,
    session_charge,
    stop_refs_of,
    zero_charge,
)
from ledger.dispute.evidence import (
    STORAGE_TYPE,
    CaseFile,
    LoggedEvents,
    Target,
    known_evidence,
    plans_of,
    resolve,
    storage_outside,
    storage_overlaps,
)
from ledger.dispute.invoices import InvoiceLookup, NoInvoices
from ledger.dispute.query import DisputeQuery
from ledger.dispute.report import AnomalyLine, Reconstruction, SessionCharge, StorageLine, ZeroCharge
from ledger.dispute.rollup_rating import IndexedRating
from ledger.dispute.window import STORAGE_LOOKAHEAD, end_of, listed_requests, overlaps, shown_session
from ledger.events import MAX_INTERVAL_SECONDS, EventType
from ledger.log.entry import Entry, EntryKind, EntryRef, org_log_id
from ledger.ports import DisputeSource, SessionIndex
from ledger.pricebook import PriceHistory
from ledger.rating import rate_workload
from ledger.timeutil import MICROS_PER_SECOND
from ledger.tracing import traced


@traced("ledger.dispute.rebuild")
def reconstruct(
    source: DisputeSource,
    prices: PriceHistory,
    query: DisputeQuery,
    now: int,
    *,
    invoices: Callable[[str], InvoiceLookup] | None = None,
    index: Callable[[str], SessionIndex] | None = None,
    account_entries: Sequence[Entry] | None = None,
    adjustment_entries: Sequence[Entry] | None = None,
) -> Reconstruction:
    """Rebuild every charge of the query's endpoint in its window (or of its request) from ledger entries (R27).

    `now` bounds open sessions (R10). `invoices(org_id)` says where each charge was invoiced (default: nowhere yet).
    `index(org_id)`, when given, is the org's rollups: sessions are then rated from their lifecycle entries and the
    requests near the window, with the R25 split from the rollups' serving union, so a lookup reads a bounded
    number of entries however long the sessions are. Without it every entry of each workload is read.
    `account_entries`, when given, are the org's ACCOUNT entries (read already for the rollups' catch-up), and
    `adjustment_entries` its ADJUSTMENT entries (read with them).
    """
    query.check()
    evidence = CaseFile(source)
    target = resolve(source, query, evidence, now)
    org_id, endpoint_id, start, end = target.org_id, target.endpoint_id, target.start, target.end
    log_id = org_log_id(org_id)
    lookup = invoices(org_id) if invoices is not None else NoInvoices()

    if account_entries is None:  # else the caller read them (for the rollups' catch-up)
        account_entries = source.entries_of_kind(log_id, [EntryKind.ACCOUNT.value])
    evidence.add(account_entries)
    plans = plans_of(account_entries)
    if index is not None:
        indexed = IndexedRating(source, index(org_id), evidence, prices, plans, now, target)  # type: ignore[arg-type]
        by_workload, ratings = indexed.rate()
        in_window, indexed_storage, listing = indexed.in_window, indexed.storage, indexed.listing
    else:
        by_workload = _whole_workloads(source, evidence, target)
        running = source.running_evidence(log_id, list(by_workload))
        ratings = {
            w: rate_workload(events, prices, plans, known_evidence=known_evidence(running, w), as_of=now)
            for w, events in sorted(by_workload.items())
        }
        in_window, indexed_storage = {}, []
        listing = listed_requests(ratings, endpoint_id, start, end, now)

    sessions: list[SessionCharge] = []
    zero_lines: list[ZeroCharge] = []
    storage: list[StorageLine] = []
    anomalies: list[AnomalyLine] = []
    spans: list[tuple[int, int, tuple[EntryRef, ...], tuple[EntryRef, ...]]] = []  # for R9 gaps
    listed: set[str] = set()
    for workload_id, rating in ratings.items():
        session = rating.session
        if shown_session(session, endpoint_id, start, end, now):
            assert session is not None  # shown_session
            count = in_window.get(workload_id)
            sessions.append(
                session_charge(
                    session, rating, evidence, lookup, log_id, start, end, now, listing.get(workload_id, ()), count
                )
            )
            listed.add(workload_id)
            spans.append(
                (
                    session.up,
                    end_of(session, now),
                    (evidence.cite(log_id, session.up_seq),),
                    stop_refs_of(session, evidence, log_id),
                )
            )
        for line in rating.zero_lines:
            line_end = line.end if line.end is not None else (now if line.rule == "R8" else line.start)
            if line.endpoint_id != endpoint_id or not overlaps(line.start, line_end, start, end):
                continue
            zero_lines.append(zero_charge(line, evidence, log_id))
            listed.add(workload_id)
            if line.rule == "R8":
                refs = tuple(evidence.cite(log_id, s) for s in line.seqs)
                spans.append((line.start, line_end, refs[:1], refs[-1:] if line.end is not None else ()))
    # R13, R14: the rollups' storage intervals of the endpoint (with an index), and those of workloads read whole.
    charges = {charge.seq: charge for rating in ratings.values() for charge in rating.storage}
    charges.update((charge.seq, charge) for charge in indexed_storage)
    for charge in charges.values():
        if charge.endpoint_id == endpoint_id and charge.start < end and charge.end > start:
            ref = evidence.cite(log_id, charge.seq)
            storage.append(StorageLine(charge, ref, lookup.storage(charge)))
    for workload_id, rating in ratings.items():
        for anomaly in rating.anomalies:
            if anomaly.endpoint_id == endpoint_id and (start <= anomaly.occurred_at <= end or workload_id in listed):
                anomalies.append(AnomalyLine(anomaly, evidence.cite(log_id, anomaly.seq)))
    zero_lines.extend(scaled_to_zero(endpoint_id, spans, start, min(end, now)))

    request = None
    if query.request_id is not None:
        request = request_charge(query.request_id, target.request_workload, ratings, evidence, log_id)

    reconstructed = {(ref.log_id, ref.sequence) for ref in (e.ref for e in evidence.cited.values())}
    for workload_id in listed:
        reconstructed.update((log_id, seq) for _, seq in by_workload.get(workload_id, ()))
    if adjustment_entries is None:
        adjustment_entries = source.entries_of_kind(log_id, [EntryKind.ADJUSTMENT.value])
    adjustments = adjustment_lines(
        source, evidence, lookup, log_id, adjustment_entries, reconstructed, listed if index is not None else None
    )

    invoice_ids = sorted(
        {u.invoice.invoice_id for s in sessions for u in s.units if u.invoice.invoice_id}
        | {line.invoice.invoice_id for line in storage if line.invoice.invoice_id}
        | {line.invoice.invoice_id for line in adjustments if line.invoice.invoice_id}
        | {r.invoice_id for s in sessions for r in s.invoiced}  # R22: an invoice that only took units back
    )
    summaries = []
    for invoice_id in invoice_ids:
        summary = lookup.summary(invoice_id)
        if summary is not None and summary.ref is not None:
            ref = summary.ref
            evidence.cite(ref.log_id, ref.sequence, f"INVOICE #{invoice_id} (R17)")
            summary = dataclasses.replace(summary, issued_at=evidence.head(ref.log_id, ref.sequence).recorded_at)
        if summary is not None:
            summaries.append(summary)
    notes = []
    if isinstance(lookup, NoInvoices):
        notes.append("R17: no invoice covers these charges yet (or invoicing is not enabled on this ledger)")
    sessions.sort(key=lambda s: (s.session.up, s.session.up_seq))
    zero_lines.sort(key=lambda z: (z.start, z.refs[0].sequence if z.refs else -1))
    storage.sort(key=lambda line: (line.charge.start, line.charge.seq))
    anomalies.sort(key=lambda line: line.anomaly.seq)
    return Reconstruction(
        org_id=org_id,
        endpoint_id=endpoint_id,
        request_id=query.request_id,
        start=start,
        end=end,
        as_of=now,
        sessions=tuple(sessions),
        zero_lines=tuple(zero_lines),
        storage=tuple(storage),
        anomalies=tuple(anomalies),
        adjustments=tuple(adjustments),
        request=request,
        entries=tuple(sorted(evidence.cited.values(), key=lambda e: (e.ref.log_id, e.ref.sequence))),
        invoices=tuple(summaries),
        notes=tuple(notes),
    )


def _whole_workloads(source: DisputeSource, evidence: CaseFile, target: Target) -> LoggedEvents:
    """Every entry of each workload touching the window (the reads of a lookup given no rollups)."""
    org_id, endpoint_id, start, end = target.org_id, target.endpoint_id, target.start, target.end
    # 1. The endpoint's entries in the window (and just after it, for storage samples covering its end).
    workloads: set[str] = set()
    for _entry, event in evidence.add(
        source.endpoint_window_entries(org_id, endpoint_id, start, end + STORAGE_LOOKAHEAD)
    ):
        if event is not None and (event.occurred_at <= end or storage_overlaps(event, start, end)):
            workloads.add(event.workload_id)
    # 2. Sessions up across the whole window with no entry inside it (a long idle replica, R3).
    workloads.update(source.live_workloads(org_id, endpoint_id, start))
    if target.request_workload is not None:
        workloads.add(target.request_workload)
    # 3. Every entry of those workloads, so each is rated whole (R10 rounds per session, R25 needs every request).
    # Storage samples outside the window are left out: they change no session, zero line or anomaly (R13, R14).
    by_workload: LoggedEvents = defaultdict(list)
    log_id = org_log_id(org_id)
    loaded = [e for e in source.workload_entries(log_id, sorted(workloads)) if not storage_outside(e, start, end)]
    for entry, event in evidence.add(loaded):
        if event is None or event.workload_id not in workloads:
            continue
        if event.type is EventType.STORAGE_SAMPLE and not storage_overlaps(event, start, end):
            continue
        by_workload[event.workload_id].append((event, entry.sequence))
    # 4. A sample covers up to 31 days before its occurred_at (R13, R14): the endpoint's samples after the lookahead
    # that still reach back into the window, of workloads not read whole.
    later = source.endpoint_window_entries(
        org_id, endpoint_id, end + STORAGE_LOOKAHEAD + 1, end + MAX_INTERVAL_SECONDS * MICROS_PER_SECOND
    )
    reaching = [e for e in later if STORAGE_TYPE in e.body and not storage_outside(e, start, end)]
    for entry, event in evidence.add(reaching):
        if event is not None and event.workload_id not in workloads and storage_overlaps(event, start, end):
            by_workload[event.workload_id].append((event, entry.sequence))
    return by_workload
