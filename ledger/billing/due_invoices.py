"""Which invoices are due (R17, R18, R29): threshold invoices cut in event time where the uninvoiced usage after
discounts first exceeds $50.00 before the settled-through time (R28), month-end invoices once the settled-through
time reaches the month's end or its grace period passes on the wall clock (not while a backfill overlapping the
month is open), none on the threshold after R18's streak of paid invoices. A pure decision on the books and a
rating: the engine appends what it returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ledger.billing.account_state import HOUR
from ledger.billing.backfills import grace_held
from ledger.billing.books import OrgBooks
from ledger.billing.cents import usd
from ledger.billing.cuts import INVOICE_THRESHOLD, ThresholdWalk
from ledger.billing.invoice_draft import draft_invoice
from ledger.billing.invoice_entry import Cadence, GraceFired, Invoice, Trigger
from ledger.billing.payments import cadence_at, paid_streak
from ledger.rating import OrgRating
from ledger.rating.evidence import settled_through
from ledger.timeutil import format_micros, from_datetime, to_datetime


@dataclass(frozen=True)
class CloseResult:
    """What an evaluation of an org's invoices on the wall clock `at` issued (possibly nothing), and why (R17, R18);
    `settled_through` is the org's settled-through time it cut on (R28); `open_backfills` how many backfills were
    open (R29), as a closer tick saw them."""

    org_id: str
    at: int
    issued: tuple[Invoice, ...]
    cadence: Cadence
    explanation: str
    settled_through: int | None = None
    open_backfills: int = 0


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


def first_usage(books: OrgBooks, rating: OrgRating) -> int | None:
    """Where the first invoice's walk starts: the earliest billed unit, storage interval or adjustment."""
    starts = [session.up for session in rating.sessions if session.billed_units > 0]
    starts += [charge.start for charge in rating.storage]
    starts += [recorded.recorded_at for recorded in books.adjustments]
    return min(starts, default=None)


def draft_for(
    books: OrgBooks,
    invoices: Sequence[Invoice],
    rating: OrgRating,
    at: int,
    trigger: Trigger,
    *,
    issued_at: int,
    settled: int | None = None,
    grace: GraceFired | None = None,
) -> Invoice:
    """The invoice (or DRAFT) cut at `at` on top of `invoices`, with the books' settings at `at` (R10, R20), the
    cadence and the credits available at `issued_at` (R16, R18)."""
    settings = books.account.at(at)
    cadence = cadence_at(invoices, books.payments, settings.monthly_after_paid_invoices, issued_at)
    return draft_invoice(
        books.org_id,
        rating,
        invoices,
        books.adjustments,
        books.balances(issued_at, invoices),  # R16: the credits available when it is issued
        discount_percent=settings.discount_percent,
        period_end=at,
        trigger=trigger,
        cadence=cadence,
        issued_at=issued_at,
        settled_through=settled,
        grace=grace,
    )


def open_period(books: OrgBooks, rating: OrgRating, at: int) -> Invoice:
    """The running total (R17): what an invoice issued at `at` and cut at the settled-through time (R28) would
    hold (never before the last cut: what is invoiced stays invoiced)."""
    settled = settled_through(rating)
    cut = at if settled is None else settled
    if books.invoices:
        cut = max(cut, books.invoices[-1].period_end)
    return draft_for(books, list(books.invoices), rating, cut, Trigger.DRAFT, issued_at=at, settled=settled)


