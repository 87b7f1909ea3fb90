"""The production store on PostgreSQL: append-only by privilege, many server processes, bounded in-flight appends."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from client.ledger_client import CHANNEL_OPTIONS, LedgerClient
from ledger.intake import Ledger
from ledger.issued_cuts import PriceVersionBeforeCut
from ledger.log.audit import verify
from server.app import start_server
from server.limits import REASON
from storage.sql import SqlStore
from storage.sql.store import _INSERT_COLUMNS, _PG_EXISTING, _PG_ROWS_PER_STATEMENT
from tests.billing_support import Desk
from tests.conftest import PG_ADMIN_URL
from tests.test_crash_safety import (
    Batch,
    ServerProcess,
    psycopg_url,
    stored_events,
    usage_event,
)

APP_ROLE = "usage_ledger_app"
Answer = list[tuple[str, int, bytes, bool]]


# -- append-only, enforced by the database -----------------------------------------------------------------------


def test_entries_refuse_changes_through_plain_sql_even_for_the_owner_r23(db_url: str) -> None:
    store = SqlStore(db_url)
    try:
        Ledger(store).append_events([usage_event("e-1", "acme")])
        statements = ["UPDATE entries SET kind = 'STATE'", "DELETE FROM entries WHERE log_id = 'org/acme'"]
        if store.dialect == "postgresql":
            statements.append("TRUNCATE entries")  # SQLite has no TRUNCATE: its DELETE FROM is refused above
        for statement in statements:
            # The owner (here a superuser) is refused too: the 0001 triggers fire for every role.
            with pytest.raises(DBAPIError, match="append-only"), store.writer.begin() as conn:
                conn.execute(text(statement))
        assert verify(store).ok
        assert store.head("org/acme").size == 1
    finally:
        store.close()


@pytest.fixture
def app_url(pg_url: str) -> Iterator[str]:
    """A LOGIN role that is a member of usage_ledger_app, as docs/scaling.md tells operators to run the server."""
    owner = SqlStore(pg_url)  # migrations run as the owner, creating usage_ledger_app and its grants
    owner.close()
    login = f"ledger_app_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{login}" LOGIN IN ROLE {APP_ROLE}')
    try:
        yield make_url(pg_url).set(username=login).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            # Roles are cluster-wide: never leave one behind, even when the test failed.
            conn.execute(f'DROP ROLE IF EXISTS "{login}"')


@pytest.mark.postgres
def test_app_role_has_exactly_append_and_read_on_entries(app_url: str) -> None:
    with psycopg.connect(psycopg_url(app_url)) as conn:
        grants: dict[str, set[str]] = defaultdict(set)
        for table, privilege in conn.execute(
            "SELECT table_name, privilege_type FROM information_schema.role_table_grants "
            "WHERE grantee = %s AND table_name IN ('entries', 'log_heads')",
            (APP_ROLE,),
        ):
            grants[table].add(privilege)
        can_login = conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone()
    assert grants == {"entries": {"SELECT", "INSERT"}, "log_heads": {"SELECT", "INSERT", "UPDATE"}}
    assert can_login == (False,)


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("statement", "refusal"),
    [
        ("UPDATE entries SET kind = 'STATE'", "permission denied for table entries"),
        ("DELETE FROM entries", "permission denied for table entries"),
        ("TRUNCATE entries", "permission denied for table entries"),
        # The ways around the triggers that a table owner or superuser has: the app role has neither.
        ("ALTER TABLE entries DISABLE TRIGGER entries_append_only", "must be owner of table entries"),
        ("SET session_replication_role = replica", "permission denied to set parameter"),
    ],
)
def test_server_as_app_role_appends_but_the_database_refuses_any_change_to_entries(
    app_url: str, statement: str, refusal: str
) -> None:
    running = start_server(app_url, "127.0.0.1:0")  # a real server logged in as the app role
    try:
        with LedgerClient(f"127.0.0.1:{running.port}", retries=0) as client:
            results = client.append_events([usage_event(f"e-{i}", "acme") for i in range(3)])
            # The server committed that head, so this goes on the kept head: migration 0013's function, as the role.
            results += client.append_events([usage_event("e-kept", "acme")])
        assert [r.sequence for r in results] == [0, 1, 2, 3]
    finally:
        running.stop(grace=None)
    store = SqlStore(app_url)
    try:
        Ledger(store).append_events([usage_event("e-3", "acme")])  # appends through SqlStore work too
        with pytest.raises(DBAPIError, match=refusal), store.writer.begin() as conn:
            conn.execute(text(statement))
        report = verify(store)
        assert report.ok, report.first_failure()
        assert store.head("org/acme").size == 5
    finally:
        store.close()


# -- many writers ------------------------------------------------------------------------------------------------


def writer_plans(threads: int, own: int, shared: int, size: int) -> list[list[Batch]]:
    """Every thread writes the two hot orgs and its own org; every thread also sends each shared batch.

    The shared batches come at the same point of every thread's plan, so the copies reach different servers at
    about the same moment: the idempotency check (R24) has to hold across processes, not only inside one.
    """
    shared_batches = [
        Batch(f"shared-{j}", tuple(usage_event(f"shared-{j}-e{i}", f"hot-{i % 2}") for i in range(size)))
        for j in range(shared)
    ]
    plans = []
    for t in range(threads):
        plan = []
        for b in range(own):
            name = f"t{t}-b{b:02d}"
            orgs = ("hot-0", "hot-1", f"solo-{t}")
            plan.append(Batch(name, tuple(usage_event(f"{name}-e{i}", orgs[i % 3]) for i in range(size))))
            if b % 2 and b // 2 < shared:
                plan.append(shared_batches[b // 2])
        plans.append(plan)
    return plans


def run_writers(targets: list[str], plans: list[list[Batch]]) -> dict[str, list[tuple[str, Answer]]]:
    """Send every plan from its own thread; the k-th request of thread t goes to server (t + k) mod n."""
    answers: dict[str, list[tuple[str, Answer]]] = defaultdict(list)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def writer(t: int, plan: list[Batch]) -> None:
        clients = [LedgerClient(target, timeout=10.0) for target in targets]
        try:
            for k, batch in enumerate(plan):
                target = (t + k) % len(targets)
                results = clients[target].append_events(batch.events)
                answer = [(r.log_id, r.sequence, r.entry_hash, r.duplicate) for r in results]
                with lock:
                    answers[batch.name].append((targets[target], answer))
        except BaseException as err:
            errors.append(err)
        finally:
            for client in clients:
                client.close()

    threads = [threading.Thread(target=writer, args=(t, plan), daemon=True) for t, plan in enumerate(plans)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=25)
    assert not any(thread.is_alive() for thread in threads), "a writer did not finish in time"
    assert not errors, errors
    return answers


def check_writers(database_url: str, plans: list[list[Batch]], answers: dict[str, list[tuple[str, Answer]]]) -> None:
    batches = {batch.name: batch for plan in plans for batch in plan}
    store = SqlStore(database_url)
    try:
        report = verify(store)
        stored = stored_events(store)  # also fails if any event_id is stored twice in its log
    finally:
        store.close()
    assert report.ok, report.first_failure()
    assert {v.log_id for v in report.logs} >= {"org/hot-0", "org/hot-1", "org/solo-0"}
    assert set(stored) == {key for batch in batches.values() for key in batch.keys}
    for name, batch in batches.items():
        sent = answers[name]
        # Whoever answered, and whether first or not, every answer names the one stored entry (R24).
        for _, answer in sent:
            assert [(log, seq, h) for log, seq, h, _ in answer] == [(k[0], *stored[k]) for k in batch.keys]
        # A batch is appended wholly by exactly one request; every other copy is answered as duplicates.
        appended = [answer for _, answer in sent if not any(dup for *_, dup in answer)]
        duplicated = [answer for _, answer in sent if all(dup for *_, dup in answer)]
        assert len(appended) == 1 and len(duplicated) == len(sent) - 1, f"batch {name} split across requests"


def _conflicts_everywhere(targets: list[str], event: dict[str, Any]) -> None:
    """The same event_id with other content is refused by every server, whichever appended the original."""
    for target in targets:
        with LedgerClient(target, retries=0) as client, pytest.raises(grpc.RpcError) as refused:
            client.append_events([{**event, "endpoint_id": "ep-other"}])
        assert refused.value.code() is grpc.StatusCode.ALREADY_EXISTS


@pytest.mark.postgres
def test_stores_opened_together_on_an_empty_database_migrate_it_once(pg_url: str) -> None:
    """Four servers starting at once on a new database: each migrates in a transaction behind an advisory lock, so
    one creates the schema, the others find it current, and all four append (the genesis price book once, R11)."""
    barrier = threading.Barrier(4)
    opened: list[SqlStore] = []
    failures: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            store = SqlStore(pg_url)
            Ledger(store)
            opened.append(store)
        except BaseException as err:
            failures.append(err)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    try:
        assert failures == [] and len(opened) == 4
        with opened[0].reader.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
            assert conn.execute(text("SELECT count(*) FROM entries WHERE log_id = 'system'")).scalar_one() == 1
    finally:
        for store in opened:
            store.close()


def test_a_pooled_connection_the_database_dropped_is_replaced_before_the_next_read(pg_url: str) -> None:
    """The pool pings a connection only when it sat idle (storage.sql.store._ping_when_idle): one that
    PostgreSQL terminated while it waited in the pool is found at checkout and replaced, and the read succeeds."""
    store = SqlStore(pg_url)
    try:
        Ledger(store)  # the genesis price book (R11)
        with store.reader.connect() as conn:
            dropped = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (dropped,)).fetchone() == (True,)
        time.sleep(0.6)  # past _PING_AFTER_IDLE_SECONDS
        assert store.head("system").size == 1
        with store.reader.connect() as conn:
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != dropped
    finally:
        store.close()


def test_a_session_reads_outside_any_transaction_again_after_a_snapshot(pg_url: str) -> None:
    """A dispute lookup whose rollups are behind reads in a snapshot, catches up, then reads in a second snapshot,
    all in one session: after the first snapshot the session's reads hold no transaction open between them, and
    the second snapshot can begin (ledger.dispute.reconstruct_charges)."""
    store = SqlStore(pg_url)
    try:
        Ledger(store)
        with store.session():
            with store.snapshot():
                assert store.head("system").size == 1
            assert store.head("system").size == 1
            with store.reading() as conn:
                status = conn.connection.driver_connection.pgconn.transaction_status  # type: ignore[union-attr]
            assert status == psycopg.pq.TransactionStatus.IDLE
            with store.snapshot():
                assert store.head("system").size == 1
    finally:
        store.close()


def test_the_r24_lookup_seeks_the_event_id_index_per_key_whatever_the_plan_cache_holds(pg_url: str) -> None:
    """The idempotency lookup (R24) runs in every append's transaction. psycopg prepares it after a few runs, and
    PostgreSQL then keeps one generic plan until the table is next analyzed. Made on a fresh database (never
    analyzed), that plan must still seek the R24 index (log id, event id) for each key: as a plain join it hashed
    the keys and scanned the whole table, and as `log_id = ... AND event_id = ...` it probed
    ix_entries_workload_time on the log id alone and filtered every entry of the log (issue #26)."""
    store = SqlStore(pg_url)
    try:
        ledger = Ledger(store)  # the system log's genesis price book: an entry without an event id
        ledger.append_events([usage_event(f"e-{n}", "acme") for n in range(3)])
        ledger.append_events([usage_event("e-1", "zeta")])
        logs = ["org/acme", "org/acme", "org/acme", "org/acme", "system", "org/zeta", "org/none"]
        event_ids = ["e-1", "e-missing", "e-0", "zzz-past-the-last", "e-1", "e-1", "e-1"]
        keys = (json.dumps(logs), json.dumps(event_ids))
        with psycopg.connect(psycopg_url(pg_url), autocommit=True) as conn:
            never_analyzed = conn.execute("SELECT reltuples FROM pg_class WHERE relname = 'entries'").fetchone()
            assert never_analyzed == (-1,)  # the plan below is made knowing nothing of the table, as in production's
            conn.execute("SET plan_cache_mode = force_generic_plan")  # first minutes
            plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + _PG_EXISTING, keys, prepare=True))
            found = conn.execute(_PG_EXISTING, keys, prepare=True).fetchall()
        assert "Index Scan using ux_entries_event_id on entries" in plan, plan
        assert "event_id" in plan.split("Index Cond:", 1)[1].splitlines()[0], plan  # the seek's key, not a filter
        assert "Seq Scan" not in plan and "Hash" not in plan and "Sort" not in plan, plan
        assert sorted((row[0], row[1], row[2]) for row in found) == [
            ("org/acme", "e-0", 0),
            ("org/acme", "e-1", 1),
            ("org/zeta", "e-1", 0),
        ]
    finally:
        store.close()


