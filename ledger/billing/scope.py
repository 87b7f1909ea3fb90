"""Which part of an org's usage a billing evaluation must re-rate, so an evaluation never reads a whole log.

An invoice draft charges what earlier invoices do not hold (R17) and takes back what they hold but is no longer
due (R22/R23). Once invoice N is drafted, every session its rating knew has exactly its due units (those starting
before N's period end) on invoices, and every storage sample its rating knew that starts before that end is on
one. So a later draft can differ from "nothing" only through:
- workloads with a lifecycle entry appended after N's rating was read (new usage; a late event, R22);
- open sessions, which accrue to now (R10), and sessions with units starting at or after N's period end;
- storage samples appended after N's rating was read, or starting at or after N's period end (R13, R14).
R15 compares the spend of units and storage intervals starting in the hour before each instant it checks, so
usage starting from that hour is in scope too. An ACCOUNT entry appended after N's rating can change how any
session is metered (R10: a plan change), and then every workload is in scope; so is every workload before the
first invoice, or when the last one predates `rated_log_size`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ledger.account import AccountHistory
from ledger.billing.account_state import HOUR
from ledger.billing.invoice_entry import Invoice


@dataclass(frozen=True, slots=True)
class BillingScope:
    """Re-rate workloads changed at or after log sequence `changed_from`, open sessions and usage billed after
    `units_from` (None: no bound from time). `changed_from == 0` is everything."""

    changed_from: int
    units_from: int | None

    @property
    def everything(self) -> bool:
        return self.changed_from == 0


EVERYTHING = BillingScope(0, None)


def billing_scope(
    invoices: Sequence[Invoice], account: AccountHistory, at: int, spend_checked_from: int | None = None
) -> BillingScope:
    """The scope of an evaluation at `at` that drafts invoices (R17) and, if `spend_checked_from` is given, looks
    for R15 flips at instants after it."""
    if not invoices:
        return EVERYTHING
    last = invoices[-1]
    if last.rated_log_size is None or at < last.period_end:
        return EVERYTHING
    if any(change.sequence >= last.rated_log_size for change in account.changes):
        return EVERYTHING  # R10: a plan change re-meters sessions the invoices already hold
    units_from = last.period_end
    if spend_checked_from is not None:
        units_from = min(units_from, spend_checked_from - HOUR)
    return BillingScope(last.rated_log_size, units_from)
