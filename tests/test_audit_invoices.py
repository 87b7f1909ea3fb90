"""`ledgerctl audit verify` re-derives every invoice from the raw entries before it (issue #6, R17-R23).

The scenario is test_billing_rules' R17 one, figures by hand: a B200 FLEX replica (R11: $0.144 a minute) up from
2026-10-05T00:00Z. Invoice #1, a threshold invoice (R17) cut after unit 347 (05:47): 348 minutes x $0.144 = $50.112
-> $50.11. The replica stops at 06:00; invoice #2 at the month end: units 348-359, 12 x $0.144 = $1.728 -> $1.73.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from client.auditor import entries_verified as _entries_verified
from client.cli import app
from ledger.billing.books import load_books
from ledger.billing.due_invoices import due_invoices
from ledger.billing.rederive import rederive_invoices
from ledger.errors import LogMoved, VerificationError
from ledger.intake import derive_index
from ledger.log.audit import verify_log
from ledger.log.entry import SYSTEM_LOG, EntryKind, canonical_body, org_log_id
from ledger.ports import NewEntry
from server.app import start_server
from storage.sql.audit_source import SqlAuditSource
from storage.sql.rollups import rollup_follower
from tests.billing_support import Desk
from tests.cli_support import LedgerctlRunner

RUNNER = LedgerctlRunner(
    env={"LEDGER_DATABASE_URL": None, "LEDGER_VERIFIER_KEY": None, "LEDGER_NAME": None, "LEDGER_TARGET": None}
)


def verify_json(*args: str) -> tuple[int, dict[str, Any]]:
    result = RUNNER.invoke(app, ["audit", "verify", *args, "--json"])
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def invoiced(db_url: str) -> Iterator[Desk]:
    desk = Desk(db_url, "2026-10-01T00:00:00Z")
    desk.session("wl-1", "2026-10-05T00:00:00Z")
    [first] = desk.close("2026-10-05T05:48:00Z").issued
    desk.stop("wl-1", "2026-10-05T06:00:00Z")
    [second] = desk.close("2026-11-01T00:00:00Z").issued
    assert (first.total, second.total) == (Decimal("50.11"), Decimal("1.73"))  # as test_billing_rules has them
    yield desk
    desk.close_store()


def findings(report: dict[str, Any]) -> list[tuple[int, str, bool]]:
    return [(f["number"], f["total"], f["ok"]) for f in report["invoices"]["invoices"]]


def test_r17_verify_re_derives_each_invoice_from_the_database_and_through_the_api(invoiced: Desk, db_url: str) -> None:
    invoiced.session("wl-9", "2026-11-02T00:00:00Z", org="globex")  # an org with usage and no invoice yet
    code, report = verify_json("--database-url", db_url)
    assert code == 0, report
    assert report["invoices"]["checked"] and report["invoices"]["problems"] == []
    assert findings(report) == [(1, "50.11", True), (2, "1.73", True)]
    assert report["invoices"]["note"] == (
        "2 invoices of 2 org logs re-derived from the raw entries before each: 2 match, 0 differ"
    )

    # Through the API (ListLeaves), as an auditor without database access: the same invoices, the same verdicts.
    server = start_server(db_url, "127.0.0.1:0", clock=invoiced.clock)
    try:
        code, remote = verify_json("--target", f"127.0.0.1:{server.port}")
    finally:
        server.stop(grace=None)
    assert code == 0, remote
    assert remote["invoices"] == report["invoices"]

    table = RUNNER.invoke(app, ["audit", "verify", "--database-url", db_url])
    assert table.exit_code == 0
    assert "50.11" in table.stdout and "1.73" in table.stdout and "matches" in table.stdout

    skipped = verify_json("--database-url", db_url, "--skip-invoices")
    assert skipped[0] == 0 and skipped[1]["invoices"]["checked"] is False


def test_r17_r21_a_forged_invoice_with_a_valid_chain_fails_naming_the_invoice_and_the_figure(
    invoiced: Desk, db_url: str
) -> None:
    """Whoever can append can write an INVOICE entry the chain accepts: #3 for December, $99.00, with nothing
    rated since #2. The chain verifies; the invoice does not re-derive (R17: no usage, no lines, $0.00)."""
    store = invoiced.store
    second = store.entries_of_kind(org_log_id("acme"), [EntryKind.INVOICE.value])[-1]
    body = json.loads(second.body)
    body.update(
        number=3,
        idempotency_key="invoice:3",
        period={"start": "2026-11-01T00:00:00.000000Z", "end": "2026-12-01T00:00:00.000000Z"},
        total="99.00",
        amount_due="99.00",
    )
    [forged] = store.append(
        [NewEntry(org_log_id("acme"), EntryKind.INVOICE, canonical_body(body), derive_index(EntryKind.INVOICE, body))]
    )

    code, report = verify_json("--database-url", db_url)
    assert code == 1
    assert report["first_failure"] is None  # every chain and root verified: only the invoice is wrong
    assert findings(report) == [(1, "50.11", True), (2, "1.73", True), (3, "99.00", False)]
    [problem] = report["invoices"]["problems"]
    assert problem.startswith(f"invoice #3 of org acme (entry org/acme#{forged.sequence}) does not re-derive")
    assert "total: invoiced 99.00, re-derived 0.00" in problem
    assert "amount_due: invoiced 99.00, re-derived 0.00" in problem

    table = RUNNER.invoke(app, ["audit", "verify", "--database-url", db_url])
    assert table.exit_code == 1
    assert "invoice re-derivation failed" in table.stderr and "invoice #3" in table.stderr


