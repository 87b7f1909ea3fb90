"""Dispute reconstruction (R27): every charge of an endpoint in a time window, or of one request, rebuilt from entries.

A support ticket names an endpoint, maybe a request, and an approximate time (query.py). The lookup (lookup.py)
reads only what the indexes and the usage rollups point at: the workloads of the endpoint around the window, their
lifecycle entries, the requests near the window, a request's entries (ix_entries_request) and the org's ACCOUNT and
ADJUSTMENT entries (ix_entries_kind), all through the ports in ledger/ports.py (the Dispute section). Each session's
R25 split over all its requests comes from the rollups' serving union (rollup_rating.py; docs/disputes.md); without
rollups it reads every entry of each workload (reconstruction.py). It rates those workloads with the rating engine
and says, for every line, the rule that decided it (R1-R14, R25, R26) and the entries (log, sequence number, entry
hash) it rests on (charges.py, report.py, evidence.py). Invoices (R17, R22) and inclusion proofs come through small
adapters (invoices.py, proofs.py) that answer "not yet invoiced" and "no signed checkpoint" until an invoice is
issued and a signing key exists. Corrections are ADJUSTMENT entries (adjust.py, R23).
"""

from ledger.dispute.adjust import adjust_charges
from ledger.dispute.invoices import BillingInvoices, InvoiceLookup, NoInvoices, invoices_for
from ledger.dispute.lookup import reconstruct_charges
from ledger.dispute.proofs import PROOFS_ON_REQUEST, prove_cited
from ledger.dispute.query import DEFAULT_TOLERANCE, DisputeQuery
from ledger.dispute.reconstruction import reconstruct
from ledger.dispute.report import (
    NOT_YET_INVOICED,
    AdjustmentLine,
    AnomalyLine,
    ChargePart,
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
    decimal_text,
)
from ledger.ports import DisputeSource

__all__ = [
    "DEFAULT_TOLERANCE",
    "NOT_YET_INVOICED",
    "PROOFS_ON_REQUEST",
    "AdjustmentLine",
    "AnomalyLine",
    "BillingInvoices",
    "ChargePart",
    "DisputeQuery",
    "DisputeSource",
    "EntryProofs",
    "Evidence",
    "InvoiceCoverage",
    "InvoiceLookup",
    "InvoiceSummary",
    "InvoicedRange",
    "NoInvoices",
    "Reconstruction",
    "RequestCharge",
    "SessionCharge",
    "StorageLine",
    "TimelineStep",
    "UnitCharge",
    "Verdict",
    "ZeroCharge",
    "adjust_charges",
    "decimal_text",
    "invoices_for",
    "prove_cited",
    "reconstruct",
    "reconstruct_charges",
]
