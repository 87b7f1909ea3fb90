"""The billing engine: grants credits, closes periods into invoices, records payments and flips account state.

Every change is an entry in the org's log (CREDIT, INVOICE, PAYMENT, STATE), so an auditor replays the account from
the log alone. Rated usage is read through UsageView.billing_rating: from the usage rollups, only the workloads
an evaluation can charge differently (ledger/billing/scope.py), so an evaluation's cost and memory follow the
usage since the last invoice, not the length of the log. Writes for one org are serialized in this
process; across processes, each entry's idempotency key (invoice number, state ordinal) turns a race into a
refused duplicate instead of a second invoice.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ledger.account import AccountChange, AccountHistory, AccountSettings
from ledger.adjustments import Adjustment
from ledger.billing.account_state import (
    FAMILY_OF,
    HOUR,
    AccountStatus,
    StateChange,
    StateChangeType,
    StateFamily,
    fold_status,
    hourly_spend,
    spend_flips,
)
from ledger.billing.cents import ZERO_CENTS, cents_text, exact_usd, usd
from ledger.billing.credits import CreditBalance, CreditGrant, credit_balances, credit_left, parse_credit_grant
from ledger.billing.invoices import (
    INVOICE_THRESHOLD,
    Cadence,
    Invoice,
    RecordedAdjustment,
    Trigger,
    draft_invoice,
)
from ledger.billing.payments import (
    Payment,
    PaymentOutcome,
    cadence_at,
    check_opaque_reference,
    is_paid,
    paid_streak,
)
from ledger.billing.scope import billing_scope
from ledger.billing.watch import AccountStateHub
from ledger.core import Ledger, derive_index
from ledger.entry import Entry, EntryKind, canonical_body, org_log_id
from ledger.errors import EventConflict, FieldViolation, InvalidInput, LedgerError, NotFound
from ledger.events import IDENTIFIER_RE, IDENTIFIER_RULE, format_decimal
from ledger.metrics import record_account_state_change, record_invoice_issued
from ledger.rating import OrgRating
from ledger.sqlstore.rollups import UsageRollups
from ledger.sqlstore.store import SqlStore
from ledger.store import Appended, NewEntry
from ledger.timeutil import format_micros, from_datetime, to_datetime
from ledger.usage import UsageView

# R15: after a long pause (a server down for days), flips older than this before "now" are not reconstructed.
DEFAULT_SPEND_LOOKBACK = 24 * HOUR
_BOOK_KINDS = [
    kind.value
    for kind in (
        EntryKind.ACCOUNT,
        EntryKind.CREDIT,
        EntryKind.ADJUSTMENT,
        EntryKind.INVOICE,
        EntryKind.PAYMENT,
        EntryKind.STATE,
    )
]


class BillingRefused(LedgerError):
    """The request is well formed but the account's state does not allow it (already paid, nothing due...)."""

    reason = "BILLING_PRECONDITION_FAILED"


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

    @property
    def status(self) -> AccountStatus:
        return fold_status(self.changes)

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


def load_books(ledger: Ledger, org_id: str) -> OrgBooks:
    try:
        entries = ledger.store.entries_of_kind(org_log_id(org_id), _BOOK_KINDS)
    except NotFound:
        entries = []
    return books_of(org_id, entries)


def books_of(org_id: str, entries: Iterable[Entry]) -> OrgBooks:
    """The books of an org from its non-event entries, in sequence order (other kinds are passed over)."""
    account: list[AccountChange] = []
    grants: list[CreditGrant] = []
    adjustments: list[RecordedAdjustment] = []
    invoices: list[Invoice] = []
    payments: list[Payment] = []
    changes: list[StateChange] = []
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
    return OrgBooks(
        org_id,
        AccountHistory(tuple(account)),
        tuple(grants),
        tuple(adjustments),
        tuple(invoices),
        tuple(payments),
        tuple(changes),
    )


@dataclass(frozen=True)
class CloseResult:
    """What closing an org's period at `at` issued (possibly nothing), and why (R17, R18)."""

    org_id: str
    at: int
    issued: tuple[Invoice, ...]
    cadence: Cadence
    explanation: str


