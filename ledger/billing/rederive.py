"""Re-derive an org's invoices from its raw entries, as an auditor does (`ledgerctl audit verify`, issue #6).

An INVOICE entry states what the billing engine drafted from everything the org's log held before it: the usage
events (rated, R1-R14), the plan and discount (ACCOUNT entries, R10, R20), credit grants (CREDIT, R16), payments
(PAYMENT, R18), adjustments (ADJUSTMENT, R23) and the invoices before it (R22), with the price books the system log
held when it was issued (R11, R12). Re-deriving replays exactly that: the entries are read once, in sequence order,
and at each INVOICE entry the invoice is drafted again from what came before it and compared with the one stored,
figure by figure. Nothing is taken from the rollups or any other derived table, so a wrong rollup, a changed rating
rule or a forged invoice entry all show as a difference.

The engine's rating may have seen events appended while it read (Invoice.rated_log_size is a lower bound), so an
invoice that does not match everything before it is drafted again from the first `rated_log_size` entries only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from ledger.billing.engine import OrgBooks, books_of, month_starts
from ledger.billing.invoices import INVOICE_THRESHOLD, Invoice, Trigger, draft_invoice
from ledger.billing.payments import cadence_at
from ledger.entry import Entry, EntryKind
from ledger.events import UsageEvent, event_from_body
from ledger.pricebook import PriceBook, PriceHistory
from ledger.rating import OrgRating, WorkloadRating, rate_workload
from ledger.timeutil import format_micros
from ledger.tracing import traced

# What the engine fills in from its reading rather than from the entries: compared on its own (a lower bound).
_NOT_REDERIVED = {"rated_log_size", "sequence", "entry_hash"}
_BOOK_KINDS = frozenset({EntryKind.ACCOUNT, EntryKind.CREDIT, EntryKind.ADJUSTMENT, EntryKind.PAYMENT, EntryKind.STATE})


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
    """The org's log as read so far: its events by workload, its book entries, and the ratings kept between
    invoices (a workload is rated again only when it has new events, an open session, or the prices or plans
    changed)."""

    def __init__(self, org_id: str, system_entries: Sequence[Entry]) -> None:
        self.org_id = org_id
        self.system_entries = system_entries
        self.events: dict[str, list[tuple[UsageEvent, int]]] = {}
        self.books: list[Entry] = []
        self.invoices: list[Invoice] = []
        self.ratings: dict[str, WorkloadRating] = {}
        self.changed: set[str] = set()
        self.rated_with: tuple[int, int] | None = None  # (price books, ACCOUNT entries) the kept ratings used

    def event(self, entry: Entry) -> None:
        event = event_from_body(json.loads(entry.body))
        self.events.setdefault(event.workload_id, []).append((event, entry.sequence))
        self.changed.add(event.workload_id)

    def invoice(self, entry: Entry) -> InvoiceFinding:
        stored = Invoice.from_body(entry.body_json(), entry.sequence, entry.entry_hash)
        prices = price_history_at(self.system_entries, entry.recorded_at)
        books = books_of(self.org_id, self.books)
        plans = books.account.plans()
        as_of = entry.recorded_at + 1  # open sessions accrued past the period end (R10): its units are all there
        differences = self._compare(stored, self._draft(stored, books, self._rating(prices, plans, as_of)))
        note = ""
        if differences and stored.rated_log_size is not None and stored.rated_log_size < entry.sequence:
            size = stored.rated_log_size
            rating = self._rating_before(size, prices, plans, as_of)
            if not self._compare(stored, self._draft(stored, books, rating)):
                differences = []
                note = f"as rated from the log's first {size} entries (rated_log_size)"
        if stored.rated_log_size is not None and stored.rated_log_size > entry.sequence:
            differences.append(
                f"rated_log_size: {stored.rated_log_size}, more entries than the log held before the invoice "
                f"(#{entry.sequence})"
            )
        self.invoices.append(stored)
        return InvoiceFinding(self.org_id, stored.number, entry.sequence, str(stored.total), tuple(differences), note)

    def _rating(self, prices: PriceHistory, plans: Any, as_of: int) -> OrgRating:
        used = (len(prices.versions), sum(1 for e in self.books if e.kind is EntryKind.ACCOUNT))
        stale = set(self.events) if used != self.rated_with else set(self.changed)
        stale |= {w for w, r in self.ratings.items() if r.session is not None and r.session.stop is None}
        for workload_id in stale:
            self.ratings[workload_id] = rate_workload(self.events[workload_id], prices, plans, as_of)
        self.changed.clear()
        self.rated_with = used
        return OrgRating(self.org_id, as_of, tuple(r for _, r in sorted(self.ratings.items())))

    def _rating_before(self, size: int, prices: PriceHistory, plans: Any, as_of: int) -> OrgRating:
        """The rating of the log's first `size` entries: the kept ratings (of everything read so far) but for the
        workloads with an event at or after `size`, rated again without those events."""
        ratings = dict(self.ratings)
        for workload_id, events in self.events.items():
            if events[-1][1] >= size:  # events are kept in sequence order
                before = [(event, seq) for event, seq in events if seq < size]
                if before:
                    ratings[workload_id] = rate_workload(before, prices, plans, as_of)
                else:
                    del ratings[workload_id]
        return OrgRating(self.org_id, as_of, tuple(r for _, r in sorted(ratings.items())))

    def _draft(self, stored: Invoice, books: OrgBooks, rating: OrgRating) -> Invoice:
        at = stored.period_end
        settings = books.account.at(at)
        return draft_invoice(
            self.org_id,
            rating,
            self.invoices,
            books.adjustments,
            books.balances(at, self.invoices),
            discount_percent=settings.discount_percent,
            period_end=at,
            trigger=stored.trigger,
            cadence=cadence_at(self.invoices, books.payments, settings.monthly_after_paid_invoices, at),
        )

    def _compare(self, stored: Invoice, draft: Invoice) -> list[str]:
        differences = [
            f"{f.name}: invoiced {_shown(getattr(stored, f.name))}, re-derived {_shown(getattr(draft, f.name))}"
            for f in fields(Invoice)
            if f.name not in _NOT_REDERIVED and getattr(stored, f.name) != getattr(draft, f.name)
        ]
        # The trigger is the engine's reason to issue (R17): a month end, or usage over the threshold.
        if stored.trigger is Trigger.MONTH_END and month_starts(stored.period_end - 1, stored.period_end) != [
            stored.period_end
        ]:
            differences.append(f"trigger: MONTH_END, but {format_micros(stored.period_end)} is not a month's start")
        if stored.trigger is Trigger.THRESHOLD and draft.usage_after_discount <= INVOICE_THRESHOLD:
            differences.append(
                f"trigger: THRESHOLD, but usage after discounts re-derives to {draft.usage_after_discount}, not over "
                f"{INVOICE_THRESHOLD} (R17)"
            )
        return differences


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
        if entry.kind is EntryKind.EVENT:
            replay.event(entry)
        elif entry.kind is EntryKind.INVOICE:
            findings.append(replay.invoice(entry))
        elif entry.kind in _BOOK_KINDS:
            replay.books.append(entry)
    return findings
