"""Issue #26: group commit on both stores, each caller answered with exactly its own entries and errors (R24),
and admission control that queues briefly before it refuses."""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.ledger_client import LedgerClient
from ledger.errors import EventConflict, LogMoved
from ledger.intake import Ledger
from ledger.log.entry import EntryKind, canonical_body
from ledger.ports import IndexColumns, NewEntry
from server.app import start_server
from storage.sql import group_commit
from storage.sql.group_commit import CommitLane, CommitLanes, QueuedAppend
from storage.sql.store import SqlStore
from tests.conftest import EventFactory, FixedClock


def _commits(store: SqlStore) -> Callable[[], int]:
    """How many append transactions the store has committed since this call (SqlStore.appends_committed: SQLite's
    plain groups commit on the driver's connection, which SQLAlchemy's commit event does not see)."""
    start = store.appends_committed
    return lambda: store.appends_committed - start


@contextmanager
def _lane_blocked(url: str) -> Iterator[Callable[[], None]]:
    """Another session holding what the first append needs (SQLite's write lock; PostgreSQL: org/acme's head row),
    so that the appends arriving meanwhile queue behind it; the context yields the function that releases it."""
    if url.startswith("sqlite"):
        holder: Any = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
    else:
        holder = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
        holder.execute("SELECT size FROM log_heads WHERE log_id = 'org/acme' FOR UPDATE")
    released = threading.Event()

    def release() -> None:
        if not released.is_set():
            released.set()
            holder.rollback() if not url.startswith("sqlite") else holder.execute("ROLLBACK")

    try:
        yield release
    finally:
        release()
        holder.close()


def _event_entry(ledger: Ledger, raw: dict[str, Any]) -> list[NewEntry]:
    return ledger.event_entries([raw])


def test_r24_appends_queued_behind_a_commit_share_the_next_one_each_with_its_own_results_and_errors(
    ledger: Ledger, db_url: str, make_event: EventFactory
) -> None:
    store = ledger.store
    assert isinstance(store, SqlStore)
    first = make_event(event_id="first")
    kept = make_event(event_id="kept")
    ledger.append_events([first, kept])  # org/acme's head exists; `kept` is in the log (R24 duplicates below)
    commits = _commits(store)
    # SQLite's one lane groups every org's appends; PostgreSQL's lane is org/acme's, the head held below.
    orgs = ["acme"] if db_url.startswith("postgresql") else ["acme", "beta", "gamma"]
    plain = [make_event(event_id=f"plain-{i}", org_id=orgs[i % len(orgs)]) for i in range(8)]
    jobs: dict[str, Callable[[], Any]] = {
        f"plain-{i}": functools.partial(store.append, _event_entry(ledger, e)) for i, e in enumerate(plain)
    }
    jobs["duplicate"] = lambda: store.append(_event_entry(ledger, kept))
    jobs["conflict"] = lambda: store.append(_event_entry(ledger, {**kept, "endpoint_id": "ep-other"}))
    jobs["moved"] = lambda: store.append(
        _event_entry(ledger, make_event(event_id="conditional")), expected_sizes={"org/acme": 1}
    )
    answers: dict[str, Any] = {}

    def run(name: str) -> None:
        try:
            answers[name] = jobs[name]()
        except Exception as err:  # the caller's own error is its answer
            answers[name] = err

    with _lane_blocked(db_url) as release:
        # The first append takes the lane and waits for the lock; the rest queue behind it.
        threads = [threading.Thread(target=run, args=("plain-0",))]
        threads[0].start()
        time.sleep(0.3)
        threads += [threading.Thread(target=run, args=(name,)) for name in jobs if name != "plain-0"]
        for thread in threads[1:]:
            thread.start()
        time.sleep(0.5)
        assert not answers  # nothing is answered before its commit
        release()
        for thread in threads:
            thread.join(30)
    # The first append alone, then one group for the other ten (with its conflict, retried alone in savepoints).
    assert commits() == 2
    assert isinstance(answers["conflict"], EventConflict) and answers["conflict"].sequence == 1
    assert isinstance(answers["moved"], LogMoved)
    [duplicate] = answers["duplicate"]
    assert duplicate.duplicate and (duplicate.log_id, duplicate.sequence) == ("org/acme", 1)
    for i, raw in enumerate(plain):
        [appended] = answers[f"plain-{i}"]
        assert not appended.duplicate and appended.log_id == f"org/{raw['org_id']}"
        assert ledger.entry(appended.log_id, appended.sequence).body_json()["event_id"] == raw["event_id"]
    # Neither the conflict nor the conditional append landed.
    assert store.head("org/acme").size == 2 + sum(1 for raw in plain if raw["org_id"] == "acme")