@dataclass(frozen=True)
class AccountSummary:
    """An org's account as of an instant: state (R15, R19), credit left (R16), the open period's running total
    (R17, R20), the last hour's spend against the limit (R15) and whether a payment method is on file (R19)."""

    org_id: str
    as_of: int
    status: AccountStatus
    settings: AccountSettings
    balances: tuple[CreditBalance, ...]
    credit_left: Decimal
    open_period: Invoice
    hourly_spend: Decimal
    unpaid_amount_due: Decimal
    cadence: Cadence
    invoices: int


def month_starts(after: int, upto: int) -> list[int]:
    """R17: the UTC calendar-month boundaries b with after < b <= upto."""
    moment = to_datetime(after)
    year, month = moment.year, moment.month
    found: list[int] = []
    while True:
        month += 1
        if month == 13:
            year, month = year + 1, 1
        boundary = from_datetime(datetime(year, month, 1, tzinfo=UTC))
        if boundary > upto:
            return found
        found.append(boundary)


class BillingEngine:
    """R15-R20, R22, R23 on top of rating. Thread-safe; one per Ledger."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        usage: UsageView | None = None,
        hub: AccountStateHub | None = None,
        spend_lookback: int = DEFAULT_SPEND_LOOKBACK,
        scoped: bool = True,
    ) -> None:
        """`scoped=False` re-rates the whole log at every evaluation: the reference the scoped path is tested
        against (tests/test_billing_scope.py)."""
        self.ledger = ledger
        rollups = UsageRollups(ledger.store) if isinstance(ledger.store, SqlStore) else None
        self.usage = usage or UsageView(ledger, rollups)
        self.scoped = scoped
        self.hub = hub or AccountStateHub()
        self.spend_lookback = spend_lookback
        self._guard = threading.Lock()
        self._org_locks: dict[str, threading.RLock] = {}
        # Per org: the instant up to which R15 flips were looked for (in this process).
        self._spend_checked: dict[str, int] = {}

    def _lock(self, org_id: str) -> threading.RLock:
        with self._guard:
            return self._org_locks.setdefault(org_id, threading.RLock())

    def now(self) -> int:
        return self.ledger.clock()

    # -- reads --------------------------------------------------------------------------------------------------

    def books(self, org_id: str) -> OrgBooks:
        _check_org(org_id)
        return load_books(self.ledger, org_id)

    def rating(self, org_id: str, at: int) -> OrgRating:
        """Every workload's rated usage with every unit that started at or before `at` (R10), from the log."""
        return self.usage.org_rating(org_id, at + 1)

    def _rating(self, books: OrgBooks, at: int, spend_checked_from: int | None = None) -> OrgRating:
        """Rated usage with every unit that started at or before `at` (R10): of the workloads an evaluation at
        `at` can charge differently (scope.py), R15's window from `spend_checked_from` included."""
        if not self.scoped:
            return self.usage.org_rating(books.org_id, at + 1)
        scope = billing_scope(books.invoices, books.account, at, spend_checked_from)
        return self.usage.billing_rating(books.org_id, at + 1, scope)

    def invoice(self, org_id: str, number: int) -> tuple[Invoice, OrgBooks]:
        books = self.books(org_id)
        return books.invoice(number), books

    def open_period(self, books: OrgBooks, rating: OrgRating, at: int) -> Invoice:
        """The running total (R17): what an invoice issued at `at` would hold."""
        return self._draft(books, list(books.invoices), rating, at, Trigger.DRAFT)

    def summary(self, org_id: str, at: int | None = None) -> AccountSummary:
        instant = self.now() if at is None else at
        books = self.books(org_id)
        rating = self._rating(books, instant, instant)  # hourly_spend looks at the hour before `instant`
        balances = books.balances(instant)
        settings = books.account.at(instant)
        return AccountSummary(
            org_id=org_id,
            as_of=instant,
            status=books.status,
            settings=settings,
            balances=tuple(balances),
            credit_left=credit_left(balances, instant),
            open_period=self.open_period(books, rating, instant),
            hourly_spend=hourly_spend(rating, instant),
            unpaid_amount_due=books.unpaid_amount_due(instant),
            cadence=cadence_at(books.invoices, books.payments, settings.monthly_after_paid_invoices, instant),
            invoices=len(books.invoices),
        )

    # -- credits (R16) ------------------------------------------------------------------------------------------

    def grant_credit(
        self, org_id: str, amount: str, reason: str, expires_at: int | None, request_id: str = ""
    ) -> tuple[CreditGrant, bool]:
        """Append a CREDIT entry (R16). A retried request_id with the same grant answers with the original
        (`True`: it was already there); with a different grant it is refused."""
        grant = parse_credit_grant(org_id, amount, reason, expires_at, request_id or uuid.uuid4().hex, now=self.now())
        with self._lock(org_id):
            books = self.books(org_id)
            prior = next((g for g in books.grants if g.request_id == grant.request_id), None)
            if prior is not None:
                if (prior.amount, prior.reason, prior.expires_at) != (grant.amount, grant.reason, grant.expires_at):
                    raise BillingRefused(
                        f"R16: request {grant.request_id!r} already granted {usd(prior.amount)} (entry "
                        f"#{prior.sequence}) with different terms; nothing was appended"
                    )
                return prior, True
            appended = self._append(org_id, EntryKind.CREDIT, grant.body())
            self._evaluate_deactivation(self.books(org_id), None, self.now())  # R19: credits may cover usage again
        return replace(grant, sequence=appended.sequence), False

    # -- payments (R18, R19) ------------------------------------------------------------------------------------

    def record_payment(self, org_id: str, invoice_number: int, outcome: str, reference: str) -> tuple[Payment, bool]:
        """Append a PAYMENT entry with the processor's outcome (R18) and opaque reference (R19); the same reference
        recorded again answers with the original (`True`)."""
        violations: list[FieldViolation] = []
        _check_org(org_id)
        try:
            parsed = PaymentOutcome(str(outcome).upper())
        except ValueError:
            violations.append(FieldViolation("outcome", "R18: SUCCEEDED or FAILED"))
            parsed = PaymentOutcome.FAILED
        if invoice_number < 1:
            violations.append(FieldViolation("invoice_number", "invoice numbers start at 1"))
        check_opaque_reference(reference, "reference", violations)
        if violations:
            raise InvalidInput(violations)
        with self._lock(org_id):
            books = self.books(org_id)
            invoice = books.invoice(invoice_number)
            prior = next((p for p in books.payments if p.reference == reference), None)
            if prior is not None:
                if (prior.invoice_number, prior.outcome) != (invoice.number, parsed):
                    raise BillingRefused(
                        f"R18: processor reference {reference!r} is already recorded as {prior.outcome.value} for "
                        f"invoice #{prior.invoice_number}; nothing was appended"
                    )
                return prior, True
            if is_paid(invoice, books.payments):
                if invoice.amount_due <= 0:
                    raise BillingRefused(
                        f"R16: invoice #{invoice_number} needs no payment: credits covered it (amount due $0.00)"
                    )
                raise BillingRefused(f"R18: invoice #{invoice_number} is already paid; nothing was recorded")
            payment = Payment(
                org_id, invoice.number, invoice.sequence, parsed, reference, invoice.amount_due, self.now()
            )
            appended = self._append(org_id, EntryKind.PAYMENT, payment.body())
            self._evaluate_deactivation(self.books(org_id), None, self.now())  # R19: an unpaid invoice may be settled
        return replace(payment, sequence=appended.sequence), False

    def set_payment_method(self, org_id: str, reference: str) -> StateChange | None:
        """R19: keep only the processor's opaque reference; adding a method reactivates the org."""
        _check_org(org_id)
        violations: list[FieldViolation] = []
        check_opaque_reference(reference, "reference", violations)
        if violations:
            raise InvalidInput(violations)
        with self._lock(org_id):
            books = self.books(org_id)
            status = books.status
            if status.payment_method == reference:
                return None
            change = self._append_change(
                books,
                status,
                StateChangeType.PAYMENT_METHOD_SET,
                self.now(),
                "R19: payment method on file (the processor's opaque reference; no card or bank data is stored)",
                {},
                reference=reference,
            )
            self._evaluate_deactivation(self.books(org_id), None, self.now())
            return change

    def clear_payment_method(self, org_id: str) -> StateChange | None:
        _check_org(org_id)
        with self._lock(org_id):
            books = self.books(org_id)
            status = books.status
            if status.payment_method is None:
                return None
            change = self._append_change(
                books,
                status,
                StateChangeType.PAYMENT_METHOD_CLEARED,
                self.now(),
                "R19: payment method removed; without one, usage must be covered by credits",
                {},
            )
            self._evaluate_deactivation(self.books(org_id), None, self.now())
            return change

    # -- invoices (R16-R18, R20-R23) -------------------------------------------------------------------------

    def close(self, org_id: str, at: int | None = None) -> CloseResult:
        """Run R17/R18 at `at` (default now): issue the month-end invoice of every UTC month that ended since the
        last invoice, then, unless the org is monthly (R18), a threshold invoice if uninvoiced usage after
        discounts exceeds $50.00 (R17). Idempotent: closing again at the same instant issues nothing."""
        now = self.now()
        instant = now if at is None else at
        if instant > now:
            raise InvalidInput(
                [
                    FieldViolation(
                        "close_time",
                        f"R17: {format_micros(instant)} has not happened yet (the ledger's clock says "
                        f"{format_micros(now)}); a period closes once its end has passed",
                    )
                ]
            )
        with self._lock(org_id):
            books = self.books(org_id)
            return self._close(books, self._rating(books, now), instant)

    def _draft(
        self, books: OrgBooks, invoices: Sequence[Invoice], rating: OrgRating, at: int, trigger: Trigger
    ) -> Invoice:
        settings = books.account.at(at)
        cadence = cadence_at(invoices, books.payments, settings.monthly_after_paid_invoices, at)
        return draft_invoice(
            books.org_id,
            rating,
            invoices,
            books.adjustments,
            books.balances(at, invoices),
            discount_percent=settings.discount_percent,
            period_end=at,
            trigger=trigger,
            cadence=cadence,
        )

    def _close(self, books: OrgBooks, rating: OrgRating, at: int) -> CloseResult:
        invoices = list(books.invoices)
        last_end = invoices[-1].period_end if invoices else None
        if last_end is not None and at <= last_end:
            return CloseResult(
                books.org_id,
                at,
                (),
                invoices[-1].cadence,
                f"R17: invoice #{invoices[-1].number} already covers usage up to {format_micros(last_end)}; "
                f"nothing to close at {format_micros(at)}",
            )
        issued: list[Invoice] = []
        start = last_end
        if start is None:
            first = self._draft(books, invoices, rating, at, Trigger.DRAFT)
            recorded = [a.recorded_at for a in books.adjustments if a.recorded_at <= at]
            start = min([first.period_start, *recorded]) if (first.lines or recorded) else at
        for boundary in month_starts(start, at):
            draft = self._draft(books, invoices, rating, boundary, Trigger.MONTH_END)
            if draft.has_charges:
                invoices.append(self._issue(draft))
                issued.append(invoices[-1])
        settings = books.account.at(at)
        cadence = cadence_at(invoices, books.payments, settings.monthly_after_paid_invoices, at)
        notes = [
            f"R17: month-end invoice #{inv.number} for {format_micros(inv.period_start)} to "
            f"{format_micros(inv.period_end)}, amount due {usd(inv.amount_due)}"
            for inv in issued
        ]
        next_month = month_starts(at, at + 32 * 24 * HOUR)[0]
        month_ended_at_close = bool(issued) and issued[-1].period_end == at  # nothing is left before `at`
        if month_ended_at_close:
            pass
        elif cadence is Cadence.MONTHLY:
            streak = paid_streak(invoices, books.payments, at)
            notes.append(
                f"R18: monthly cadence after {streak} consecutive paid invoices (setting: "
                f"{settings.monthly_after_paid_invoices}); the next invoice closes at month end "
                f"{format_micros(next_month)}"
            )
        else:
            draft = self._draft(books, invoices, rating, at, Trigger.THRESHOLD)
            after_discount = draft.usage_after_discount
            if after_discount > INVOICE_THRESHOLD:
                invoices.append(self._issue(draft))
                issued.append(invoices[-1])
                notes.append(
                    f"R17: uninvoiced usage after discounts {usd(after_discount)} exceeds "
                    f"{usd(INVOICE_THRESHOLD)}: invoice #{draft.number} issued, amount due {usd(draft.amount_due)}"
                )
            else:
                notes.append(
                    f"R17: uninvoiced usage after discounts {usd(after_discount)} does not exceed "
                    f"{usd(INVOICE_THRESHOLD)}; the month closes {format_micros(next_month)}"
                )
        if not notes:
            notes.append("R17: nothing to invoice")
        return CloseResult(books.org_id, at, tuple(issued), cadence, "; ".join(notes))

    def _issue(self, draft: Invoice) -> Invoice:
        appended = self._append(draft.org_id, EntryKind.INVOICE, draft.body())
        entry = self.ledger.entry(appended.log_id, appended.sequence)
        issued = Invoice.from_body(entry.body_json(), entry.sequence, entry.entry_hash)
        if not appended.duplicate:
            record_invoice_issued(issued.trigger.value, len(issued.late_lines))
        return issued

    # -- account state (R15, R19) --------------------------------------------------------------------------

    def evaluate_account(self, org_id: str, now: int | None = None) -> list[StateChange]:
        """Append a STATE entry for each R15 flip since the last look and for an R19 change; return them."""
        instant = self.now() if now is None else now
        with self._lock(org_id):
            books = self.books(org_id)
            rating = self._rating(books, instant, self._spend_since(books, instant))
            changes = self._evaluate_spend(books, rating, instant)
            change = self._evaluate_deactivation(books, rating, instant)  # its family is unaffected by R15's
            return [*changes, *([change] if change is not None else [])]

    def tick(self, org_id: str) -> tuple[CloseResult, list[StateChange]]:
        """One closer evaluation of an org: close the period at now (R17, R18), then R15 and R19."""
        now = self.now()
        with self._lock(org_id):
            books = self.books(org_id)
            rating = self._rating(books, now, self._spend_since(books, now))
            result = self._close(books, rating, now)
            if result.issued:
                books = self.books(org_id)
            changes = self._evaluate_spend(books, rating, now)
            change = self._evaluate_deactivation(books, rating, now)
        return result, [*changes, *([change] if change is not None else [])]

    def _spend_since(self, books: OrgBooks, now: int) -> int:
        """R15 looks for flips at instants after this one: the last look, the last flip, or the lookback."""
        last = books.status.last(StateFamily.SPEND_LIMIT)
        return max(
            now - self.spend_lookback,
            last.at if last is not None else now - self.spend_lookback,
            self._spend_checked.get(books.org_id, now - self.spend_lookback),
        )

    def _evaluate_spend(self, books: OrgBooks, rating: OrgRating, now: int) -> list[StateChange]:
        status = books.status
        since = self._spend_since(books, now)
        limit_changes = [c.effective_from for c in books.account.changes if c.spend_limit_per_hour is not None]
        flips = spend_flips(
            rating,
            lambda t: books.account.at(t).spend_limit_per_hour,
            limit_changes,
            exceeded=status.spend_limit_exceeded,
            since=since,
            until=now,
        )
        changes = []
        for flip in flips:
            window = (
                f"units and storage intervals starting in ({format_micros(flip.at - HOUR)}, {format_micros(flip.at)}]"
            )
            if flip.exceeded:
                kind = StateChangeType.SPEND_LIMIT_EXCEEDED
                why = (
                    f"R15: hourly spend {exact_usd(flip.spend)} ({window}) exceeds the limit {usd(flip.limit)} per hour"
                )
            else:
                kind = StateChangeType.SPEND_LIMIT_CLEARED
                why = (
                    f"R15: hourly spend {exact_usd(flip.spend)} ({window}) is back within the limit "
                    f"{usd(flip.limit)} per hour"
                )
            figures = {
                "hourly_spend": format_decimal(flip.spend),
                "spend_limit_per_hour": format_decimal(flip.limit),
                "window_start_exclusive": format_micros(flip.at - HOUR),
                "window_end_inclusive": format_micros(flip.at),
            }
            change = self._append_change(books, status, kind, flip.at, why, figures)
            status = status.with_change(change)
            changes.append(change)
        self._spend_checked[books.org_id] = max(now, self._spend_checked.get(books.org_id, now))
        return changes

    def _evaluate_deactivation(self, books: OrgBooks, rating: OrgRating | None, now: int) -> StateChange | None:
        """R19: no payment method on file and credits no longer cover usage -> DEACTIVATED; else REACTIVATED."""
        status = books.status
        if rating is None:
            rating = self._rating(books, now)
        draft = self.open_period(books, rating, now)
        unpaid = books.unpaid_amount_due(now)
        left = credit_left(books.balances(now), now)
        has_method = status.payment_method is not None
        uncovered = draft.amount_due > 0 or unpaid > 0
        should = not has_method and uncovered
        if should == status.deactivated:
            return None
        figures = {
            "payment_method_on_file": "yes" if has_method else "no",
            "credit_left": cents_text(left),
            "open_period_total": cents_text(draft.total),
            "open_period_amount_due_after_credits": cents_text(draft.amount_due),
            "unpaid_invoices_amount_due": cents_text(unpaid),
        }
        if should:
            why = (
                f"R19: no payment method on file and credits no longer cover usage: credit left {usd(left)}, "
                f"open period {usd(draft.total)} leaves {usd(draft.amount_due)} uncovered, unpaid invoices "
                f"{usd(unpaid)}"
            )
            kind = StateChangeType.DEACTIVATED
        elif has_method:
            why = "R19: a payment method is on file again: reactivated"
            kind = StateChangeType.REACTIVATED
        else:
            why = (
                f"R19: credits cover usage again (credit left {usd(left)}, open period {usd(draft.total)}): reactivated"
            )
            kind = StateChangeType.REACTIVATED
        return self._append_change(books, status, kind, now, why, figures)

    def _append_change(
        self,
        books: OrgBooks,
        status: AccountStatus,
        kind: StateChangeType,
        at: int,
        explanation: str,
        figures: Mapping[str, str],
        *,
        reference: str | None = None,
    ) -> StateChange:
        change = StateChange(
            books.org_id,
            kind,
            at,
            status.next_ordinal(FAMILY_OF[kind]),
            explanation,
            dict(figures),
            reference,
        )
        appended = self._append(books.org_id, EntryKind.STATE, change.body())
        stored = StateChange.from_body(
            self.ledger.entry(appended.log_id, appended.sequence).body_json(), appended.sequence
        )
        if not appended.duplicate:
            self.hub.publish(stored)
            record_account_state_change(stored.change.value)
        return stored

    def _append(self, org_id: str, kind: EntryKind, body: dict[str, Any]) -> Appended:
        entry = NewEntry(org_log_id(org_id), kind, canonical_body(body), derive_index(kind, body))
        try:
            [appended] = self.ledger.store.append([entry])
        except EventConflict as err:
            # Another server appended the same invoice number or state ordinal first, with other figures: the
            # idempotency key kept the log linear. Evaluating again reads what it appended.
            raise BillingRefused(
                f"{kind.value} {body.get('idempotency_key')} was appended concurrently by another writer with "
                "different content; nothing was appended here, try again"
            ) from err
        return appended


def _check_org(org_id: str) -> None:
    if not isinstance(org_id, str) or not IDENTIFIER_RE.match(org_id):
        raise InvalidInput([FieldViolation("org_id", f"must be {IDENTIFIER_RULE}")])
