"""Where each reconstructed charge was invoiced (R16, R17, R22): an adapter over ledger.billing.invoices."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ledger.dispute.report import NOT_YET_INVOICED, InvoiceCoverage, InvoicedRange, InvoiceSummary
from ledger.log.entry import EntryRef, org_log_id
from ledger.rating import Session, StorageCharge
from ledger.timeutil import MICROS_PER_SECOND
from ledger.tracing import traced

if TYPE_CHECKING:
    from ledger.billing.invoices import Invoice


class InvoiceLookup(Protocol):
    """Where each reconstructed charge was invoiced."""

    def unit(self, session: Session, unit_index: int) -> InvoiceCoverage: ...

    def storage(self, charge: StorageCharge) -> InvoiceCoverage: ...

    def adjustment(self, seq: int) -> InvoiceCoverage: ...

    def summary(self, invoice_id: str) -> InvoiceSummary | None: ...

    def invoiced_ranges(self, session: Session) -> tuple[InvoicedRange, ...]: ...


class NoInvoices:
    """Before any invoice exists (or without ledger.billing): every charge is not yet invoiced."""

    def unit(self, session: Session, unit_index: int) -> InvoiceCoverage:
        return NOT_YET_INVOICED

    def storage(self, charge: StorageCharge) -> InvoiceCoverage:
        return NOT_YET_INVOICED

    def adjustment(self, seq: int) -> InvoiceCoverage:
        return NOT_YET_INVOICED

    def summary(self, invoice_id: str) -> InvoiceSummary | None:
        return None

    def invoiced_ranges(self, session: Session) -> tuple[InvoicedRange, ...]:
        return ()


class BillingInvoices:
    """An org's issued invoices (ledger.billing.invoices), read through its `invoice_covering_*` functions.

    R22: a charge is late on its invoice when it starts before that invoice's period, i.e. before the end of the
    invoice issued before it (ledger.billing drafts late lines exactly so).
    """

    def __init__(self, invoices: Sequence[Invoice]) -> None:
        from ledger.billing import invoices as billing

        self._billing = billing
        self.invoices = list(invoices)
        self._by_id = {str(invoice.number): invoice for invoice in self.invoices}
        # One coverage per (invoice, late): a window's hundreds of lines share a few, and answers compare them.
        self._coverages: dict[tuple[int, bool], InvoiceCoverage] = {}
        self._holding: dict[str, list[Invoice]] = {}  # by workload: the invoices charging its units, in order

    def _coverage(self, invoice: Invoice | None, start: int | None) -> InvoiceCoverage:
        if invoice is None:
            return NOT_YET_INVOICED
        late = start is not None and start < invoice.period_start
        coverage = self._coverages.get((invoice.number, late))
        if coverage is None:
            coverage = InvoiceCoverage(str(invoice.number), _invoice_ref(invoice), late)
            self._coverages[(invoice.number, late)] = coverage
        return coverage

    def unit(self, session: Session, unit_index: int) -> InvoiceCoverage:
        holding = self._holding.get(session.workload_id)
        if holding is None:  # only the invoices charging the workload can cover its units; found once per lookup
            holding = [i for i in self.invoices if session.workload_id in i.sessions_by_workload]
            self._holding[session.workload_id] = holding
        found = self._billing.invoice_covering_unit(holding, session.workload_id, unit_index, session.up_seq)
        return self._coverage(found, session.up + unit_index * session.unit_seconds * MICROS_PER_SECOND)

    def storage(self, charge: StorageCharge) -> InvoiceCoverage:
        return self._coverage(self._billing.invoice_covering_storage(self.invoices, charge.seq), charge.start)

    def adjustment(self, seq: int) -> InvoiceCoverage:
        return self._coverage(self._billing.invoice_covering_adjustment(self.invoices, seq), None)

    def summary(self, invoice_id: str) -> InvoiceSummary | None:
        invoice = self._by_id.get(invoice_id)
        if invoice is None:
            return None
        return InvoiceSummary(
            invoice_id=invoice_id,
            ref=_invoice_ref(invoice),
            issued_at=None,
            period_start=invoice.period_start,
            period_end=invoice.period_end,
            total=invoice.total,
            credits_applied=invoice.credits_total,
            amount_due=invoice.amount_due,
        )

    def invoiced_ranges(self, session: Session) -> tuple[InvoicedRange, ...]:
        """Every range of the session's units an issued invoice charged or took back, in invoice order (R17, R22)."""
        found: list[InvoicedRange] = []
        for invoice in self.invoices:
            for covered in invoice.sessions_by_workload.get(session.workload_id, ()):
                if covered.up_seq != session.up_seq:
                    continue
                for priced in covered.priced:
                    found.append(
                        InvoicedRange(
                            invoice_id=str(invoice.number),
                            ref=_invoice_ref(invoice),
                            first_unit_index=priced.first,
                            count=priced.end - priced.first,
                            unit_price=priced.unit_price,
                            price_version=priced.price_version,
                            reversal=covered.reversal,
                            late=covered.unit_start(priced.first) < invoice.period_start,
                        )
                    )
        return tuple(found)


def _invoice_ref(invoice: Invoice) -> EntryRef | None:
    return EntryRef(org_log_id(invoice.org_id), invoice.sequence, invoice.entry_hash) if invoice.sequence >= 0 else None


@traced("ledger.dispute.invoices", ids=("org_id",))
def invoices_for(ledger: Any, org_id: str, refs: Sequence[tuple[int, bytes]] | None = None) -> InvoiceLookup:
    """The org's issued invoices from ledger.billing, or NoInvoices when this build has no billing package.
    `refs`: the (seq, entry_hash) of the org's INVOICE entries, when read already."""
    try:
        from ledger.billing import invoices as billing
    except ImportError:
        return NoInvoices()
    return BillingInvoices(billing.invoices_of(ledger.store, org_id, refs))