def test_r17_re_derivation_reads_only_entries_the_chain_check_vouched_for(invoiced: Desk, db_url: str) -> None:
    """The second read of a log (for its invoices) is checked against the Merkle root verification rebuilt at the
    last invoice: a log changed between the two reads is reported, not re-derived from."""
    invoiced.session("wl-2", "2026-11-02T00:00:00Z")  # after the last invoice: not read for the invoices
    source = SqlAuditSource(db_url)
    try:
        log_id = org_log_id("acme")
        stop = source.invoiced_size(log_id)
        assert stop == invoiced.store.entries_of_kind(log_id, ["INVOICE"])[-1].sequence + 1
        verification = verify_log(source, log_id, roots_at={stop})
        assert stop == verification.size - 1
        system = [entry for entry, _, _ in source.audit_rows(SYSTEM_LOG)]
        found = rederive_invoices("acme", _entries_verified(source, verification, stop), system)
        assert [(f.number, f.ok) for f in found] == [(1, True), (2, True)]

        other = replace(verification, roots={stop: bytes(32)})
        with pytest.raises(VerificationError, match=f"its first {stop} entries differ"):
            rederive_invoices("acme", _entries_verified(source, other, stop), system)
        # Read to the end (the API cannot tell where the last invoice is): checked against the head's root.
        assert len(rederive_invoices("acme", _entries_verified(source, verification, verification.size), system)) == 2
        other = replace(verification, root_hash=bytes(32))
        with pytest.raises(VerificationError, match="changed after it was verified"):
            rederive_invoices("acme", _entries_verified(source, other, verification.size), system)
    finally:
        source.close()


def test_r17_an_event_landing_between_rating_and_append_refuses_the_invoice_and_the_engine_rates_again(
    sqlite_url: str,
) -> None:
    """The race a busy ledger runs every day: the closer rates the log, an event lands, then the invoice would be
    appended. wl-1 ran 2026-10-05 00:00-01:00 (60 x $0.144 = $8.64); wl-2 (2026-10-20 00:00-00:10, 10 x $0.144)
    lands between the closer's rating and its append. The conditional append (R17) refuses the invoice rated
    without it; rated again, the month-end invoice holds both: 70 x $0.144 = $10.08, and it re-derives from exactly
    the entries before it."""
    desk = Desk(sqlite_url, "2026-10-01T00:00:00Z")
    try:
        desk.session("wl-1", "2026-10-05T00:00:00Z", "2026-10-05T01:00:00Z")
        desk.heartbeat("2026-11-01T00:00:00Z")  # R28: settled through October's end
        desk.at("2026-11-01T00:00:00Z")
        engine = desk.engine
        # The engine's own steps, with an append between them (what a concurrent writer does to a closer).
        rating = engine._rating(engine.books("acme"), desk.clock.now)
        drafts, _ = due_invoices(
            load_books(desk.store, "acme", rating.log_size), rating, desk.clock.now, engine.invoice_grace_seconds
        )
        assert [d.total for d in drafts] == [Decimal("8.64")]
        desk.session("wl-2", "2026-10-20T00:00:00Z", "2026-10-20T00:10:00Z")
        with pytest.raises(LogMoved):
            engine._issue("acme", drafts, rating.log_size)
        assert desk.invoices() == []  # nothing was appended from the stale rating

        [invoice] = engine.close("acme").issued
        assert invoice.total == Decimal("10.08") and invoice.rated_log_size == invoice.sequence
        system = list(desk.store.iter_entries(SYSTEM_LOG))
        [finding] = rederive_invoices("acme", desk.store.iter_entries(org_log_id("acme")), system)
        assert finding.ok, finding.differences
        assert finding.note == "cut 2026-11-01T00:00:00.000000Z, settled through 2026-11-01T00:00:00.000000Z"
    finally:
        desk.close_store()


