"""Issued invoices as the rest of the ledger reads them (R17, R22, R27): an org's INVOICE entries, and which invoice
charges a unit, a storage interval or an adjustment. The entry's types are re-exported for those readers (the
server's billing RPCs, the dispute lookup)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from ledger.billing.invoice_entry import (
    Cadence,
    CoveredSession,
    GraceFired,
    Invoice,
    InvoiceLine,
    LineKind,
    PricedRange,
    RecordedAdjustment,
    Trigger,
)
from ledger.errors import NotFound
from ledger.log.entry import EntryKind, org_log_id
from ledger.ports import InvoiceEntries

__all__ = [
    "Cadence",
    "CoveredSession",
    "GraceFired",
    "Invoice",
    "InvoiceLine",
    "LineKind",
    "PricedRange",
    "RecordedAdjustment",
    "Trigger",
    "invoice_covering_adjustment",
    "invoice_covering_storage",
    "invoice_covering_unit",
    "invoices_of",
]

# Parsed INVOICE entries by (log, seq, entry hash). Entries are never edited, so a parse stays right for as long
# as the hash matches; an invoice covering a month of a busy org is a large body, and every dispute lookup (R27)
# asks for all of the org's invoices.
_PARSED: OrderedDict[tuple[str, int, bytes], Invoice] = OrderedDict()
_PARSED_MAX = 512
_PARSED_LOCK = threading.Lock()


def invoices_of(
    store: InvoiceEntries, org_id: str, refs_read: Sequence[tuple[int, bytes]] | None = None
) -> list[Invoice]:
    """Every issued invoice of an org, oldest first. `refs_read`: the (seq, entry_hash) of its INVOICE entries when
    the caller read them already (store.kind_refs), as a dispute lookup does with its first reads."""
    log_id = org_log_id(org_id)
    try:
        if refs_read is None:
            refs_read = store.kind_refs(log_id, EntryKind.INVOICE.value)
        refs = [(log_id, seq, entry_hash) for seq, entry_hash in refs_read]
        with _PARSED_LOCK:
            known = {key: _PARSED[key] for key in refs if key in _PARSED}
        missing = [seq for key in refs if key not in known for seq in (key[1],)]
        for entry in store.entries_at(log_id, missing) if missing else ():
            known[(log_id, entry.sequence, entry.entry_hash)] = Invoice.from_body(
                entry.body_json(), entry.sequence, entry.entry_hash
            )
    except NotFound:
        return []
    with _PARSED_LOCK:
        for key in refs:
            _PARSED[key] = known[key]
            _PARSED.move_to_end(key)
        while len(_PARSED) > _PARSED_MAX:
            _PARSED.popitem(last=False)
    return [known[key] for key in refs]


def invoice_covering_unit(
    invoices: Sequence[Invoice], workload_id: str, unit_index: int, up_seq: int | None = None
) -> Invoice | None:
    """The invoice that charges unit `unit_index` of the workload's session, net of reversals (R17, R22).

    A workload has one session (a second UP is an anomaly, R26), but a late event can replace its UP; pass
    `up_seq` to ask about one session, else the latest invoice still charging the unit is returned.
    """
    holders: dict[int, Invoice | None] = {}
    for invoice in invoices:
        for covered in invoice.sessions_by_workload.get(workload_id, ()):
            if up_seq is not None and covered.up_seq != up_seq:
                continue
            if covered.first <= unit_index < covered.end:
                holders[covered.up_seq] = None if covered.reversal else invoice
    found = [inv for inv in holders.values() if inv is not None]
    return max(found, key=lambda inv: inv.number) if found else None


def invoice_covering_storage(invoices: Sequence[Invoice], seq: int) -> Invoice | None:
    """The invoice that charged the storage interval of STORAGE_SAMPLE entry `seq` (R13, R14, R17)."""
    return next((inv for inv in invoices if seq in inv.storage_sequence_set), None)


def invoice_covering_adjustment(invoices: Sequence[Invoice], seq: int) -> Invoice | None:
    """The invoice that carried ADJUSTMENT entry `seq` (R23)."""
    return next((inv for inv in invoices if seq in inv.adjustment_sequences), None)
