"""Derived data is checked (issue #23, item 4): `ledgerctl audit verify --database-url` re-derives the usage rollups
from the verified log and names every stored row that differs; `ledgerctl rollups rebuild` repairs them (both
stores). The day is examples/day.jsonl, the review's $177.61 day."""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import Result

from client.cli import app
from ledger.intake import Ledger
from ledger.log.entry import Entry
from ledger.timeutil import format_micros
from storage.sql import SqlStore, open_store
from storage.sql.rollup_check import ROLLUP_TABLES, check_org_rollups
from storage.sql.rollup_serving import RequestSummary
from storage.sql.rollups import rollup_follower
from tests.cli_support import LedgerctlRunner
from tests.conftest import FixedClock
from tests.test_dispute_rollups import BASE, SECOND, histories, reused_while_another_replica_uses_the_id

if TYPE_CHECKING:
    from tests.audit_support import TamperFactory

pytest_plugins = ["tests.audit_support"]

DAY_START = 1_791_158_400_000_000  # 2026-10-05T00:00:00Z: a sample's interval starts before it is reported
DAY = Path(__file__).resolve().parent.parent / "examples" / "day.jsonl"
RUNNER = LedgerctlRunner(
    env={"LEDGER_DATABASE_URL": None, "LEDGER_VERIFIER_KEY": None, "LEDGER_NAME": None, "LEDGER_TARGET": None}
)


def ledgerctl(*args: str | Path) -> Result:
    return RUNNER.invoke(app, [str(a) for a in args])


def _usage_total(target: str) -> Decimal:
    result = ledgerctl(
        "usage",
        "--org",
        "acme",
        "--from",
        "2026-10-05T00:00:00Z",
        "--to",
        "2026-10-06T00:00:00Z",
        "--target",
        target,
        "--json",
    )
    assert result.exit_code == 0, result.output
    return Decimal(json.loads(result.stdout)["total"])


def _verify(db_url: str, *extra: str) -> tuple[int, Any]:
    result = ledgerctl("audit", "verify", "--database-url", db_url, "--skip-invoices", "--json", *extra)
    assert result.stdout, (result.output, result.exception)
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def day(target: str) -> Decimal:
    """The example day ingested and its usage queried once (which brings the rollups up to date): its total."""
    result = ledgerctl("events", "ingest", DAY, "--target", target)
    assert result.exit_code == 0, result.output
    return _usage_total(target)


def test_untouched_rollups_re_derive_row_for_row(db_url: str, day: Decimal) -> None:
    assert Decimal(177) < day < Decimal(178)  # the review's day, exact (R10, R13, R14; shown per line as $177.61)
    code, report = _verify(db_url)
    assert code == 0, report
    [acme] = report["rollups"]["orgs"]
    assert acme["log_id"] == "org/acme" and acme["differences"] == []
    # 3,491 events and the BACKFILL_OPENED/CLOSED pair that brackets a past day (R29)
    assert acme["rows"] > 100 and acme["applied_size"] == 3491 + 2
    assert report["rollups"]["checked"] and report["rollups"]["problems"] == []


