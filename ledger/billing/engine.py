"""The billing engine: grants credits, closes periods into invoices, records payments and flips account state.

Every change is an entry in the org's log (CREDIT, INVOICE, PAYMENT, STATE), so an auditor replays the account from
the log alone. This module runs evaluations and appends; what they decide is pure functions of the books and a
rating: which invoices are due (due_invoices.py) and which STATE entries R15 and R19 call for (state_changes.py).
Rated usage is read through UsageView.billing_rating: from the usage rollups the engine is given, only the
workloads an evaluation can charge differently (ledger/billing/scope.py), so an evaluation's cost and memory follow
the usage since the last invoice, not the length of the log. Open sessions are rated to their evidence (R28), never
the wall clock, and invoices are cut in event time (R17): a threshold invoice where the uninvoiced usage first
exceeds $50.00 before the settled-through time, a month-end invoice at the month's end once the settled-through
time reaches it (or its grace period passes on the wall clock). The invoices of one evaluation are appended in one
conditional append, only while the org's log holds exactly the entries they were rated from; otherwise the
evaluation reads and rates again. Writes for one org are serialized in this process; across processes, the
conditional append and each entry's idempotency key (invoice number, state ordinal) keep the log linear.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from ledger.account import AccountSettings
from ledger.billing.account_state import (
    FAMILY_OF,
    HOUR,
    AccountStatus,
    StateChange,
    StateChangeType,
    StateFamily,
    hourly_spend,
    spend_flips,
)
from ledger.billing.backfills import MAX_BACKFILL_OPEN, Backfill, BackfillAction, BackfillMark, check_backfill
from ledger.billing.books import OrgBooks, load_books
from ledger.billing.cents import usd
from ledger.billing.credits import CreditBalance, CreditGrant, credit_left, parse_credit_grant
from ledger.billing.due_invoices import CloseResult, due_invoices, open_period
from ledger.billing.invoice_entry import Cadence, Invoice
from ledger.billing.payments import Payment, PaymentOutcome, cadence_at, check_opaque_reference, is_paid
from ledger.billing.scope import billing_scope
from ledger.billing.state_changes import deactivation_due, spend_change
from ledger.billing.watch import AccountStateHub
from ledger.errors import EventConflict, FieldViolation, InvalidInput, LedgerError, LogMoved, NotFound
from ledger.events import IDENTIFIER_RE, IDENTIFIER_RULE
from ledger.intake import Ledger, derive_index
from ledger.log.entry import SYSTEM_LOG, EntryKind, canonical_body, org_log_id
from ledger.metrics import record_account_state_change, record_invoice_issued
from ledger.ports import Appended, NewEntry, RollupStore
from ledger.rating import OrgRating
from ledger.rating.evidence import settled_through
from ledger.timeutil import format_micros
from ledger.usage import UsageView

# R15: after a long pause (a server down for days), flips older than this before "now" are not reconstructed.
DEFAULT_SPEND_LOOKBACK = 24 * HOUR
# R17: a month-end invoice is issued on the wall clock this long after its month ended, if the settled-through time
# (R28) has not reached the end by then (and no backfill overlapping the month is open, R29).
DEFAULT_INVOICE_GRACE_SECONDS = 3600
STARTER_CREDIT_REQUEST = "starter-credit"  # R19: the starter credit's idempotency key: one per org
# R17: an evaluation whose invoices find the log grown since it was rated reads and rates again, this many times at
# most; then it gives up until the next one (the log is still being written: nothing is lost by waiting).
MAX_RATING_ATTEMPTS = 4


class BillingRefused(LedgerError):
    """The request is well formed but the account's state does not allow it (already paid, nothing due...)."""

    reason = "BILLING_PRECONDITION_FAILED"


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
    settled_through: int | None
    hourly_spend: Decimal
    unpaid_amount_due: Decimal
    cadence: Cadence
    invoices: int


