"""Rated usage of an org as of an instant: the one view invoicing, spend limits and usage queries read.

Callers depend on `UsageView.org_rating`; how it is computed (re-rating the log, or derived rollups kept
current as entries are appended) stays behind it.
"""

from __future__ import annotations

from ledger.core import Ledger
from ledger.rating import OrgRating, rate_org


class UsageView:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def org_rating(self, org_id: str, now: int) -> OrgRating:
        """Every session, zero line, storage charge and anomaly of the org, open sessions accrued to `now` (R10)."""
        events = self.ledger.events_of(org_id)
        return rate_org(events, self.ledger.price_history(), self.ledger.account_history(org_id).plans(), now)
