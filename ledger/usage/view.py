"""Rated usage of an org: the one view invoicing, spend limits and usage queries read.

`org_rating` re-rates an org's events (complete, with R25 detail); `query` and `billing_rating` answer from the
rollups, which their follower brings current to the log before each read, so neither re-reads or re-rates a
whole log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from fractions import Fraction
from typing import TYPE_CHECKING

from ledger.errors import FieldViolation, InvalidInput, NotFound
from ledger.intake import Ledger
from ledger.log.entry import org_log_id
from ledger.ports import RollupStore
from ledger.rating import BucketSize, OrgRating, rate_org
from ledger.rating.money import fraction_to_decimal
from ledger.tracing import traced
from ledger.usage.follower import RollupFollower
from ledger.usage.query import GROUP_DIMENSIONS, MAX_WINDOW_MICROS, UsageReport, usage_rows

if TYPE_CHECKING:
    from ledger.billing.scope import BillingScope


class UsageView:
    """Usage of a ledger's orgs, from its rollups when it has any (a SQL store) and by re-rating the log otherwise.

    Give the `follower` of the store's rollups to share it (and its per-org lock) with other views of the store;
    without one the view builds its own over `rollups`. Either way the follower is the rollups' only writer."""

    def __init__(
        self, ledger: Ledger, rollups: RollupStore | None = None, *, follower: RollupFollower | None = None
    ) -> None:
        self.ledger = ledger
        self.rollups = rollups
        self.follower = follower if follower is not None or rollups is None else RollupFollower(rollups)

    @traced("ledger.rating.org", ids=("org_id",))
    def org_rating(self, org_id: str, as_of: int | None = None) -> OrgRating:
        """Every session, zero line, storage charge and anomaly of the org, re-rated from the whole log: open
        sessions to their evidence (R10, R28), cut at `as_of` when given. `log_size` is exactly the entries read."""
        try:
            size = self.ledger.store.head(org_log_id(org_id)).size
        except NotFound:
            size = 0
        events = self.ledger.events_of(org_id, stop=size)
        prices = self.ledger.price_history()
        rating = rate_org(events, prices, self.ledger.account_history(org_id).plans(), as_of=as_of)
        return replace(rating, log_size=size)

    @traced("ledger.rating.billing", ids=("org_id",))
    def billing_rating(self, org_id: str, scope: BillingScope) -> OrgRating:
        """The sessions and storage charges a billing evaluation needs (ledger/billing/scope.py), open sessions
        to their evidence (R28); from the rollups when there are any. No zero lines or anomalies: billing charges
        none. `log_size` is exactly how many of the log's entries it reflects."""
        if self.rollups is None or self.follower is None:
            return self.org_rating(org_id)
        prices = self.ledger.price_history()
        plans = self.ledger.account_history(org_id).plans()
        size = self.follower.catch_up(org_id, prices, plans)
        rating = self.rollups.billing_rating(
            org_id, prices, plans, changed_from=scope.changed_from, units_from=scope.units_from
        )
        # The rollups say exactly what the rating reflects (read with it); what the follower returned is a lower bound.
        return rating if rating.log_size is not None else replace(rating, log_size=size)

    @traced("ledger.usage.query", ids=("org_id", "endpoint_id"))
    def query(
        self,
        org_id: str,
        start: int,
        end: int,
        *,
        as_of: int | None = None,
        endpoint_id: str | None = None,
        group_by: Sequence[str] = (),
        bucket: BucketSize | None = None,
    ) -> UsageReport:
        """Billed units and exact amounts in [start, end), current to the last appended entry: open sessions to
        their evidence (R28), cut at `as_of` when given."""
        if self.rollups is None or self.follower is None:
            raise RuntimeError("usage queries need rollups (a SQL store)")
        violations = []
        if end <= start:
            violations.append(FieldViolation("end_time", "must be after start_time"))
        elif end - start > MAX_WINDOW_MICROS:
            violations.append(FieldViolation("end_time", "a usage window spans at most 400 days", "WINDOW_TOO_LONG"))
        for name in group_by:
            if name not in GROUP_DIMENSIONS:
                violations.append(FieldViolation("group_by", f"{name!r} is not one of {', '.join(GROUP_DIMENSIONS)}"))
        if violations:
            raise InvalidInput(violations)
        prices = self.ledger.price_history()
        plans = self.ledger.account_history(org_id).plans()
        size = self.follower.catch_up(org_id, prices, plans)  # read-your-writes: current to every append before
        sessions = self.rollups.sessions_in(org_id, start, end, endpoint_id, prices, plans, as_of)
        storage = self.rollups.storage_in(org_id, start, end, endpoint_id)
        rows = usage_rows(sessions, storage, start, end, group_by, bucket)
        exact_total = sum((r.exact_amount for r in rows), Fraction(0))
        return UsageReport(tuple(rows), fraction_to_decimal(exact_total), size, exact_total)

    def rebuild(self, org_id: str) -> tuple[int, int]:
        if self.follower is None:
            raise RuntimeError("rollups need a SQL store")
        return self.follower.rebuild(org_id, self.ledger.price_history(), self.ledger.account_history(org_id).plans())