def test_four_server_processes_on_one_database_keep_every_chain_linear_r24(pg_url: str, tmp_path: Path) -> None:
    store = SqlStore(pg_url)
    Ledger(store)
    store.close()
    servers = [ServerProcess(pg_url, tmp_path / f"server-{i}") for i in range(4)]
    try:
        for server in servers:
            server.launch()  # boot in parallel: each takes about a second of CPU
        for server in servers:
            server.wait_serving()
        targets = [server.target for server in servers]
        plans = writer_plans(threads=8, own=8, shared=4, size=10)
        answers = run_writers(targets, plans)
        check_writers(pg_url, plans, answers)
        for name, sent in answers.items():
            if name.startswith("shared-"):
                assert len({target for target, _ in sent}) > 1, "copies of a shared batch all went to one server"
        _conflicts_everywhere(targets, plans[0][0].events[0])
    finally:
        for server in servers:
            server.stop()
    check_writers(pg_url, plans, answers)  # the refused conflicts appended nothing


def test_threads_in_one_server_process_keep_every_chain_linear_r24(db_url: str) -> None:
    running = start_server(db_url, "127.0.0.1:0")
    try:
        targets = [f"127.0.0.1:{running.port}"]
        plans = writer_plans(threads=8, own=8, shared=4, size=10)
        answers = run_writers(targets, plans)
        _conflicts_everywhere(targets, plans[3][5].events[2])
    finally:
        running.stop(grace=None)
    check_writers(db_url, plans, answers)