def test_a_group_without_failures_commits_once_and_answers_each_in_its_own_order(
    ledger: Ledger, db_url: str, make_event: EventFactory
) -> None:
    store = ledger.store
    assert isinstance(store, SqlStore)
    ledger.append_events([make_event(event_id="first")])
    commits = _commits(store)
    batches = [[make_event(event_id=f"b{b}-{i}") for i in range(b + 1)] for b in range(6)]
    answers: dict[int, Any] = {}
    with _lane_blocked(db_url) as release:
        threads = [
            threading.Thread(target=lambda b=b: answers.update({b: ledger.append_events(batches[b])})) for b in range(6)
        ]
        threads[0].start()
        time.sleep(0.3)
        for thread in threads[1:]:
            thread.start()
        time.sleep(0.5)
        release()
        for thread in threads:
            thread.join(30)
    assert commits() == 2
    for b, batch in enumerate(batches):
        got = [ledger.entry(r.log_id, r.sequence).body_json()["event_id"] for r in answers[b]]
        assert got == [e["event_id"] for e in batch]
        sequences = [r.sequence for r in answers[b]]
        assert sequences == list(range(sequences[0], sequences[0] + len(batch)))  # each batch lands whole, in order


def test_r12_a_price_book_queued_in_a_group_still_meets_its_guard(ledger: Ledger, make_event: EventFactory) -> None:
    """A system-log entry (R12) in a group goes through the same append, its guard included."""
    store = ledger.store
    assert isinstance(store, SqlStore)
    body = {"idempotency_key": "x", "note": "n", "effective_from": "2026-10-01T00:00:00.000000Z", "rates": {}}
    entry = NewEntry("system", EntryKind.PRICE_BOOK, canonical_body(body), IndexColumns(event_id="x"))
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(ledger.append_events([make_event(event_id="g")]))),
        threading.Thread(target=lambda: results.append(store.append([entry]))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 2 and store.head("system").size == 2


_EVENT = st.fixed_dictionaries(
    {
        "org": st.sampled_from(["acme", "beta", "gamma"]),
        "kind": st.sampled_from(["fresh", "fresh", "fresh", "duplicate", "conflict", "invalid"]),
    }
)


@pytest.mark.parametrize("store_kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(callers=st.lists(st.lists(_EVENT, min_size=1, max_size=4), min_size=2, max_size=12))
def test_r24_property_concurrent_callers_each_get_exactly_their_own_results(
    store_kind: str, tmp_path_factory: pytest.TempPathFactory, callers: list[list[dict[str, str]]]
) -> None:
    """Concurrent AppendEvents calls over separate connections: a caller whose batch is good gets its own events'
    entries in its order (a duplicate: the original entry, R24); a caller whose batch holds a conflicting or a
    malformed event gets its own error and appends nothing; no caller's fault fails another's."""
    if store_kind == "sqlite":
        url, drop = f"sqlite:///{tmp_path_factory.mktemp('group')}/ledger.db", None
    else:
        from tests.conftest import _pg_database

        drop = contextmanager(_pg_database)()
        url = drop.__enter__()
    running = start_server(url, clock=FixedClock())
    target = f"127.0.0.1:{running.port}"
    try:
        seed = {org: _raw(f"seed-{org}", org) for org in ("acme", "beta", "gamma")}
        with LedgerClient(target, retries=0) as client:
            client.append_events(list(seed.values()))
        batches = [
            [
                _raw(f"c{c}-{i}", e["org"])
                if e["kind"] == "fresh"
                else seed[e["org"]]
                if e["kind"] == "duplicate"
                else {**seed[e["org"]], "endpoint_id": "ep-conflict"}
                if e["kind"] == "conflict"
                else {**_raw(f"c{c}-{i}", e["org"]), "instance_type": "NO-SUCH-GPU"}  # R11: unpriced
                for i, e in enumerate(events)
            ]
            for c, events in enumerate(callers)
        ]
        answers: dict[int, Any] = {}
        start = threading.Barrier(len(batches))

        def call(c: int) -> None:
            with LedgerClient(target, retries=0) as own:  # a connection of its own
                start.wait()
                try:
                    answers[c] = own.append_events(batches[c])
                except grpc.RpcError as err:
                    answers[c] = err

        threads = [threading.Thread(target=call, args=(c,)) for c in range(len(batches))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        store = running.ledger.store
        for c, events in enumerate(callers):
            kinds = {e["kind"] for e in events}
            if "invalid" in kinds:
                assert isinstance(answers[c], grpc.RpcError)
                assert answers[c].code() is grpc.StatusCode.INVALID_ARGUMENT
            elif "conflict" in kinds:
                assert isinstance(answers[c], grpc.RpcError)
                assert answers[c].code() is grpc.StatusCode.ALREADY_EXISTS
            else:
                results = answers[c]
                assert len(results) == len(events)
                for raw, result in zip(batches[c], results, strict=True):
                    entry = store.get_entry(result.log_id, result.sequence)
                    assert entry.body_json()["event_id"] == raw["event_id"]
                    assert result.entry_hash == entry.entry_hash
                    assert result.duplicate == raw["event_id"].startswith("seed-")
        # Exactly the good callers' fresh events were appended, each once.
        good = [b for c, b in enumerate(batches) if not {e["kind"] for e in callers[c]} & {"invalid", "conflict"}]
        fresh = {e["event_id"] for b in good for e in b if not e["event_id"].startswith("seed-")}
        stored = {
            entry.body_json()["event_id"]
            for org in ("acme", "beta", "gamma")
            for entry in store.iter_entries(f"org/{org}")
            if entry.kind is EntryKind.EVENT
        }
        assert stored == fresh | {f"seed-{org}" for org in ("acme", "beta", "gamma")}
    finally:
        running.stop(grace=None)
        if drop is not None:
            drop.__exit__(None, None, None)


def _raw(event_id: str, org: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "org_id": org,
        "endpoint_id": "ep-1",
        "workload_id": "wl-1",
        "workload_kind": "SERVING",
        "instance_type": "A100",
        "type": "REQUEST_STARTED",
        "request_id": event_id,
        "occurred_at": "2026-10-05T09:00:00Z",
    }


def test_appends_beyond_the_bound_queue_and_are_refused_only_when_the_queue_is_full_or_waited_out(
    tmp_path: Path, make_event: EventFactory
) -> None:
    path = tmp_path / "ledger.db"
    running = start_server(
        f"sqlite:///{path}", clock=FixedClock(), max_inflight=1, append_queue=1, append_queue_seconds=3.0
    )
    target = f"127.0.0.1:{running.port}"
    answers: dict[str, Any] = {}

    def call(name: str, event: dict[str, Any], timeout: float = 30.0) -> None:
        with LedgerClient(target, retries=0, timeout=timeout) as client:
            try:
                answers[name] = client.append_events([event])
            except grpc.RpcError as err:
                answers[name] = err

    try:
        with LedgerClient(target, retries=0) as client:
            client.append_events([make_event()])
        with _lane_blocked(f"sqlite:///{path}") as release:
            holder = threading.Thread(target=call, args=("holder", make_event()))
            holder.start()
            time.sleep(0.3)
            queued = threading.Thread(target=call, args=("queued", make_event()))
            queued.start()
            time.sleep(0.3)
            # The slot is held and the queue of one is full: the next is refused at once, naming both bounds.
            started = time.monotonic()
            call("refused", make_event())
            assert time.monotonic() - started < 1.0
            refused = answers["refused"]
            assert isinstance(refused, grpc.RpcError) and refused.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "queue of 1" in (refused.details() or "")
            release()
            holder.join(30)
            queued.join(30)
        # The queued append waited for the slot rather than being refused.
        assert [r.sequence for r in answers["holder"]] == [1] and [r.sequence for r in answers["queued"]] == [2]
        # A queued append waits no longer than its own deadline.
        with _lane_blocked(f"sqlite:///{path}") as release:
            holder = threading.Thread(target=call, args=("holder2", make_event()))
            holder.start()
            time.sleep(0.3)
            started = time.monotonic()
            call("short", make_event(), timeout=0.5)
            assert time.monotonic() - started < 2.0
            short = answers["short"]
            assert isinstance(short, grpc.RpcError)
            assert short.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED)
            release()
            holder.join(30)
    finally:
        running.stop(grace=None)


def test_postgresql_lanes_are_given_to_logs_fewest_first_and_a_log_keeps_its_lane() -> None:
    """Four orgs' logs spread over four lanes (a hash of their names had put the benchmark's four on two), and every
    append to one log, whatever else it writes, meets that log's appends in one lane's groups."""
    lanes = CommitLanes(4)

    def entry(log_id: str) -> NewEntry:
        body = canonical_body({"event_id": log_id})
        return NewEntry(log_id, EntryKind.EVENT, body, IndexColumns(None, None, None, None, None, None))

    first = [lanes.lane_of([entry(f"org/bench-{k}")]) for k in range(4)]
    assert len({id(lane) for lane in first}) == 4
    assert lanes.lane_of([entry("org/bench-2")]) is first[2]
    assert lanes.lane_of([entry("org/bench-3"), entry("org/bench-1")]) is first[1]  # the first log, sorted
    single = CommitLanes(1)  # SQLite: one write lock, one lane for every log
    assert single.lane_of([entry("org/a")]) is single.lane_of([entry("org/b")])


class _Commits:
    """A lane's commit function that records each group (by entry log IDs) and can be held at its next call."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()

    def __call__(self, group: list[QueuedAppend]) -> None:
        self.entered.set()
        assert self.hold.wait(30)
        self.groups.append([queued.entries[0].log_id for queued in group])
        for queued in group:
            queued.result, queued.done = [], True


def _queued(name: str) -> QueuedAppend:
    body = canonical_body({"event_id": name})
    return QueuedAppend([NewEntry(name, EntryKind.EVENT, body, IndexColumns(None, None, None, None, None, None))])


def _appending(lane: CommitLane, commits: _Commits, name: str) -> threading.Thread:
    thread = threading.Thread(target=lane.append, args=(_queued(name), commits))
    thread.start()
    return thread


def _queue_length(lane: CommitLane, length: int) -> None:
    deadline = time.monotonic() + 10
    while len(lane._queue) < length:
        assert time.monotonic() < deadline
        time.sleep(0.001)


def _commit_a_then_b_and_c(lane: CommitLane, commits: _Commits) -> None:
    """a leads and is held in its commit while b and c queue; then b leads a group of the two: the lane's last
    group held two appends."""
    commits.hold.clear()
    commits.entered.clear()
    first = _appending(lane, commits, "a")
    assert commits.entered.wait(10)
    queued = [_appending(lane, commits, name) for name in ("b", "c")]
    _queue_length(lane, 2)
    commits.hold.set()
    for thread in [first, *queued]:
        thread.join(10)
        assert not thread.is_alive()
    assert commits.groups[-2:] == [["a"], ["b", "c"]]


def test_a_leader_gathers_as_many_appends_as_the_last_group_held_and_a_lone_caller_never_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Gathering (storage/sql/group_commit.py): after a group of two, the next leader waits for a second append
    and commits both at once; a caller alone, whose groups hold one append, never waits, however long the wait."""
    monkeypatch.setattr(group_commit, "GATHER_SECONDS", 60.0)  # a wait would show as a hang, not as a slow test
    lane, commits = CommitLane(), _Commits()
    began = time.monotonic()
    for k in range(20):
        lane.append(_queued(f"alone-{k}"), commits)
    assert commits.groups == [[f"alone-{k}"] for k in range(20)] and time.monotonic() - began < 30
    _commit_a_then_b_and_c(lane, commits)
    leader = _appending(lane, commits, "d")  # the last group held two: d waits for a second append
    _queue_length(lane, 1)
    time.sleep(0.2)
    assert commits.groups[-1] == ["b", "c"] and leader.is_alive()
    joining = _appending(lane, commits, "e")
    for thread in (leader, joining):
        thread.join(10)
        assert not thread.is_alive()
    assert commits.groups[-1] == ["d", "e"]


def test_a_gathering_leader_commits_what_it_has_once_the_wait_is_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(group_commit, "GATHER_SECONDS", 0.05)
    lane, commits = CommitLane(), _Commits()
    _commit_a_then_b_and_c(lane, commits)
    began = time.monotonic()
    alone = _appending(lane, commits, "d")  # nobody joins: d waits out the gathering, then commits alone
    alone.join(10)
    assert not alone.is_alive() and time.monotonic() - began >= 0.05
    assert commits.groups == [["a"], ["b", "c"], ["d"]]


def test_the_sqlite_writer_keeps_statement_journals_in_memory(tmp_path: Path) -> None:
    """A group's multi-row INSERT journals the pages it changes; on disk that was a temp file per commit."""
    store = SqlStore(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        pooled = store.writer.raw_connection()
        try:
            cursor = pooled.driver_connection.cursor()  # type: ignore[union-attr]
            assert cursor.execute("PRAGMA temp_store").fetchone() == (2,)  # 2: MEMORY
        finally:
            pooled.close()
    finally:
        store.close()
