"""Billing evaluations re-rate only the workloads they can charge differently (ledger/billing/scope.py), from the
usage rollups. The property: the same history, evaluated by an engine that re-rates the whole log every time and by
one that re-rates only its scope, leaves byte-identical logs (the same invoices, R17/R22, the same R15 flips and
R19 state changes) and the same account summaries, across late stops, replaced UPs, storage, credits, a plan
change after an invoice (R10) and a spend limit (R15).
"""

from __future__ import annotations

import itertools
import tempfile
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger.billing import BillingEngine
from ledger.billing.scope import EVERYTHING, billing_scope
from ledger.log.entry import org_log_id
from ledger.timeutil import format_micros
from tests.billing_support import MINUTE, Desk, assert_invoices_rederive, t
from tests.test_billing_properties import T0, Scenario, open_account, scenarios


def run(scenario: Scenario, scoped: bool, limit: str, plan_change_after: int | None, tmp: str) -> list[Any]:
    """Play the scenario with ticks (close, R15, R19) after each batch; return what the log and summaries hold."""
    desk = Desk(f"sqlite:///{tmp}/{'scoped' if scoped else 'whole'}.db", format_micros(T0 - 24 * 60 * MINUTE))
    desk.engine = BillingEngine(desk.ledger, scoped=scoped)
    try:
        open_account(desk, scenario, spend_limit_per_hour=limit)
        seen: list[Any] = []
        bounds = [0, *scenario.batches, len(scenario.events)]
        for step, (batch, advance) in enumerate(zip(itertools.pairwise(bounds), scenario.closes, strict=True)):
            desk.append(*scenario.events[batch[0] : batch[1]])
            desk.clock.advance(advance * MINUTE)
            if step == plan_change_after:
                other = "PER_SECOND" if scenario.granularity == "PER_MINUTE" else "PER_MINUTE"
                desk.ledger.set_account("acme", {"effective_from": format_micros(T0), "granularity": other})
            books = desk.engine.books("acme")
            if scoped and not billing_scope(books.invoices, books.account, desk.clock.now).everything:
                event("evaluated in a narrow scope")
            result, changes = desk.engine.tick("acme")
            summary = desk.engine.summary("acme")
            seen.append(
                (
                    [inv.number for inv in result.issued],
                    [c.change.value for c in changes],
                    summary.open_period.body(),
                    summary.hourly_spend,
                    summary.status.deactivated,
                )
            )
        assert_invoices_rederive(desk)  # an auditor re-derives each invoice, scoped or not, from the raw entries
        entries = desk.store.iter_entries(org_log_id("acme"))
        return [seen, [(e.sequence, e.kind.value, e.body) for e in entries]]
    finally:
        desk.close_store()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scenarios(),
    st.sampled_from(("0.50", "3.00", "1000.00")),
    st.none() | st.integers(0, 3),
)
def test_r15_r17_r19_r22_scoped_evaluations_equal_whole_log_re_rating(
    scenario: Scenario, limit: str, plan_change_after: int | None
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        whole = run(scenario, False, limit, plan_change_after, tmp)
        scoped = run(scenario, True, limit, plan_change_after, tmp)
    kinds = {kind for _, kind, _ in whole[1]}
    event("invoices" if "INVOICE" in kinds else "no invoice")
    event("state changes" if "STATE" in kinds else "no state change")
    assert scoped[0] == whole[0]
    assert scoped[1] == whole[1]  # byte for byte: every invoice and STATE entry, in the same order


def test_r17_the_scope_after_an_invoice_is_what_changed_since_its_rating(tmp_path: Any) -> None:
    """After an invoice, an evaluation reads only: workloads changed since the invoice's rating, open sessions and
    usage after its period end (R17), and R15's last hour; a plan change (R10) puts everything back in scope."""
    desk = Desk(f"sqlite:///{tmp_path}/ledger.db", "2026-10-05T08:00:00Z")
    # B200 FLEX $0.144/min (R11), one line: wl-early's 10 minutes and wl-done's first 338 make 348 x $0.144 = $50.112
    # -> $50.11 > $50.00 (347: $49.97), so the threshold cut (R17) is after wl-done's unit 337 (15:37).
    desk.session("wl-early", "2026-10-05T09:00:00Z", "2026-10-05T09:10:00Z")
    desk.session("wl-done", "2026-10-05T10:00:00Z", "2026-10-05T15:40:00Z")
    desk.session("wl-open", "2026-10-05T16:00:00Z")
    result = desk.close("2026-10-05T17:00:00Z")
    [invoice] = result.issued
    assert invoice.rated_log_size == 6  # five events and the HEARTBEAT; the invoice itself is entry #6
    assert invoice.period_end == t("2026-10-05T15:37:00.000001Z")
    books = desk.engine.books("acme")
    scope = billing_scope(books.invoices, books.account, t("2026-10-05T19:00:00Z"))
    assert (scope.changed_from, scope.units_from) == (6, t("2026-10-05T15:37:00.000001Z"))
    desk.at("2026-10-05T19:00:00Z")
    rating = desk.engine._rating(books, desk.clock.now)
    # wl-early is invoiced whole and unchanged; wl-done still has units 338-339 after the cut; wl-open is open.
    assert [w.workload_id for w in rating.workloads] == ["wl-done", "wl-open"]

    desk.session("wl-late", "2026-10-05T12:00:00Z", "2026-10-05T12:30:00Z")  # a late session (R22)
    desk.at("2026-10-05T19:00:00Z")
    rating = desk.engine._rating(books, desk.clock.now, t("2026-10-05T16:30:00Z"))  # R15 looks back to 15:30
    assert [w.workload_id for w in rating.workloads] == ["wl-done", "wl-late", "wl-open"]

    desk.ledger.set_account("acme", {"effective_from": "2026-10-05T00:00:00Z", "granularity": "PER_SECOND"})
    books = desk.engine.books("acme")
    assert billing_scope(books.invoices, books.account, desk.clock.now) == EVERYTHING