def due_invoices(
    books: OrgBooks, rating: OrgRating, wall: int, grace_seconds: int
) -> tuple[list[Invoice], CloseResult]:
    """R17/R18 in event time: each invoice the rating proves due with the wall clock at `wall`, in cut order (not
    yet appended), and why; `grace_seconds` is R17's month-end grace period."""
    settled = settled_through(rating)
    invoices = list(books.invoices)
    drafts: list[Invoice] = []
    notes: list[str] = []
    origin = invoices[-1].period_end if invoices else first_usage(books, rating)
    settings = books.account.at(wall)
    grace_micros = grace_seconds * 1_000_000
    while settled is not None and origin is not None:
        month_end = month_starts(origin, origin + 32 * 24 * HOUR)[0]
        cadence = cadence_at(invoices, books.payments, settings.monthly_after_paid_invoices, wall)
        if cadence is not Cadence.MONTHLY:
            discount = books.account.at(origin).discount_percent
            walk = ThresholdWalk(rating, invoices, origin, discount)
            cut = walk.first_crossing(INVOICE_THRESHOLD, min(settled, month_end))
            draft = None
            if cut is not None:
                draft = draft_for(books, invoices, rating, cut, Trigger.THRESHOLD, issued_at=wall, settled=settled)
                if draft.usage_after_discount <= INVOICE_THRESHOLD:
                    # The walk used the discount in force at its origin, the draft the one at the cut (R20): a
                    # discount changed in between. No threshold invoice is cut across the change.
                    notes.append(
                        f"R17/R20: the discount changed between {format_micros(origin)} and "
                        f"{format_micros(cut)}; no threshold invoice is cut across the change"
                    )
                    draft = None
            if cut is not None and draft is not None:
                notes.append(
                    f"R17: threshold invoice #{draft.number} cut at {format_micros(cut)}, where the uninvoiced "
                    f"usage after discounts first exceeds {usd(INVOICE_THRESHOLD)} "
                    f"({usd(draft.usage_after_discount)})"
                )
                invoices.append(draft)
                drafts.append(draft)
                origin = cut
                continue
            notes.append(
                f"R17: uninvoiced usage after discounts {usd(walk.usage_after_discount(min(settled, month_end)))} "
                f"(to the settled-through time {format_micros(settled)}, R28) does not exceed "
                f"{usd(INVOICE_THRESHOLD)}"
            )
        grace = None
        if settled < month_end:
            held = grace_held(books.backfills, month_starts(month_end - 32 * 24 * HOUR, month_end)[-2], month_end)
            if held is not None:
                notes.append(
                    f"R29: backfill {held.backfill_id} ({format_micros(held.start)} to {format_micros(held.end)}) "
                    f"is open: the month ending {format_micros(month_end)} waits for the settled-through time "
                    f"(now {format_micros(settled)}, R28), not the grace"
                )
                break
            if wall < month_end + grace_micros:
                notes.append(
                    f"R17: the month closes at {format_micros(month_end)}, once the settled-through time "
                    f"(now {format_micros(settled)}, R28) reaches it or the wall clock passes it by the "
                    f"{grace_seconds} s grace period"
                )
                break
            grace = GraceFired(wall, grace_seconds)
        draft = draft_for(
            books, invoices, rating, month_end, Trigger.MONTH_END, issued_at=wall, settled=settled, grace=grace
        )
        if draft.has_charges:
            why = (
                f"the grace period of {grace_seconds} s passed on the wall clock "
                f"({format_micros(wall)}) before the settled-through time reached it"
                if grace is not None
                else "the settled-through time (R28) reached it"
            )
            notes.append(
                f"R17: month-end invoice #{draft.number} cut at {format_micros(month_end)}: {why}; amount due "
                f"{usd(draft.amount_due)}"
            )
            invoices.append(draft)
            drafts.append(draft)
        origin = month_end
    if settled is None or origin is None:
        notes.append("R17: nothing to invoice (no usage in the log)")
    cadence = cadence_at(invoices, books.payments, settings.monthly_after_paid_invoices, wall)
    if cadence is Cadence.MONTHLY:
        notes.append(
            f"R18: monthly cadence after {paid_streak(invoices, books.payments, wall)} consecutive paid invoices "
            f"(setting: {settings.monthly_after_paid_invoices})"
        )
    return drafts, CloseResult(books.org_id, wall, (), cadence, "; ".join(notes), settled)
