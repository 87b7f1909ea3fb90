"""PostgreSQL appends on the log heads the store committed last: one round trip, and nothing trusted to the kept heads
(storage.sql.kept_heads, issue #26). Each test runs against the real PostgreSQL in a database of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ledger.errors import EventConflict
from ledger.intake import Ledger
from ledger.log.append import LogState
from ledger.log.audit import verify
from storage.sql.store import SqlStore
from tests.test_crash_safety import usage_event

pytestmark = pytest.mark.postgres


@pytest.fixture
def store(pg_url: str) -> Iterator[SqlStore]:
    opened = SqlStore(pg_url)
    Ledger(opened)  # the system log's genesis price book
    yield opened
    opened.close()


def _round_trips(store: SqlStore, tmp_path: Path, append: Any) -> int:
    """Round trips (pipeline syncs and simple queries) the writer connection made for `append()`, read from libpq's
    own trace of the connection. Run alone, every append of these tests takes the pool's one writer connection."""
    with store.writer.connect() as conn:
        pgconn = conn.connection.driver_connection.pgconn  # type: ignore[union-attr]
    trace = tmp_path / "libpq.trace"
    with trace.open("w") as out:
        pgconn.trace(out.fileno())
        pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            append()
        finally:
            pgconn.untrace()
    frontend = [line.split("\t") for line in trace.read_text().splitlines() if line.startswith("F\t")]
    return sum(1 for fields in frontend if fields[2] in ("Sync", "Query"))


def test_an_append_to_a_kept_head_commits_in_one_round_trip(store: SqlStore, tmp_path: Path) -> None:
    ledger = Ledger(store)
    ledger.append_events([usage_event("e-0", "acme")])  # creates the log's head
    store._kept_heads.forget(["org/acme"])  # as another server's append would make this store do
    general = _round_trips(store, tmp_path, lambda: ledger.append_events([usage_event("e-1", "acme")]))
    kept = _round_trips(store, tmp_path, lambda: ledger.append_events([usage_event("e-2", "acme")]))
    # BEGIN; the head's lock with R24's lookup; the rows, the head and COMMIT. Then one statement (migration 0013).
    assert (general, kept) == (3, 1)
    assert [store.get_entry("org/acme", seq).sequence for seq in (0, 1, 2)] == [0, 1, 2]
    assert verify(store).ok


def test_an_event_stored_already_is_answered_as_a_duplicate_of_its_entry_r24(store: SqlStore) -> None:
    ledger = Ledger(store)
    original = ledger.append_events([usage_event("e-0", "acme"), usage_event("e-1", "acme")])
    again = ledger.append_events([usage_event("e-2", "acme"), usage_event("e-1", "acme")])
    assert again[0].sequence == 2 and not again[0].duplicate
    assert (again[1].sequence, again[1].entry_hash, again[1].duplicate) == (1, original[1].entry_hash, True)
    assert store.head("org/acme").size == 3
    assert verify(store).ok


def test_a_head_another_writer_moved_is_appended_to_where_it_now_is(store: SqlStore, pg_url: str) -> None:
    """Two stores (two server processes) on one database take turns on one log: each one's kept head is stale at
    every turn, and every append still lands on the log's real head."""
    other = SqlStore(pg_url)
    try:
        mine, theirs = Ledger(store), Ledger(other)
        for n in range(6):
            writer = mine if n % 2 == 0 else theirs
            assert writer.append_events([usage_event(f"e-{n}", "acme")])[0].sequence == n
        assert store.head("org/acme").size == other.head("org/acme").size == 6
        assert verify(store).ok
        _assert_writer_not_in_autocommit(store)
    finally:
        other.close()


def test_a_kept_head_that_is_wrong_moves_nothing(store: SqlStore) -> None:
    """The head update moves a head only from the size and hash kept. A kept head at the log's real size but with
    another hash (nothing this store can reach makes one, so it is planted) must not have a new entry chained to
    it: the commit fails whole, and the append lands on the real head."""
    ledger = Ledger(store)
    stored = ledger.append_events([usage_event("e-0", "acme")])[0]
    kept = store._kept_heads.of(["org/acme"])
    assert kept is not None and kept["org/acme"] == LogState(1, stored.entry_hash, kept["org/acme"].frontier)
    store._kept_heads.keep({"org/acme": kept["org/acme"]._replace(head_hash=bytes(32))})
    appended = ledger.append_events([usage_event("e-1", "acme")])[0]
    assert (appended.sequence, appended.duplicate) == (1, False)
    assert store.get_entry("org/acme", 1).previous_hash == stored.entry_hash
    assert verify(store).ok
    _assert_writer_not_in_autocommit(store)


def _assert_writer_not_in_autocommit(store: SqlStore) -> None:
    """The failed commit ran with autocommit on: the pooled connection must be back to transactions."""
    with store.writer.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None and driver.autocommit is False  # type: ignore[attr-defined]
        assert driver.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # type: ignore[attr-defined]


def test_appends_go_on_after_commits_on_stale_kept_heads_failed_in_turn(store: SqlStore) -> None:
    """Every append here first fails on a stale kept head, then lands the general way: its four rows go as INSERTs
    of three rows and of one, the first collides and PostgreSQL skips the rest of the pipeline, psycopg prepares its
    statements along the way (after five runs). The connection must come out of each failure able to append, with
    psycopg's prepared statements what PostgreSQL holds (the failure is rolled back by psycopg's own rollback: four
    servers on one database once met a "prepared statement does not exist" after an explicit ROLLBACK)."""
    ledger = Ledger(store)
    stale = None
    for n in range(12):
        if stale is not None:
            store._kept_heads.keep({"org/acme": stale})
        appended = ledger.append_events([usage_event(f"e-{n}-{k}", "acme") for k in range(4)])
        assert [a.sequence for a in appended] == [4 * n + k for k in range(4)]
        stale = store._kept_heads.of(["org/acme"])["org/acme"]._replace(size=4 * n)  # type: ignore[index]
    assert verify(store).ok
    _assert_writer_not_in_autocommit(store)


def test_a_stored_event_named_twice_with_two_bodies_is_an_r24_conflict_on_a_kept_head(store: SqlStore) -> None:
    """Found by test_group_commit's property test: on a kept head, a batch holding a stored event as it was and
    then with another body was refused as an event named twice in the batch (INVALID_ARGUMENT), because the kept
    way knows nothing stored. It is an R24 conflict (ALREADY_EXISTS), as the general way finds, and appends nothing."""
    ledger = Ledger(store)
    stored = ledger.append_events([usage_event("e-0", "acme")])[0]
    assert store._kept_heads.of(["org/acme"]) is not None  # the next append is on a kept head
    changed = {**usage_event("e-0", "acme"), "endpoint_id": "ep-other"}
    with pytest.raises(EventConflict) as raised:
        ledger.append_events([usage_event("e-0", "acme"), changed])
    assert (raised.value.sequence, raised.value.entry_hash) == (stored.sequence, stored.entry_hash)
    assert store.head("org/acme").size == 1