# -- back-pressure -----------------------------------------------------------------------------------------------


class _StatusRecorder(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Records the status of every attempt, so the test can see the retries the client library hides."""

    def __init__(self) -> None:
        self.statuses: list[grpc.StatusCode] = []

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        outcome = continuation(details, request)
        self.statuses.append(outcome.code())
        return outcome


def _wait_for_lock_waiters(conn: psycopg.Connection[Any], count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
        if row is not None and row[0] >= count:
            return
        assert time.monotonic() < deadline, "the append never reached the locked head row"
        time.sleep(0.02)


@pytest.mark.postgres
def test_appends_beyond_max_inflight_are_refused_with_resource_exhausted_and_retried(
    pg_url: str, tmp_path: Path
) -> None:
    # No queue: the one slot's holder is blocked, so the next append is refused at once (a queue is tested in
    # tests/test_group_commit.py).
    server = ServerProcess(pg_url, tmp_path / "server", extra_args=("--max-inflight", "1", "--append-queue", "0"))
    server.start()
    blocker = psycopg.connect(psycopg_url(pg_url))  # a transaction of its own, standing in for a slow appender
    try:
        with LedgerClient(server.target, retries=0) as client:
            client.append_events([usage_event("acme-0", "acme")])
            # Hold org/acme's head row, as another process appending to it would: the next append must wait.
            blocker.execute("SELECT size FROM log_heads WHERE log_id = 'org/acme' FOR UPDATE")
            slow: dict[str, Any] = {}
            appender = threading.Thread(
                target=lambda: slow.update(results=client.append_events([usage_event("acme-1", "acme")])),
                daemon=True,
            )
            appender.start()
            with psycopg.connect(psycopg_url(pg_url), autocommit=True) as watcher:
                _wait_for_lock_waiters(watcher, 1)

            # The one slot is taken: another append, even for another org, is refused at once, not queued.
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as refused:
                client.append_events([usage_event("beta-0", "beta")])
            assert time.monotonic() - started < 2.0
            assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "limit of 1 concurrent appends" in (refused.value.details() or "")
            status = rpc_status.from_call(refused.value)
            assert status is not None
            info = error_details_pb2.ErrorInfo()
            assert any(d.Unpack(info) for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR))
            assert info.reason == REASON and info.metadata["max_inflight"] == "1" and info.metadata["queue"] == "0"
            assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)

            # Reads and health checks are not appends: they are still served while appends are at their limit.
            assert client.head("org/acme").size == 1
            with grpc.insecure_channel(server.target) as channel:
                health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING

            # The client library retries RESOURCE_EXHAUSTED with backoff and the same event IDs.
            recorder = _StatusRecorder()
            channel = grpc.intercept_channel(
                grpc.insecure_channel(server.target, options=list(CHANNEL_OPTIONS)), recorder
            )
            with LedgerClient(server.target, channel=channel, retries=8) as retrying:
                retried: dict[str, Any] = {}
                second = threading.Thread(
                    target=lambda: retried.update(results=retrying.append_events([usage_event("beta-0", "beta")])),
                    daemon=True,
                )
                second.start()
                deadline = time.monotonic() + 10
                while grpc.StatusCode.RESOURCE_EXHAUSTED not in recorder.statuses:
                    assert time.monotonic() < deadline, "the retrying client was never refused"
                    time.sleep(0.01)
                blocker.rollback()  # the slow appender finishes, freeing the slot
                appender.join(timeout=10)
                second.join(timeout=15)
                assert not appender.is_alive() and not second.is_alive()
            assert recorder.statuses[-1] is grpc.StatusCode.OK
            assert [r.sequence for r in slow["results"]] == [1]
            assert [(r.log_id, r.sequence, r.duplicate) for r in retried["results"]] == [("org/beta", 0, False)]
    finally:
        blocker.close()
        server.stop()
    store = SqlStore(pg_url)
    try:
        stored = stored_events(store)
        report = verify(store)
    finally:
        store.close()
    assert report.ok, report.first_failure()
    assert sorted(stored) == [("org/acme", "acme-0"), ("org/acme", "acme-1"), ("org/beta", "beta-0")]


@pytest.mark.postgres
def test_r12_the_guard_runs_as_the_app_role(app_url: str) -> None:
    # R12's guard locks invoice_cuts (SHARE) and the invoice append upserts it: both within the app role's grants.
    desk = Desk(app_url, "2026-09-30T00:00:00Z")
    try:
        desk.session("wl-a", "2026-09-30T10:00:00Z", "2026-09-30T11:00:00Z")
        desk.close("2026-10-01T00:00:00Z")
        assert len(desk.invoices()) == 1
        rates = {"B200": {"flex_per_second": "0.003", "active_per_second": "0.002"}}
        with pytest.raises(PriceVersionBeforeCut, match="R12"):
            desk.ledger.set_price_book({"effective_from": "2026-09-30T10:30:00Z", "rates": rates})
        book, _ = desk.ledger.set_price_book({"effective_from": "2026-10-01T00:00:00Z", "rates": rates})
        assert book.version > 0
    finally:
        desk.close_store()


def test_a_groups_inserts_stay_within_the_parameters_psycopg_caches_the_parse_of() -> None:
    """A pipelined group's rows go as INSERTs of _PG_ROWS_PER_STATEMENT rows: psycopg re-parses a query with more
    parameters than it caches at every execution (measured: 60 rows in one statement cost 2.8-3.2 ms of this
    process against 1.3 in threes). If psycopg's bound moves, this says so; groups of every size are covered by
    test_group_commit (a 20-row group on PostgreSQL lands whole and in order)."""
    from psycopg import _queries

    assert _PG_ROWS_PER_STATEMENT * len(_INSERT_COLUMNS) <= _queries.MAX_CACHED_STATEMENT_PARAMS
    assert (_PG_ROWS_PER_STATEMENT + 1) * len(_INSERT_COLUMNS) > _queries.MAX_CACHED_STATEMENT_PARAMS
