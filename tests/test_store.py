"""The ledger store on SQLite and PostgreSQL: atomic batches, R24 idempotency, linear chains, verification."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from ledger.errors import EventConflict, InvalidInput
from ledger.intake import Ledger
from ledger.log.audit import verify
from ledger.log.entry import GENESIS_HASH, SYSTEM_LOG, EntryKind, chain_hash
from ledger.log.merkle import InMemoryTree
from ledger.ports import IndexColumns, NewEntry
from storage.sql.index_reads import _ENTRIES_OF_KIND
from tests.conftest import EventFactory
from tests.test_crash_safety import psycopg_url


def test_a_new_ledger_starts_with_the_default_price_book_r11(ledger: Ledger) -> None:
    head = ledger.store.head(SYSTEM_LOG)
    assert head.size == 1
    genesis = ledger.entry(SYSTEM_LOG, 0)
    assert genesis.kind is EntryKind.PRICE_BOOK
    assert genesis.body_json()["rates"]["H100 PRO"] == {"flex_per_second": "0.00116", "active_per_second": "0.00093"}
    # Opening the same database again does not add a second genesis entry.
    Ledger(ledger.store, clock=ledger.clock)
    assert ledger.store.head(SYSTEM_LOG).size == 1


def test_entries_chain_from_genesis_and_sequence_without_gaps(ledger: Ledger, make_event: EventFactory) -> None:
    results = ledger.append_events([make_event() for _ in range(5)])
    assert [r.sequence for r in results] == [0, 1, 2, 3, 4]
    previous = GENESIS_HASH
    tree = InMemoryTree()
    for sequence in range(5):
        entry = ledger.entry("org/acme", sequence)
        assert entry.previous_hash == previous
        assert entry.entry_hash == chain_hash(previous, entry.encoded())
        assert entry.recorded_at == ledger.clock()
        previous = entry.entry_hash
        tree.append(entry.encoded())
    head = ledger.store.head("org/acme")
    assert (head.size, head.head_hash, head.root_hash) == (5, previous, tree.root())


def test_r24_duplicate_event_answers_with_the_original_entry(ledger: Ledger, make_event: EventFactory) -> None:
    event = make_event()
    [first] = ledger.append_events([event])
    [again] = ledger.append_events([dict(event)])
    assert again.duplicate and not first.duplicate
    assert (again.sequence, again.entry_hash) == (first.sequence, first.entry_hash)
    assert ledger.store.head("org/acme").size == 1


def test_r24_same_event_twice_in_one_batch_appends_once(ledger: Ledger, make_event: EventFactory) -> None:
    event = make_event()
    results = ledger.append_events([event, dict(event)])
    assert [r.duplicate for r in results] == [False, True]
    assert results[0].sequence == results[1].sequence
    assert ledger.store.head("org/acme").size == 1


def test_r24_same_event_id_with_other_content_is_a_conflict_and_appends_nothing(
    ledger: Ledger, make_event: EventFactory
) -> None:
    event = make_event()
    ledger.append_events([event])
    with pytest.raises(EventConflict) as err:
        ledger.append_events([make_event(), {**event, "instance_type": "L4"}])
    assert "R24" in str(err.value)
    assert ledger.store.head("org/acme").size == 1  # the valid first event of the batch was not appended either


def test_event_ids_are_scoped_per_org(ledger: Ledger, make_event: EventFactory) -> None:
    results = ledger.append_events([make_event(event_id="x"), make_event(event_id="x", org_id="other")])
    assert [(r.log_id, r.sequence, r.duplicate) for r in results] == [("org/acme", 0, False), ("org/other", 0, False)]


def test_an_invalid_event_rejects_the_whole_batch(ledger: Ledger, make_event: EventFactory) -> None:
    with pytest.raises(InvalidInput) as err:
        ledger.append_events([make_event(), make_event(org_id="b"), make_event(instance_type="nope")])
    assert [v.field for v in err.value.violations] == ["events[2].instance_type"]
    assert [h.log_id for h in ledger.store.list_logs("", 10)] == [SYSTEM_LOG]


def test_a_batch_across_orgs_is_atomic_and_results_keep_request_order(ledger: Ledger, make_event: EventFactory) -> None:
    events = [make_event(org_id=org) for org in ("b", "a", "b", "a")]
    results = ledger.append_events(events)
    assert [(r.log_id, r.sequence) for r in results] == [("org/b", 0), ("org/a", 0), ("org/b", 1), ("org/a", 1)]


def test_concurrent_appenders_leave_every_chain_linear_and_gap_free(ledger: Ledger, make_event: EventFactory) -> None:
    errors: list[BaseException] = []

    def appender(worker: int) -> None:
        try:
            for batch in range(10):
                events = [
                    make_event(event_id=f"w{worker}-b{batch}-{i}", org_id=("common" if i % 2 else f"own{worker}"))
                    for i in range(20)
                ]
                # Every worker also re-sends one event of worker 0's first batch: R24 across threads.
                events.append(make_event(event_id="w0-b0-1", org_id="common"))
                ledger.append_events(events)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=appender, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert ledger.store.head("org/common").size == 4 * 10 * 10
    assert all(ledger.store.head(f"org/own{w}").size == 100 for w in range(4))
    report = verify(ledger.store)
    assert report.ok, report.first_failure()
    assert report.entries == 1 + 4 * 10 * 20


def _tamper(ledger: Ledger, statement: str, **params: Any) -> None:
    """Write around the append-only triggers, as an attacker with database access could."""
    with ledger.store.writer.begin() as conn:
        if ledger.store.dialect == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            conn.execute(text("DROP TRIGGER IF EXISTS entries_no_update"))
            conn.execute(text("DROP TRIGGER IF EXISTS entries_no_delete"))
        conn.execute(text(statement), params)


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("UPDATE entries SET body = :body WHERE log_id = 'org/acme' AND seq = 2", "stored hash does not match"),
        ("UPDATE entries SET entry_hash = :hash WHERE log_id = 'org/acme' AND seq = 2", "stored hash does not match"),
        ("DELETE FROM entries WHERE log_id = 'org/acme' AND seq = 2", "entry org/acme#2 is missing"),
        ("UPDATE entries SET endpoint_id = 'ep-x' WHERE log_id = 'org/acme' AND seq = 2", "index columns differ"),
    ],
)
def test_audit_names_the_first_tampered_entry(
    ledger: Ledger, make_event: EventFactory, statement: str, message: str
) -> None:
    ledger.append_events([make_event() for _ in range(5)])
    assert verify(ledger.store).ok
    original = ledger.entry("org/acme", 2)
    body = original.body.replace(b'"A100"', b'"A101"')
    _tamper(ledger, statement, body=body, hash=bytes(32))
    report = verify(ledger.store)
    bad = report.first_failure()
    assert bad is not None and bad.log_id == "org/acme"
    assert bad.failed_sequence == 2
    assert message in (bad.failure or "")


def test_entries_cannot_be_updated_or_deleted_through_plain_sql(ledger: Ledger, make_event: EventFactory) -> None:
    ledger.append_events([make_event()])
    for statement in ("UPDATE entries SET kind = 'STATE'", "DELETE FROM entries"):
        with pytest.raises(Exception, match="append-only"), ledger.store.writer.begin() as conn:
            conn.execute(text(statement))
    assert verify(ledger.store).ok


def test_sqlite_appends_share_one_writer_connection_and_a_busy_one_is_a_retryable_storage_error(
    sqlite_url: str, clock: Any, make_event: EventFactory
) -> None:
    """One pooled writer connection keeps SQLite's page cache from multiplying (bench/: server memory flat). While
    something else holds it past the wait, an append fails as STORAGE_UNAVAILABLE and appends nothing; once it is
    free, the same events append."""
    from ledger.errors import StorageError
    from storage.sql import SqlStore

    store = SqlStore(sqlite_url, clock=clock)
    try:
        ledger = Ledger(store, clock=clock)
        assert store.writer.pool.size() == 1  # type: ignore[attr-defined]  # QueuePool
        store.writer.pool._timeout = 0.2  # type: ignore[attr-defined]  # the 30 s wait, shortened for the test
        events = [make_event()]
        held = store.writer.connect()
        try:
            with pytest.raises(StorageError, match="no database connection became free in time"):
                ledger.append_events(events)
        finally:
            held.close()
        [appended] = ledger.append_events(events)
        assert (appended.sequence, appended.duplicate) == (0, False)  # the refused attempt appended nothing
    finally:
        store.close()


def test_reads_in_a_snapshot_share_one_connection_and_see_one_state(ledger: Ledger, make_event: EventFactory) -> None:
    """A dispute lookup's reads run in SqlStore.snapshot(): an append committed meanwhile shows up in none of them
    (it is in all of the next lookup's), and the rollups refuse to catch up inside one, since the snapshot could not
    see what they write."""
    from ledger.log.entry import org_log_id
    from storage.sql.rollups import rollup_follower

    store: Any = ledger.store
    first = make_event(event_id="e-before")
    ledger.append_events([first])
    log_id = org_log_id(first["org_id"])
    with store.snapshot():
        assert store.head(log_id).size == 1
        with store.reading() as conn, store.reading() as same:
            assert conn is same  # one connection for every read inside
        ledger.append_events([make_event(event_id="e-during")])  # on the writer, committed at once
        assert store.head(log_id).size == 1
        assert [e.sequence for e in store.entries_at(log_id, [0, 1])] == [0]
        with pytest.raises(RuntimeError, match=r"before SqlStore\.snapshot"):
            rollup_follower(store).catch_up(first["org_id"], ledger.price_history(), None)  # type: ignore[arg-type]
    assert store.head(log_id).size == 2
    assert [e.sequence for e in store.entries_at(log_id, [0, 1])] == [0, 1]


def test_a_session_reads_on_one_connection_each_read_seeing_what_is_committed(
    ledger: Ledger, make_event: EventFactory
) -> None:
    """A lookup runs in SqlStore.session(): one connection, no transaction held between reads, so the rollups'
    catch-up can run in it and the snapshot opened after it sees what the catch-up wrote, on the same connection."""
    from ledger.log.entry import org_log_id
    from storage.sql.rollups import rollup_follower

    store: Any = ledger.store
    first = make_event(event_id="e-1")
    ledger.append_events([first])
    org_id, log_id = first["org_id"], org_log_id(first["org_id"])
    with store.session(), store.reading() as conn:
        assert store.head(log_id).size == 1
        ledger.append_events([make_event(event_id="e-2")])
        assert store.head(log_id).size == 2  # a session holds no snapshot
        assert not store.in_snapshot()
        follower = rollup_follower(store)
        assert follower.catch_up(org_id, ledger.price_history(), ledger.account_history(org_id).plans()) == 2
        with store.snapshot(), store.reading() as inside:
            assert inside is conn
            assert store.in_snapshot()
            # SQLite fixes a deferred transaction's view at its first read: read before the append lands.
            assert store.head(log_id).size == 2
            ledger.append_events([make_event(event_id="e-3")])
            assert store.head(log_id).size == 2
        assert store.head(log_id).size == 3


def test_the_migrated_schema_is_the_one_the_code_declares(ledger: Ledger) -> None:
    """Alembic's own comparison of the migrated database with storage.sql.schema: every table, column and
    index the code reads through (partial indexes included) exists as declared, on both dialects."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from storage.sql.schema import metadata

    store: Any = ledger.store
    with store.writer.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
        indexes = {
            name
            for (name,) in conn.execute(
                text(
                    "SELECT name FROM sqlite_master WHERE type = 'index'"
                    if conn.dialect.name == "sqlite"
                    else "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
                )
            )
        }
    assert differences == []
    assert {"ix_rollup_storage_endpoint", "ix_rollup_storage_long", "ix_rollup_request_spans_start"} <= indexes


def test_entries_of_several_kinds_are_read_from_the_kind_index_not_by_walking_the_log(
    ledger: Ledger, make_event: EventFactory
) -> None:
    """The period closer reads an org's books (accounts, credits, invoices...) five times a pass, and dispute
    lookups read them too. They are a few entries among the log's events: the read must walk ix_entries_kind. On
    SQLite, never analyzed, and in PostgreSQL's generic plan made before the first ANALYZE, the primary key's order
    by sequence tempted the planner into filtering every entry of the log (issue #26)."""
    store = ledger.store
    ledger.append_events([make_event() for _ in range(20)])
    books = [NewEntry("org/acme", kind, b'{"n": %d}' % n, IndexColumns()) for n, kind in enumerate(_SOME_BOOK_KINDS)]
    appended = store.append(books)
    params = {"log_id": "org/acme", "kinds": [EntryKind.ADJUSTMENT.value, EntryKind.CREDIT.value]}
    compiled = _ENTRIES_OF_KIND._compile(store.reader.dialect)
    sql, arguments = compiled.sql(params), compiled.arguments(params)
    if store.dialect == "sqlite":
        with store.reader.connect() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            plan = " / ".join(str(row[3]) for row in cursor.execute("EXPLAIN QUERY PLAN " + sql, arguments))
    else:
        with psycopg.connect(psycopg_url(store.url), autocommit=True) as conn:
            assert conn.execute("SELECT reltuples FROM pg_class WHERE relname = 'entries'").fetchone() == (-1,)
            conn.execute("SET plan_cache_mode = force_generic_plan")
            plan = " / ".join(row[0] for row in conn.execute("EXPLAIN " + sql, arguments, prepare=True))
    assert "ix_entries_kind" in plan, plan
    found = store.entries_of_kind("org/acme", params["kinds"])
    wanted = [a.sequence for a, b in zip(appended, books, strict=True) if b.kind.value in params["kinds"]]
    assert [entry.sequence for entry in found] == wanted == sorted(wanted)
    assert len(wanted) == 3


_SOME_BOOK_KINDS = [EntryKind.CREDIT, EntryKind.ACCOUNT, EntryKind.ADJUSTMENT, EntryKind.CREDIT]