def test_r12_r17_a_price_version_landing_between_rating_and_append_refuses_the_invoice_and_it_is_rated_again(
    db_url: str,
) -> None:
    """A price-book version is a fact of the system log, not of the org's: one appended after the closer rated an
    org (effective after every issued cut, so R12's guard lets it in) must not leave an invoice priced without it,
    which the auditor, pricing each invoice with the versions recorded before it, would find wrong. The conditional
    append holds the system log's size too. wl-1 ran 2026-10-05 00:00-01:00 (60 x $0.144 = $8.64) and wl-2
    2026-10-20 00:00-00:10; B200 FLEX doubles to $0.0048/s from 2026-10-10, so wl-2 is 10 x $0.288 = $2.88 (R11,
    R12: each unit at the version in force at its start) and the month-end invoice $11.52, not $10.08."""
    desk = Desk(db_url, "2026-10-01T00:00:00Z")
    try:
        desk.session("wl-1", "2026-10-05T00:00:00Z", "2026-10-05T01:00:00Z")
        desk.session("wl-2", "2026-10-20T00:00:00Z", "2026-10-20T00:10:00Z")
        desk.heartbeat("2026-11-01T00:00:00Z")  # R28: settled through October's end
        desk.at("2026-11-01T00:00:00Z")
        engine = desk.engine
        system_size = desk.store.head(SYSTEM_LOG).size
        rating = engine._rating(engine.books("acme"), desk.clock.now)
        drafts, _ = due_invoices(
            load_books(desk.store, "acme", rating.log_size), rating, desk.clock.now, engine.invoice_grace_seconds
        )
        assert [d.total for d in drafts] == [Decimal("10.08")]
        desk.ledger.set_price_book(
            {
                "effective_from": "2026-10-10T00:00:00Z",
                "rates": {"B200": {"flex_per_second": "0.0048", "active_per_second": "0.0048"}},
            }
        )
        with pytest.raises(LogMoved):
            engine._issue("acme", drafts, rating.log_size, system_size)
        assert desk.invoices() == []

        [invoice] = engine.close("acme").issued
        assert invoice.total == Decimal("11.52")
        system = list(desk.store.iter_entries(SYSTEM_LOG))
        [finding] = rederive_invoices("acme", desk.store.iter_entries(org_log_id("acme")), system)
        assert finding.ok, finding.differences
    finally:
        desk.close_store()


def test_r17_a_rating_from_rollups_behind_the_log_never_issues_an_invoice(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rollups' cursor, read in one snapshot with their rows, says exactly which entries a rating reflects.
    When our catch-up is behind the log (another process's catch-up applied wl-2, wl-3 landed after), the
    conditional append refuses every invoice rated from it (R17): the evaluation gives up after its attempts and
    appends nothing. Caught up, it issues the invoice of all three, which re-derives."""
    desk = Desk(sqlite_url, "2026-10-01T00:00:00Z")
    try:
        desk.session("wl-1", "2026-10-05T00:00:00Z", "2026-10-05T01:00:00Z")  # 60 x $0.144 = $8.64
        desk.heartbeat("2026-11-01T00:00:00Z")  # R28: settled through October's end: its invoice is due
        desk.at("2026-11-01T00:00:00Z")
        engine = desk.engine
        follower = engine.usage.follower
        assert follower is not None
        prices, plans = desk.ledger.price_history(), desk.ledger.account_history("acme").plans()
        returned = follower.catch_up("acme", prices, plans)
        desk.session("wl-2", "2026-10-20T00:00:00Z", "2026-10-20T00:10:00Z")  # 10 x $0.144 = $1.44
        rollup_follower(desk.store).catch_up("acme", prices, plans)  # another process's follower
        monkeypatch.setattr(follower, "catch_up", lambda *_: returned)  # ours is stuck behind
        desk.session("wl-3", "2026-10-25T00:00:00Z", "2026-10-25T00:05:00Z")  # 5 x $0.144 = $0.72
        result = engine.close("acme")
        assert result.issued == ()
        assert "no invoice was appended from a rating it no longer matched" in result.explanation
        assert desk.invoices() == []

        monkeypatch.undo()
        [invoice] = engine.close("acme").issued
        assert {s.workload_id for s in invoice.sessions} == {"wl-1", "wl-2", "wl-3"}
        assert invoice.total == Decimal("10.80")  # 75 x $0.144
        system = list(desk.store.iter_entries(SYSTEM_LOG))
        [finding] = rederive_invoices("acme", desk.store.iter_entries(org_log_id("acme")), system)
        assert finding.ok, finding.differences
    finally:
        desk.close_store()
