"""The STATE entries R15 and R19 call for: a spend-limit flip's or a deactivation's kind, explanation and figures.

A pure decision on the books and the figures behind it; the engine appends what it returns, with the next ordinal
of its family (account_state.py).
"""

from __future__ import annotations

from typing import NamedTuple

from ledger.billing.account_state import HOUR, SpendFlip, StateChangeType
from ledger.billing.books import OrgBooks
from ledger.billing.cents import cents_text, exact_usd, usd
from ledger.billing.credits import credit_left
from ledger.billing.invoice_entry import Invoice
from ledger.events import format_decimal
from ledger.timeutil import format_micros


class DueChange(NamedTuple):
    """A STATE entry an evaluation owes: what changes, why (citing the rule) and the figures that caused it."""

    kind: StateChangeType
    explanation: str
    figures: dict[str, str]


def spend_change(flip: SpendFlip, checked: int | None) -> DueChange:
    """R15: the STATE entry for one flip of the hourly spend against the limit; late when `checked` (the instant up
    to which the last look had checked) had already passed the flip's instant."""
    window = f"units and storage intervals starting in ({format_micros(flip.at - HOUR)}, {format_micros(flip.at)}]"
    if flip.exceeded:
        kind = StateChangeType.SPEND_LIMIT_EXCEEDED
        why = f"R15: hourly spend {exact_usd(flip.spend)} ({window}) exceeds the limit {usd(flip.limit)} per hour"
    else:
        kind = StateChangeType.SPEND_LIMIT_CLEARED
        why = (
            f"R15: hourly spend {exact_usd(flip.spend)} ({window}) is back within the limit {usd(flip.limit)} per hour"
        )
    figures = {
        "hourly_spend": format_decimal(flip.spend),
        "spend_limit_per_hour": format_decimal(flip.limit),
        "window_start_exclusive": format_micros(flip.at - HOUR),
        "window_end_inclusive": format_micros(flip.at),
    }
    if checked is not None and flip.at <= checked:
        figures["late"] = "true"  # R15: revealed only by events that arrived after that instant was checked
        why += "; late: only events that arrived after this instant was checked reveal it"
    return DueChange(kind, why, figures)


def deactivation_due(books: OrgBooks, open_period: Invoice, now: int) -> DueChange | None:
    """The R19 change the org's state is due now, if any: usage up to the settled-through time (R28, the
    `open_period` draft), unpaid invoices and credits available now (R16), and whether a payment method is on
    file."""
    status = books.status
    unpaid = books.unpaid_amount_due(now)
    left = credit_left(books.balances(now), now)
    has_method = status.payment_method is not None
    uncovered = open_period.amount_due > 0 or unpaid > 0
    should = not has_method and uncovered
    if should == status.deactivated:
        return None
    figures = {
        "payment_method_on_file": "yes" if has_method else "no",
        "credit_left": cents_text(left),
        "open_period_total": cents_text(open_period.total),
        "open_period_amount_due_after_credits": cents_text(open_period.amount_due),
        "unpaid_invoices_amount_due": cents_text(unpaid),
    }
    if should:
        why = (
            f"R19: no payment method on file and credits no longer cover usage: credit left {usd(left)}, "
            f"open period {usd(open_period.total)} leaves {usd(open_period.amount_due)} uncovered, unpaid invoices "
            f"{usd(unpaid)}"
        )
        return DueChange(StateChangeType.DEACTIVATED, why, figures)
    if has_method:
        return DueChange(StateChangeType.REACTIVATED, "R19: a payment method is on file again: reactivated", figures)
    why = f"R19: credits cover usage again (credit left {usd(left)}, open period {usd(open_period.total)}): reactivated"
    return DueChange(StateChangeType.REACTIVATED, why, figures)
