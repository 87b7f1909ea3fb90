"""Billing on top of rating: credits (R16), invoices (R17, R18, R20-R23), payments and account state (R15, R19)."""

from ledger.billing.account_state import AccountState, AccountStatus, StateChange, StateChangeType, hourly_spend
from ledger.billing.books import OrgBooks, load_books
from ledger.billing.cents import round_cents
from ledger.billing.closer import DEFAULT_CLOSE_INTERVAL, PeriodCloser
from ledger.billing.credits import CreditApplication, CreditBalance, CreditGrant
from ledger.billing.due_invoices import CloseResult
from ledger.billing.engine import AccountSummary, BillingEngine, BillingRefused
from ledger.billing.invoices import (
    Cadence,
    CoveredSession,
    GraceFired,
    Invoice,
    InvoiceLine,
    LineKind,
    Trigger,
    invoice_covering_adjustment,
    invoice_covering_storage,
    invoice_covering_unit,
    invoices_of,
)
from ledger.billing.payments import Payment, PaymentOutcome
from ledger.billing.watch import AccountStateHub

__all__ = [
    "DEFAULT_CLOSE_INTERVAL",
    "AccountState",
    "AccountStateHub",
    "AccountStatus",
    "AccountSummary",
    "BillingEngine",
    "BillingRefused",
    "Cadence",
    "CloseResult",
    "CoveredSession",
    "CreditApplication",
    "CreditBalance",
    "CreditGrant",
    "GraceFired",
    "Invoice",
    "InvoiceLine",
    "LineKind",
    "OrgBooks",
    "Payment",
    "PaymentOutcome",
    "PeriodCloser",
    "StateChange",
    "StateChangeType",
    "Trigger",
    "hourly_spend",
    "invoice_covering_adjustment",
    "invoice_covering_storage",
    "invoice_covering_unit",
    "invoices_of",
    "load_books",
    "round_cents",
]