class BillingEngine:
    """R15-R20, R22, R23 on top of rating. Thread-safe; one per Ledger."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        rollups: RollupStore | None = None,
        usage: UsageView | None = None,
        hub: AccountStateHub | None = None,
        spend_lookback: int = DEFAULT_SPEND_LOOKBACK,
        scoped: bool = True,
        invoice_grace_seconds: int = DEFAULT_INVOICE_GRACE_SECONDS,
    ) -> None:
        """`rollups`: the usage rollups evaluations rate from, given by whoever builds the engine (the server, over
        its SQL store); None rates from the log's entries. `usage`: a view over those rollups to share (the server's
        composition root shares one follower, docs/adr/0003), instead of one of the engine's own. `scoped=False`
        re-rates the whole log at every evaluation: the reference the scoped path is tested against
        (tests/test_billing_scope.py).
        `invoice_grace_seconds`: R17's month-end grace period."""
        self.invoice_grace_seconds = invoice_grace_seconds
        self.starter_credit = Decimal(0)  # R19: the operator's starter credit for new orgs (server --starter-credit)
        self.ledger = ledger
        self.usage = usage if usage is not None else UsageView(ledger, rollups)
        self.scoped = scoped
        self.hub = hub or AccountStateHub()
        self.spend_lookback = spend_lookback
        self._guard = threading.Lock()
        self._org_locks: dict[str, threading.RLock] = {}
        # Per org: the instant up to which R15 flips were looked for (in this process).
        self._spend_checked: dict[str, int] = {}
        # Orgs whose logs this process has seen exist: a log is never deleted, so an org found once never needs its
        # starter credit again, and single-event appends skip reading its head (issue #26).
        self._existing_orgs: set[str] = set()

    def _lock(self, org_id: str) -> threading.RLock:
        with self._guard:
            return self._org_locks.setdefault(org_id, threading.RLock())

    def now(self) -> int:
        return self.ledger.clock()

    # -- reads --------------------------------------------------------------------------------------------------

    def books(self, org_id: str) -> OrgBooks:
        _check_org(org_id)
        return load_books(self.ledger.store, org_id)

    def rating(self, org_id: str, at: int) -> OrgRating:
        """Every workload's rated usage from the log, open sessions to their evidence (R28) cut at `at`."""
        return self.usage.org_rating(org_id, as_of=at)

    def _rating(self, books: OrgBooks, at: int, spend_checked_from: int | None = None) -> OrgRating:
        """Rated usage with every unit that started at or before `at` (R10): of the workloads an evaluation at
        `at` can charge differently (scope.py), R15's window from `spend_checked_from` included."""
        if not self.scoped:
            return self.usage.org_rating(books.org_id)
        scope = billing_scope(books.invoices, books.account, at, spend_checked_from)
        return self.usage.billing_rating(books.org_id, scope)

    def invoice(self, org_id: str, number: int) -> tuple[Invoice, OrgBooks]:
        books = self.books(org_id)
        return books.invoice(number), books

    def open_period(self, books: OrgBooks, rating: OrgRating, at: int) -> Invoice:
        """The running total (R17) at `at`: due_invoices.open_period."""
        return open_period(books, rating, at)

    def summary(self, org_id: str, at: int | None = None) -> AccountSummary:
        instant = self.now() if at is None else at
        books = self.books(org_id)
        rating = self._rating(books, instant, instant)  # hourly_spend looks at the hour before `instant`
        balances = books.balances(instant)
        settings = books.account.at(instant)
        status = books.status
        draft = open_period(books, rating, instant)
        due = deactivation_due(books, draft, instant)
        if due is not None:  # R19 holds now, whether or not the closer has recorded it yet
            kind, why, figures = due
            ordinal = status.next_ordinal(FAMILY_OF[kind])
            status = status.with_change(StateChange(org_id, kind, instant, ordinal, why, figures))
        return AccountSummary(
            org_id=org_id,
            as_of=instant,
            status=status,
            settings=settings,
            balances=tuple(balances),
            credit_left=credit_left(balances, instant),
            open_period=draft,
            settled_through=settled_through(rating),
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
        """Run R17/R18 with the wall clock at `at` (default now): cut every invoice the log now proves due, in
        event time (ledger/billing/cuts.py, R28), and the month-end invoices whose grace period has passed. The
        wall clock enters only through the grace. Idempotent: evaluating again issues nothing new."""
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
            result, _, _ = self._close(org_id, instant, None)
            return result

    def _close(self, org_id: str, wall: int, spend_checked_from: int | None) -> tuple[CloseResult, OrgBooks, OrgRating]:
        """Rate, cut and append the invoices in one conditional append (R17); rate again if the log grew."""
        result: CloseResult | None = None
        for _ in range(MAX_RATING_ATTEMPTS):
            # The price books are read with the rating, after this: a version appended since makes the conditional
            # append fail and the invoices are rated again with it (R12, R17; the auditor prices an invoice with the
            # versions recorded before it).
            system_size = self._system_size()
            first = self.books(org_id)
            rating = self._rating(first, wall, spend_checked_from)
            # The books of exactly the entries the rating reflects: the invoices are appended only while the log
            # holds exactly those (a book entry appended since is in neither, and fails the append).
            books = load_books(self.ledger.store, org_id, rating.log_size)
            drafts, result = due_invoices(books, rating, wall, self.invoice_grace_seconds)
            if not drafts:
                return result, books, rating
            try:
                issued = self._issue(org_id, drafts, rating.log_size, system_size)
            except LogMoved:
                continue
            return replace(result, issued=tuple(issued)), load_books(self.ledger.store, org_id), rating
        assert result is not None
        note = (
            f"R17: the org's log grew during each of {MAX_RATING_ATTEMPTS} evaluations, so no invoice was appended "
            "from a rating it no longer matched; the next evaluation tries again"
        )
        books = self.books(org_id)
        return replace(result, issued=(), explanation=note), books, self._rating(books, wall, spend_checked_from)

    def _system_size(self) -> int:
        try:
            return self.ledger.store.head(SYSTEM_LOG).size
        except NotFound:
            return 0

    def _issue(
        self, org_id: str, drafts: Sequence[Invoice], log_size: int | None, system_size: int | None = None
    ) -> list[Invoice]:
        """R17: append the invoices of one evaluation atomically, only while the org's log holds exactly the
        `log_size` entries they were rated from and the system log the `system_size` entries whose price books rated
        them (LogMoved otherwise: nothing is appended)."""
        log_id = org_log_id(org_id)
        entries = [
            NewEntry(log_id, EntryKind.INVOICE, canonical_body(d.body()), derive_index(EntryKind.INVOICE, d.body()))
            for d in drafts
        ]
        expected = {log_id: log_size} if log_size is not None else None
        if expected is not None and system_size is not None:
            expected[SYSTEM_LOG] = system_size
        try:
            appended = self.ledger.store.append(entries, expected_sizes=expected)
        except EventConflict as err:
            raise BillingRefused(
                "an invoice was appended concurrently by another writer with different content; nothing was "
                "appended here, try again"
            ) from err
        issued = []
        for item in appended:
            entry = self.ledger.entry(item.log_id, item.sequence)
            issued.append(Invoice.from_body(entry.body_json(), entry.sequence, entry.entry_hash))
            if not item.duplicate:
                record_invoice_issued(issued[-1].trigger.value, len(issued[-1].late_lines))
        return issued

    # -- starter credit (R19) ------------------------------------------------------------------------------------

    def starter_credits(self, entries: Sequence[NewEntry]) -> list[NewEntry]:
        """R19: a CREDIT entry of the operator's starter credit for each org these event entries would create, to be
        appended with them in one atomic append (none when `starter_credit` is zero)."""
        if self.starter_credit <= 0:
            return []
        found: list[NewEntry] = []
        for org_id in sorted({e.index.org_id for e in entries if e.kind is EntryKind.EVENT and e.index.org_id}):
            if org_id in self._existing_orgs:
                continue
            try:
                self.ledger.store.head(org_log_id(org_id))
                self._existing_orgs.add(org_id)
                continue  # not new: it got its starter credit with its first events
            except NotFound:
                pass
            grant = CreditGrant(
                org_id,
                self.starter_credit,
                "R19: starter credit for a new org (the operator's setting; new workspaces receive free credits)",
                self.now(),
                None,
                STARTER_CREDIT_REQUEST,
            )
            body = grant.body()
            found.append(
                NewEntry(
                    org_log_id(org_id), EntryKind.CREDIT, canonical_body(body), derive_index(EntryKind.CREDIT, body)
                )
            )
        return found

    # -- backfills (R29) ---------------------------------------------------------------------------------------------

    def open_backfill(
        self, org_id: str, backfill_id: str, start: int | None, end: int | None, reason: str
    ) -> tuple[Backfill, bool]:
        """Append a BACKFILL OPENED entry (R29); the same backfill opened again answers with it (`True`), with other
        terms it is refused."""
        _check_org(org_id)
        check_backfill(backfill_id, start, end, reason, opening=True)
        assert start is not None and end is not None
        with self._lock(org_id):
            known = next((b for b in self.books(org_id).backfills if b.backfill_id == backfill_id), None)
            if known is not None:
                if (known.start, known.end, known.reason) != (start, end, reason):
                    raise BillingRefused(
                        f"R29: backfill {backfill_id!r} was opened (entry #{known.opened.sequence}) with other terms"
                    )
                return known, True
            mark = BackfillMark(org_id, backfill_id, BackfillAction.OPENED, start, end, reason, self.now())
            self._append(org_id, EntryKind.BACKFILL, mark.body())
            return self._backfill(org_id, backfill_id), False

    def close_backfill(self, org_id: str, backfill_id: str, reason: str) -> Backfill:
        """Append a BACKFILL CLOSED entry (R29): the grace may issue month-end invoices of its months again."""
        _check_org(org_id)
        check_backfill(backfill_id, None, None, reason, opening=False)
        with self._lock(org_id):
            backfill = self._backfill(org_id, backfill_id)
            if backfill.closed is None:
                mark = BackfillMark(
                    org_id, backfill_id, BackfillAction.CLOSED, backfill.start, backfill.end, reason, self.now()
                )
                self._append(org_id, EntryKind.BACKFILL, mark.body())
                backfill = self._backfill(org_id, backfill_id)
            return backfill

    def _backfill(self, org_id: str, backfill_id: str) -> Backfill:
        found = next((b for b in self.books(org_id).backfills if b.backfill_id == backfill_id), None)
        if found is None:
            raise NotFound(f"R29: org {org_id!r} has no backfill {backfill_id!r}")
        return found

    # -- account state (R15, R19) --------------------------------------------------------------------------

    def evaluate_account(self, org_id: str, now: int | None = None) -> list[StateChange]:
        """Append a STATE entry for each R15 flip since the last look and for an R19 change; return them."""
        instant = self.now() if now is None else now
        with self._lock(org_id):
            books = self.books(org_id)
            rated_from = self._spend_scope_from(books, instant)
            rating = self._rating(books, instant, rated_from)
            changes = self._evaluate_spend(books, rating, instant, rated_from)
            change = self._evaluate_deactivation(books, rating, instant)  # its family is unaffected by R15's
            return [*changes, *([change] if change is not None else [])]

    def tick(self, org_id: str) -> tuple[CloseResult, list[StateChange]]:
        """One closer evaluation of an org: backfills left open 24 h closed (R29), the invoices due (R17, R18), then
        R15 and R19."""
        now = self.now()
        with self._lock(org_id):
            for backfill in self.books(org_id).backfills:
                if backfill.is_open and backfill.opened.at + MAX_BACKFILL_OPEN <= now:
                    self.close_backfill(
                        org_id, backfill.backfill_id, "R29: closed by the ledger: left open for 24 hours"
                    )
            rated_from = self._spend_scope_from(self.books(org_id), now)
            result, books, rating = self._close(org_id, now, rated_from)
            changes = self._evaluate_spend(books, rating, now, rated_from)
            change = self._evaluate_deactivation(books, rating, now)
        result = replace(result, open_backfills=sum(1 for backfill in books.backfills if backfill.is_open))
        return result, [*changes, *([change] if change is not None else [])]

    def _spend_since(self, books: OrgBooks, now: int) -> int:
        """R15 looks for flips at instants after this one: the last flip, or the lookback. Not after the last look:
        late events (R28: usage proven only now) can reveal a crossing at an instant already looked at."""
        last = books.status.last(StateFamily.SPEND_LIMIT)
        return max(now - self.spend_lookback, last.at if last is not None else now - self.spend_lookback)

    def _spend_scope_from(self, books: OrgBooks, now: int) -> int:
        """Where the R15 window of an evaluation's scoped rating starts: no later than _evaluate_spend's walk will.

        R15 is evaluated up to the org's latest event time (R28), and its lookback counts from there when that lags
        the wall clock; but the latest event time comes with the rating. It only grows, so the latest one this
        process has seen is a lower bound (the wall clock until it has seen one: _evaluate_spend rates again
        if its walk starts earlier than that)."""
        seen = self._spend_checked.get(books.org_id)
        return self._spend_since(books, now if seen is None else min(now, seen))

    def _evaluate_spend(
        self, books: OrgBooks, rating: OrgRating, now: int, rated_from: int | None = None
    ) -> list[StateChange]:
        """R15 for every instant up to the org's latest event time, on proven usage (open sessions to their
        evidence, R28): a flip at an instant the last look had passed is recorded late, with its own instant.
        `rated_from`: the R15 window start the (scoped) rating was drawn with (_spend_scope_from)."""
        status = books.status
        reach = rating.latest_event_at
        if reach is None:
            return []
        since = self._spend_since(books, min(now, reach))
        if self.scoped and rated_from is not None and since < rated_from:
            # R15/R28: the walk starts a lookback before the latest event time, which lags the wall clock the
            # rating's scope was drawn from: that rating may lack usage the walk reads (an invoiced, unchanged
            # workload's units in the hour before `since`), so rate again with the walk's own window. The latest
            # event time only grows, so the new rating's walk starts no earlier than `since`.
            rating = self._rating(books, now, since)
            reach = rating.latest_event_at
            if reach is None:
                return []
            since = self._spend_since(books, min(now, reach))
        checked = self._spend_checked.get(books.org_id)
        limit_changes = [c.effective_from for c in books.account.changes if c.spend_limit_per_hour is not None]
        flips = spend_flips(
            rating,
            lambda t: books.account.at(t).spend_limit_per_hour,
            limit_changes,
            exceeded=status.spend_limit_exceeded,
            since=since,
            until=reach,
        )
        changes = []
        for flip in flips:
            kind, why, figures = spend_change(flip, checked)
            change = self._append_change(books, status, kind, flip.at, why, figures)
            status = status.with_change(change)
            changes.append(change)
        self._spend_checked[books.org_id] = max(reach, self._spend_checked.get(books.org_id, reach))
        return changes

    def _evaluate_deactivation(self, books: OrgBooks, rating: OrgRating | None, now: int) -> StateChange | None:
        """R19: no payment method on file and credits no longer cover usage -> DEACTIVATED; else REACTIVATED."""
        if rating is None:
            rating = self._rating(books, now)
        due = deactivation_due(books, open_period(books, rating, now), now)
        if due is None:
            return None
        kind, why, figures = due
        return self._append_change(books, books.status, kind, now, why, figures)

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