def test_tampered_rollups_fail_verification_naming_each_row_and_rebuild_repairs_them(
    db_url: str, target: str, day: Decimal, tamper: TamperFactory
) -> None:
    with tamper() as t:
        # A storage sample's exact charge times a thousand, and a closed session's runs re-priced, as the review did.
        [(seq, _)] = t.conn.exec_driver_sql(
            f"SELECT seq, charge FROM rollup_storage WHERE log_id = 'org/acme' AND start >= {DAY_START} "
            "ORDER BY seq LIMIT 1"
        ).all()
        t("UPDATE rollup_storage SET charge = :c WHERE log_id = 'org/acme' AND seq = :s", c=b"288000/1", s=seq)
        [(workload, session)] = t.conn.exec_driver_sql(
            "SELECT workload_id, session FROM rollup_workloads WHERE log_id = 'org/acme' AND NOT is_open "
            "AND session IS NOT NULL ORDER BY workload_id LIMIT 1"
        ).all()
        data = json.loads(bytes(session))
        data["runs"][0][7] = str(Decimal(data["runs"][0][7]) + 40)
        t(
            "UPDATE rollup_workloads SET session = :s WHERE log_id = 'org/acme' AND workload_id = :w",
            s=json.dumps(data, separators=(",", ":")).encode(),
            w=workload,
        )
        t(
            "DELETE FROM rollup_request_spans WHERE log_id = 'org/acme' AND request_id = "
            "(SELECT MIN(request_id) FROM rollup_request_spans WHERE log_id = 'org/acme')"
        )
    tampered = _usage_total(target)
    assert tampered > day + 288_000  # what `ledgerctl usage` now tells the org

    code, report = _verify(db_url)
    assert code == 1
    problems = report["rollups"]["problems"]
    assert len(problems) == 3, problems
    storage = next(p for p in problems if "rollup_storage" in p)
    assert f"storage sample at entry #{seq}: charge: stored $288000.00 (288000/1), re-derived $" in storage
    assert "repair: ledgerctl rollups rebuild --org acme" in storage
    session_problem = next(p for p in problems if "rollup_workloads" in p)
    assert f"workload {workload}: session: stored a session billing $" in session_problem
    assert any("rollup_request_spans" in p and "missing" in p for p in problems)
    assert report["ok"] is False and report["first_failure"] is None  # every hash still verifies

    text = ledgerctl("audit", "verify", "--database-url", db_url, "--skip-invoices")
    assert text.exit_code == 1 and "rollups differ from the log" in text.output

    rebuilt = ledgerctl("rollups", "rebuild", "--org", "acme", "--target", target)
    assert rebuilt.exit_code == 0, rebuilt.output
    assert _verify(db_url)[0] == 0
    assert _usage_total(target) == day


def test_rollup_rows_without_a_cursor_are_reported(db_url: str, day: Decimal, tamper: TamperFactory) -> None:
    with tamper() as t:
        t("DELETE FROM rollup_cursors WHERE log_id = 'org/acme'")
    store = open_store(db_url)
    try:
        result = check_org_rollups(store, "acme", lambda _log, _stop: [])
    finally:
        store.close()
    assert result.applied_size is None and not result.ok
    assert all("stored without a rollup cursor" in str(d) for d in result.differences)


def test_skip_rollups_and_the_api_say_the_rollups_were_not_checked(db_url: str, target: str, day: Decimal) -> None:
    code, report = _verify(db_url, "--skip-rollups")
    assert code == 0 and report["rollups"] == {
        "checked": False,
        "orgs": [],
        "problems": [],
        "note": "not re-derived (--skip-rollups)",
    }
    remote = ledgerctl("audit", "verify", "--target", target, "--skip-invoices", "--json")
    assert remote.exit_code == 0, remote.output
    assert "--database-url" in json.loads(remote.stdout)["rollups"]["note"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=histories(),
    seed=st.integers(0, 2**32 - 1),
    plan_change=st.booleans(),
    table=st.sampled_from([t.name for t in ROLLUP_TABLES]),
)
def test_rollups_caught_up_in_any_batches_re_derive_row_for_row_and_a_lost_row_is_named(
    history: list[dict[str, Any]], seed: int, plan_change: bool, table: str
) -> None:
    """The invariant the check stands on: rollups caught up incrementally (shuffled batches, late events of requests
    already summarised, R22; a plan change re-rating everything, R10) equal the rollups derived in one pass from the
    same entries. And the check can fail: a row taken away is reported as missing from its table."""
    rng = random.Random(seed)
    shuffled = history[:]
    rng.shuffle(shuffled)
    cuts = sorted(rng.sample(range(1, len(shuffled)), min(2, len(shuffled) - 1))) if len(shuffled) > 1 else []
    batches = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(shuffled)], strict=True)]
    clock = FixedClock(BASE + 12 * 3600 * SECOND)
    with tempfile.TemporaryDirectory() as tmp:
        store = SqlStore(f"sqlite:///{Path(tmp) / 'ledger.db'}", clock=clock)
        try:
            ledger = Ledger(store, clock=clock)
            follower = rollup_follower(store)
            for number, batch in enumerate(batches):
                ledger.append_events(batch)
                if plan_change and number == 1:
                    ledger.set_account("acme", {"effective_from": format_micros(BASE), "granularity": "PER_SECOND"})
                follower.catch_up("acme", ledger.price_history(), ledger.account_history("acme").plans())
                clock.advance(600 * SECOND)  # the wall clock moves between catch-ups; the rollups must not care (R28)

            def entries(log_id: str, stop: int) -> Iterable[Entry]:
                return store.iter_entries(log_id, 0, stop)

            clean = check_org_rollups(store, "acme", entries)
            assert clean.ok, [str(d) for d in clean.differences]
            assert clean.applied_size == store.head("org/acme").size
            with store.writer.begin() as conn:
                keys = conn.exec_driver_sql(f"SELECT rowid FROM {table} WHERE log_id = 'org/acme'").all()
                if not keys:
                    return
                conn.exec_driver_sql(f"DELETE FROM {table} WHERE rowid = {rng.choice(keys)[0]}")
            broken = check_org_rollups(store, "acme", entries)
            assert [d.table for d in broken.differences] == [table]
            assert "missing" in broken.differences[0].detail
        finally:
            store.close()


