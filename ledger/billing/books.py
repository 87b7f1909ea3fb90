"""An org's books: every non-event entry billing reads (ACCOUNT, CREDIT, ADJUSTMENT, INVOICE, PAYMENT, STATE,
BACKFILL), folded from one read of its log, so an evaluation and an auditor see the same account (R15-R23, R29)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from ledger.account import AccountChange, AccountHistory
from ledger.adjustments import Adjustment
from ledger.billing.account_state import AccountStatus, StateChange, fold_status
from ledger.billing.backfills import Backfill, BackfillMark, backfills_of
from ledger.billing.cents import ZERO_CENTS
from ledger.billing.credits import CreditBalance, CreditGrant, credit_balances
from ledger.billing.invoice_entry import Invoice, RecordedAdjustment
from ledger.billing.payments import Payment, is_paid
from ledger.errors import NotFound
from ledger.log.entry import Entry, EntryKind, org_log_id
from ledger.ports import LedgerStore

_BOOK_KINDS = [
    kind.value
    for kind in (
        EntryKind.ACCOUNT,
        EntryKind.CREDIT,
        EntryKind.ADJUSTMENT,
        EntryKind.INVOICE,
        EntryKind.PAYMENT,
        EntryKind.STATE,
        EntryKind.BACKFILL,
    )
]


@dataclass(frozen=True)
class OrgBooks:
    """Every non-event entry billing reads for one org, from one read of its log."""

    org_id: str
    account: AccountHistory
    grants: tuple[CreditGrant, ...]
    adjustments: tuple[RecordedAdjustment, ...]
    invoices: tuple[Invoice, ...]
    payments: tuple[Payment, ...]
    changes: tuple[StateChange, ...]
    backfill_marks: tuple[BackfillMark, ...] = ()

    @property
    def status(self) -> AccountStatus:
        return fold_status(self.changes)

    @property
    def backfills(self) -> list[Backfill]:
        return backfills_of(self.backfill_marks)

    def balances(self, at: int, invoices: Sequence[Invoice] | None = None) -> list[CreditBalance]:
        issued = self.invoices if invoices is None else invoices
        return credit_balances(self.grants, (c for inv in issued for c in inv.credits_applied), at)

    def unpaid_amount_due(self, at: int) -> Decimal:
        return sum((inv.amount_due for inv in self.invoices if not is_paid(inv, self.payments, at)), ZERO_CENTS)

    def invoice(self, number: int) -> Invoice:
        found = next((inv for inv in self.invoices if inv.number == number), None)
        if found is None:
            raise NotFound(f"org {self.org_id!r} has no invoice #{number}")
        return found


def load_books(store: LedgerStore, org_id: str, log_size: int | None = None) -> OrgBooks:
    """The org's books; of its first `log_size` entries when given (the entries a rating reflects)."""
    try:
        entries = store.entries_of_kind(org_log_id(org_id), _BOOK_KINDS)
    except NotFound:
        entries = []
    if log_size is not None:
        entries = [entry for entry in entries if entry.sequence < log_size]
    return books_of(org_id, entries)


def books_of(org_id: str, entries: Iterable[Entry]) -> OrgBooks:
    """The books of an org from its non-event entries, in sequence order (other kinds are passed over)."""
    account: list[AccountChange] = []
    grants: list[CreditGrant] = []
    adjustments: list[RecordedAdjustment] = []
    invoices: list[Invoice] = []
    payments: list[Payment] = []
    changes: list[StateChange] = []
    marks: list[BackfillMark] = []
    for entry in entries:
        body = entry.body_json()
        kind = entry.kind
        if kind is EntryKind.ACCOUNT:
            account.append(AccountChange.from_body(body, entry.sequence))
        elif kind is EntryKind.CREDIT:
            grants.append(CreditGrant.from_body(body, entry.sequence))
        elif kind is EntryKind.ADJUSTMENT:
            adjustments.append(RecordedAdjustment(Adjustment.from_body(body, entry.sequence), entry.recorded_at))
        elif kind is EntryKind.INVOICE:
            invoices.append(Invoice.from_body(body, entry.sequence, entry.entry_hash))
        elif kind is EntryKind.PAYMENT:
            payments.append(Payment.from_body(body, entry.sequence))
        elif kind is EntryKind.STATE:
            changes.append(StateChange.from_body(body, entry.sequence))
        elif kind is EntryKind.BACKFILL:
            marks.append(BackfillMark.from_body(body, entry.sequence))
    return OrgBooks(
        org_id,
        AccountHistory(tuple(account)),
        tuple(grants),
        tuple(adjustments),
        tuple(invoices),
        tuple(payments),
        tuple(changes),
        tuple(marks),
    )
