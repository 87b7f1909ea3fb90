"""Re-derive an org's invoices from its raw entries, as an auditor does (`ledgerctl audit verify`, issue #6).

An INVOICE entry states what the billing engine drafted from exactly the entries before it (R17, R28: it was
appended only while the org's log held exactly the `rated_log_size` entries it was rated from, with the invoices of
the same evaluation after them): the usage events (rated, R1-R14, open sessions to their evidence, R28), the plan
and discount (ACCOUNT entries, R10, R20), credit grants (CREDIT, R16: those available at its `issued_at`), payments
(PAYMENT, R18), adjustments (ADJUSTMENT, R23) and the invoices before it (R22), with the price books the system log
held when it was issued (R11, R12). Re-deriving replays exactly that: the entries are read once, in sequence order,
and at each INVOICE entry the invoice is drafted again from what came before it and compared with the one stored,
figure by figure, and so is its cut (R17): a threshold invoice where the usage first exceeds the threshold before
the settled-through time, a month-end invoice at a month's end the settled-through time reached or whose grace had
passed on the recorded wall clock. An invoice that bills a unit past its session's evidence (R28) is named. Nothing
is taken from the rollups or any other derived table, so a wrong rollup, a changed rating rule or a forged invoice
entry all show as a difference.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from ledger.billing.backfills import grace_held
from ledger.billing.books import OrgBooks, books_of
from ledger.billing.cuts import INVOICE_THRESHOLD, ThresholdWalk
from ledger.billing.due_invoices import month_starts
from ledger.billing.invoice_draft import draft_invoice
from ledger.billing.invoice_entry import Invoice, Trigger
from ledger.billing.payments import cadence_at
from ledger.events import EventType, UsageEvent, event_from_body
from ledger.log.entry import Entry, EntryKind
from ledger.pricebook import PriceBook, PriceHistory
from ledger.rating import OrgRating, WorkloadRating, rate_workload
from ledger.rating.evidence import settled_through
from ledger.rating.workloads import ENDING_TYPES
from ledger.timeutil import MICROS_PER_SECOND, format_micros
from ledger.tracing import traced

# What the entry itself says rather than the draft: its place in the log.
_NOT_REDERIVED = {"sequence", "entry_hash"}
_BOOK_KINDS = frozenset(
    {EntryKind.ACCOUNT, EntryKind.CREDIT, EntryKind.ADJUSTMENT, EntryKind.PAYMENT, EntryKind.STATE, EntryKind.BACKFILL}
)


@dataclass(frozen=True)
class InvoiceFinding:
    """One INVOICE entry re-derived: `differences` is empty when every figure matched."""

    org_id: str
    number: int
    sequence: int
    total: str
    differences: tuple[str, ...]
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.differences


def price_history_at(system_entries: Sequence[Entry], instant: int) -> PriceHistory:
    """The price books the system log held at `instant` (recorded at or before it): a later version, even one
    effective earlier (R12), was not there to rate the invoice."""
    return PriceHistory(
        [
            PriceBook.from_body(entry.body_json(), entry.sequence)
            for entry in system_entries
            if entry.kind is EntryKind.PRICE_BOOK and entry.recorded_at <= instant
        ]
    )


class _Replay:
    """The org's log as read so far: its events by workload, its book entries, the latest event and HEARTBEAT
    (R28), and the ratings kept between invoices (a workload is rated again only when it has new events, an open
    session, or the prices or plans changed)."""

    def __init__(self, org_id: str, system_entries: Sequence[Entry]) -> None:
        self.org_id = org_id
        self.system_entries = system_entries
        self.events: dict[str, list[tuple[UsageEvent, int]]] = {}
        self.books: list[Entry] = []
        self.invoices: list[Invoice] = []
        self.ratings: dict[str, WorkloadRating] = {}
        self.changed: set[str] = set()
        self.rated_with: tuple[int, int] | None = None  # (price books, ACCOUNT entries) the kept ratings used
        self.latest_event_at: int | None = None
        self.heartbeat_at: int | None = None
        self.storage_at: dict[str, int] = {}  # each workload's latest storage sample (R28: rating.storage_hold)
        self.ended: set[str] = set()
        self.last_kind: EntryKind | None = None
        self.size = 0

    def read(self, entry: Entry) -> InvoiceFinding | None:
        finding = None
        if entry.kind is EntryKind.EVENT:
            self.event(entry)
        elif entry.kind is EntryKind.INVOICE:
            finding = self.invoice(entry)
        elif entry.kind in _BOOK_KINDS:
            self.books.append(entry)
        self.last_kind = entry.kind
        self.size = entry.sequence + 1
        return finding

    def event(self, entry: Entry) -> None:
        event = event_from_body(json.loads(entry.body))
        at = event.occurred_at
        self.latest_event_at = at if self.latest_event_at is None else max(self.latest_event_at, at)
        if event.is_heartbeat:  # R28: evidence for every open session, never a workload
            self.heartbeat_at = at if self.heartbeat_at is None else max(self.heartbeat_at, at)
            return
        self.events.setdefault(event.workload_id, []).append((event, entry.sequence))
        self.changed.add(event.workload_id)
        if event.type in ENDING_TYPES:
            self.ended.add(event.workload_id)
        elif event.type is EventType.STORAGE_SAMPLE:
            self.storage_at[event.workload_id] = max(self.storage_at.get(event.workload_id, at), at)

    def invoice(self, entry: Entry) -> InvoiceFinding:
        stored = Invoice.from_body(entry.body_json(), entry.sequence, entry.entry_hash)
        differences: list[str] = []
        size = stored.rated_log_size
        # The second invoice of one evaluation follows the first, rated from the same entries (one append).
        batch = bool(self.invoices) and self.last_kind is EntryKind.INVOICE
        if size is None or stored.issued_at is None:
            differences.append("R17: the invoice records no rated_log_size or issued_at, so it cannot be re-derived")
        elif size != entry.sequence and not (batch and self.invoices[-1].rated_log_size == size):
            differences.append(
                f"rated_log_size: {size}, but the invoice is entry #{entry.sequence} and not in one append with "
                "invoices rated from the same entries (R17: appended only while the log held what it was rated from)"
            )
        prices = price_history_at(self.system_entries, entry.recorded_at)
        books = books_of(self.org_id, self.books)
        plans = books.account.plans()
        rating = self._rating(prices, plans)
        draft = self._draft(stored, books, rating)
        differences += self._compare(stored, draft)
        differences += self._check_cut(stored, books, rating)
        differences += _past_evidence(stored, rating)
        self.invoices.append(stored)
        note = (
            f"cut {format_micros(stored.period_end)}, settled through "
            f"{format_micros(stored.settled_through) if stored.settled_through is not None else 'unknown'}"
            + (f", grace fired at {format_micros(stored.grace.wall_clock)}" if stored.grace is not None else "")
        )
        return InvoiceFinding(self.org_id, stored.number, entry.sequence, str(stored.total), tuple(differences), note)

    def _rating(self, prices: PriceHistory, plans: Any) -> OrgRating:
        used = (len(prices.versions), sum(1 for e in self.books if e.kind is EntryKind.ACCOUNT))
        stale = set(self.events) if used != self.rated_with else set(self.changed)
        stale |= {w for w, r in self.ratings.items() if r.session is not None and r.session.stop is None}
        for workload_id in stale:
            self.ratings[workload_id] = rate_workload(
                self.events[workload_id], prices, plans, known_evidence=self.heartbeat_at
            )
        self.changed.clear()
        self.rated_with = used
        workloads = tuple(r for _, r in sorted(self.ratings.items()))
        hold = min((at for w, at in self.storage_at.items() if w not in self.ended), default=None)
        return OrgRating(self.org_id, None, workloads, self.size, self.latest_event_at, self.heartbeat_at, hold)

    def _draft(self, stored: Invoice, books: OrgBooks, rating: OrgRating) -> Invoice:
        at = stored.period_end
        issued_at = stored.issued_at if stored.issued_at is not None else at
        settings = books.account.at(at)
        draft = draft_invoice(
            self.org_id,
            rating,
            self.invoices,
            books.adjustments,
            books.balances(issued_at, self.invoices),
            discount_percent=settings.discount_percent,
            period_end=at,
            trigger=stored.trigger,
            cadence=cadence_at(self.invoices, books.payments, settings.monthly_after_paid_invoices, issued_at),
            issued_at=stored.issued_at,
            settled_through=settled_through(rating),
            grace=stored.grace,
        )
        # The invoices of one evaluation were rated from the entries before the first of them.
        return draft if stored.rated_log_size is None else _with_size(draft, stored.rated_log_size)

    def _compare(self, stored: Invoice, draft: Invoice) -> list[str]:
        return [
            f"{f.name}: invoiced {_shown(getattr(stored, f.name))}, re-derived {_shown(getattr(draft, f.name))}"
            for f in fields(Invoice)
            if f.name not in _NOT_REDERIVED and getattr(stored, f.name) != getattr(draft, f.name)
        ]

    def _check_cut(self, stored: Invoice, books: OrgBooks, rating: OrgRating) -> list[str]:
        """R17: the cut is where the rules put it, given the settled-through time the entries before it give."""
        cut = stored.period_end
        settled = settled_through(rating)
        if settled is None:
            return ["R17: the log held no usage event before the invoice"]
        if stored.trigger is Trigger.MONTH_END:
            if month_starts(cut - 1, cut) != [cut]:
                return [f"trigger: MONTH_END, but {format_micros(cut)} is not a month's end"]
            grace = stored.grace
            if settled < cut and (grace is None or grace.wall_clock < cut + grace.grace_seconds * MICROS_PER_SECOND):
                return [
                    f"R17: month-end cut {format_micros(cut)} is after the settled-through time "
                    f"{format_micros(settled)} and no grace period had passed"
                ]
            month_start = month_starts(cut - 32 * 24 * 3600 * MICROS_PER_SECOND, cut)[-2]
            held = grace_held(books.backfills, month_start, cut)
            if settled < cut and held is not None:
                return [f"R29: the grace fired while backfill {held.backfill_id} overlapping the month was open"]
            return []
        if stored.trigger is not Trigger.THRESHOLD:
            return [f"trigger: {stored.trigger.value} is never issued"]
        last = self.invoices[-1].period_end if self.invoices else None
        month_start = month_starts(cut - 1 - 32 * 24 * 3600 * MICROS_PER_SECOND, cut - 1)[-1]
        origin = month_start if last is None or last < month_start else last
        if last is None:
            first = min([s.up for s in rating.sessions] + [c.start for c in rating.storage], default=month_start)
            origin = max(first, month_start)
        month_end = month_starts(origin, origin + 32 * 24 * 3600 * MICROS_PER_SECOND)[0]
        discount = books.account.at(origin).discount_percent
        expected = ThresholdWalk(rating, self.invoices, origin, discount).first_crossing(
            INVOICE_THRESHOLD, min(settled, month_end)
        )
        if expected != cut:
            shown = format_micros(expected) if expected is not None else "no crossing"
            return [
                f"R17: threshold cut {format_micros(cut)}, but the usage after discounts first exceeds "
                f"{INVOICE_THRESHOLD} before the settled-through time {format_micros(settled)} at: {shown}"
            ]
        return []


def _with_size(invoice: Invoice, size: int) -> Invoice:
    return replace(invoice, rated_log_size=size)


def _past_evidence(stored: Invoice, rating: OrgRating) -> list[str]:
    """R28: every unit the invoice charges starts before its session's stop or evidence of running."""
    sessions = {(s.workload_id, s.up_seq): s for s in rating.sessions}
    found = []
    for covered in stored.sessions:
        if covered.reversal or covered.end <= covered.first:
            continue
        session = sessions.get(covered.key)
        last_start = covered.unit_start(covered.end - 1)
        proven = None if session is None else session.stop if session.stop is not None else session.as_of
        if proven is None or last_start >= proven:
            found.append(
                f"R28: bills unit {covered.end - 1} of workload {covered.workload_id} starting "
                f"{format_micros(last_start)}, past what the log before it proves"
            )
    return found


def _shown(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "..."


@traced("ledger.invoice.rederive", ids=("org_id",))
def rederive_invoices(
    org_id: str,
    entries: Iterable[Entry],
    system_entries: Sequence[Entry],
    on_entry: Callable[[Entry], None] | None = None,
) -> list[InvoiceFinding]:
    """Re-derive every INVOICE entry of an org's log from the entries before it (`entries`: the whole log, in
    sequence order; `system_entries`: the system log, for its price books). `on_entry` sees each entry read."""
    replay = _Replay(org_id, system_entries)
    findings: list[InvoiceFinding] = []
    for entry in entries:
        if on_entry is not None:
            on_entry(entry)
        finding = replay.read(entry)
        if finding is not None:
            findings.append(finding)
    return findings