def test_r26_a_request_id_reused_on_one_replica_is_irregular_when_another_replica_uses_it_in_the_same_batch(
    ledger: Ledger,
) -> None:
    """Found by hypothesis: wl-a closes r-1 in one batch and starts it again in the next (R26), where wl-b serves its
    own r-1. The second catch-up is unsure of r-1 on both replicas; it must mark wl-a irregular, as one pass over the
    log does (wl-b too: the count of r-1's entries is per log, the safe way round). It marked only wl-b, so the live
    summary of wl-a said `irregular: false` and a lookup took a shortcut past the anomaly."""
    store = ledger.store
    assert isinstance(store, SqlStore)
    follower = rollup_follower(store)
    for batch in reused_while_another_replica_uses_the_id():
        ledger.append_events(batch)
        follower.catch_up("acme", ledger.price_history(), ledger.account_history("acme").plans())
    with store.writer.begin() as conn:
        rows = conn.exec_driver_sql(
            "SELECT workload_id, summary FROM rollup_requests WHERE log_id = 'org/acme' ORDER BY workload_id"
        ).all()
    assert {workload: RequestSummary.decode(bytes(blob)).irregular for workload, blob in rows} == {
        "wl-a": True,
        "wl-b": True,
    }
    clean = check_org_rollups(store, "acme", lambda log_id, stop: store.iter_entries(log_id, 0, stop))
    assert clean.ok, [str(d) for d in clean.differences]


def test_tampered_evidence_of_running_is_named(db_url: str, day: Decimal, tamper: TamperFactory) -> None:
    """R28: the rollups' evidence (each workload's latest event, the org's latest event and HEARTBEAT) bounds what an
    open session bills, so a stored value the log does not give is a difference like any other."""
    with tamper() as t:
        [(workload,)] = t.conn.exec_driver_sql(
            "SELECT workload_id FROM rollup_evidence WHERE log_id = 'org/acme' ORDER BY workload_id LIMIT 1"
        ).all()
        t(
            "UPDATE rollup_evidence SET evidence_at = evidence_at + 86400000000 "
            "WHERE log_id = 'org/acme' AND workload_id = :w",
            w=workload,
        )
        t("UPDATE rollup_cursors SET heartbeat_at = heartbeat_at + 86400000000 WHERE log_id = 'org/acme'")
    code, report = _verify(db_url)
    assert code == 1
    problems = report["rollups"]["problems"]
    assert len(problems) == 2, problems
    assert any(f"evidence of running of workload {workload} (R28): evidence_at: stored" in p for p in problems)
    assert any("the cursor's heartbeat_at" in p for p in problems)
