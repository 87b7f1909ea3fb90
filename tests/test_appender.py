"""Issue #26: the client library's batching appender against real servers on both stores (R24 retries)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import grpc
import pytest
from usageledger.v1 import ledger_pb2 as pb

from client.append_future import AppendFuture
from client.appender import AppenderClosed, BatchingAppender
from client.ledger_client import CHANNEL_OPTIONS, LedgerClient
from server.app import RunningServer, start_server
from tests.conftest import EventFactory, FixedClock

REPO = Path(__file__).resolve().parents[1]


class _Calls(grpc.UnaryUnaryClientInterceptor, grpc.StreamUnaryClientInterceptor):  # type: ignore[misc]
    """Records each RPC's method and how many events it carried."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        self.calls.append((details.method.rsplit("/", 1)[1], len(request.events)))
        return continuation(details, request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Iterator[Any]) -> Any:
        batches = list(requests)
        self.calls.append((details.method.rsplit("/", 1)[1], sum(len(b.events) for b in batches)))
        return continuation(details, iter(batches))


def _acknowledged(future: AppendFuture[pb.AppendResult | None]) -> pb.AppendResult:
    """An AppendEvents-transport future's result, already resolved."""
    result = future.result(timeout=0)
    assert result is not None
    return result


def _client(server: RunningServer, calls: _Calls, **kwargs: Any) -> LedgerClient:
    target = f"127.0.0.1:{server.port}"
    channel = grpc.intercept_channel(grpc.insecure_channel(target, options=list(CHANNEL_OPTIONS)), calls)
    return LedgerClient(target, channel=channel, **kwargs)


def test_r24_single_events_go_in_batches_and_each_future_holds_its_own_entry(
    server: RunningServer, make_event: EventFactory
) -> None:
    calls = _Calls()
    events = [make_event(org_id=f"org{i % 3}") for i in range(2500)]
    with _client(server, calls) as client:
        with BatchingAppender(client, max_batch=1000, max_delay=0.05) as appender:
            futures = [appender.append(e) for e in events]
        for raw, future in zip(events, futures, strict=True):
            result = _acknowledged(future)
            entry = server.ledger.entry(result.log_id, result.sequence)
            assert entry.body_json()["event_id"] == raw["event_id"] and entry.entry_hash == result.entry_hash
    # 2,500 events in three AppendEvents calls: two full batches and the rest, none over max_batch.
    assert [method for method, _ in calls.calls] == ["AppendEvents"] * len(calls.calls)
    assert sum(n for _, n in calls.calls) == 2500 and max(n for _, n in calls.calls) == 1000
    assert len(calls.calls) <= 4


def test_a_lone_event_is_sent_after_max_delay_and_flush_sends_at_once(
    server: RunningServer, make_event: EventFactory
) -> None:
    calls = _Calls()
    with _client(server, calls) as client, BatchingAppender(client, max_delay=0.2) as appender:
        started = time.monotonic()
        appender.append(make_event()).result(timeout=10)
        assert 0.15 <= time.monotonic() - started < 5.0
        slow = BatchingAppender(client, max_delay=60)
        future = slow.append(make_event())
        assert slow.flush(timeout=10) and future.done()
        slow.close()
        with pytest.raises(AppenderClosed):
            slow.append(make_event())


def test_a_future_cancelled_before_its_batch_is_taken_is_never_sent(
    server: RunningServer, make_event: EventFactory
) -> None:
    events = [make_event() for _ in range(3)]
    with LedgerClient(f"127.0.0.1:{server.port}") as client:
        appender = BatchingAppender(client, max_delay=60)
        futures = [appender.append(e) for e in events]
        assert futures[1].cancel() and futures[1].cancel() and futures[1].cancelled() and futures[1].done()
        assert appender.flush(timeout=10)
        assert not futures[0].cancel()  # acknowledged: its event is in the ledger
        appender.close()
    with pytest.raises(CancelledError):
        futures[1].result(timeout=0)
    with pytest.raises(CancelledError):
        futures[1].exception(timeout=0)
    assert [_acknowledged(futures[i]).sequence for i in (0, 2)] == [0, 1]
    stored = [server.ledger.entry("org/acme", seq).body_json()["event_id"] for seq in range(2)]
    assert server.ledger.store.head("org/acme").size == 2 and stored == [events[0]["event_id"], events[2]["event_id"]]


def test_futures_wait_time_out_and_call_back_as_concurrent_futures_do(
    server: RunningServer, make_event: EventFactory
) -> None:
    """Futures share their appender's wait: each of many waiting threads wakes with its own answer; a wait
    shorter than the batch delay times out; callbacks run once, a raising one stopping no other."""
    called: list[tuple[str, int]] = []

    def failing(_: object) -> None:
        raise RuntimeError("a caller's bug")

    with LedgerClient(f"127.0.0.1:{server.port}") as client, BatchingAppender(client, max_delay=0.3) as appender:
        futures = [appender.append(make_event()) for _ in range(8)]
        with pytest.raises(FutureTimeout):
            futures[0].result(timeout=0.01)
        assert not futures[0].done()
        futures[0].add_done_callback(failing)
        futures[0].add_done_callback(lambda f: called.append(("before", _acknowledged(f).sequence)))
        answers: dict[int, int] = {}
        waiters = [
            threading.Thread(target=lambda i=i: answers.__setitem__(i, _sequence(futures[i], 10))) for i in range(8)
        ]
        for waiter in waiters:
            waiter.start()
        for waiter in waiters:
            waiter.join(10)
        assert answers == {i: i for i in range(8)}
        futures[0].add_done_callback(lambda f: called.append(("after", _acknowledged(f).sequence)))
        assert futures[0].exception(timeout=0) is None and not futures[0].running()
    # Added before: run on the sender thread, just after it woke the waiters; added after: at once, here. Either may
    # come first (as with concurrent.futures); the appender's close has joined the sender, so both ran, once each.
    assert sorted(called) == [("after", 0), ("before", 0)]


def _sequence(future: AppendFuture[pb.AppendResult | None], timeout: float) -> int:
    result = future.result(timeout)
    assert result is not None
    return result.sequence


def test_r24_no_future_resolves_before_the_ledger_acknowledged_and_timeouts_are_retried(
    tmp_path: Path, make_event: EventFactory
) -> None:
    """The write lock is held by another writer: the appends time out, are resent with the same event IDs, and
    the futures resolve only once the events are committed, each once."""
    path = tmp_path / "ledger.db"
    running = start_server(f"sqlite:///{path}", clock=FixedClock())
    try:
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        events = [make_event() for _ in range(20)]
        with LedgerClient(f"127.0.0.1:{running.port}", timeout=0.3, retries=50) as client:
            appender = BatchingAppender(client, max_delay=0.001)
            futures = [appender.append(e) for e in events]
            time.sleep(1.0)
            assert not any(f.done() for f in futures)
            reader = sqlite3.connect(path)  # what is committed: nothing of org/acme yet
            assert reader.execute("SELECT size FROM log_heads WHERE log_id = 'org/acme'").fetchone() is None
            reader.close()
            holder.execute("ROLLBACK")
            appender.close()
        results = [_acknowledged(f) for f in futures]
        assert sorted(r.sequence for r in results) == list(range(20))
        assert running.ledger.store.head("org/acme").size == 20
    finally:
        running.stop(grace=None)


def test_r24_r11_a_batch_refused_for_good_fails_only_the_events_at_fault(
    server: RunningServer, make_event: EventFactory
) -> None:
    good = [make_event() for _ in range(30)]
    unpriced = make_event(instance_type="NO-SUCH-GPU")  # R11: no rate for it, INVALID_ARGUMENT
    conflicting = {**good[3], "endpoint_id": "ep-other"}  # R24: the same event_id with another body
    with LedgerClient(f"127.0.0.1:{server.port}", retries=0) as client:
        client.append_events([good[3]])
        with BatchingAppender(client, max_delay=0.05) as appender:
            futures = [appender.append(e) for e in good[:10]]
            bad = [appender.append(unpriced), appender.append(conflicting)]
            futures += [appender.append(e) for e in good[10:]]
            wrong_type = appender.append({**make_event(), "development": "false"})  # a string, not a bool
    with pytest.raises(grpc.RpcError) as refused:
        bad[0].result(timeout=0)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as conflict:
        bad[1].result(timeout=0)
    assert conflict.value.code() is grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(TypeError):
        wrong_type.result(timeout=0)
    assert isinstance(wrong_type.exception(timeout=0), TypeError)
    assert bad[1].exception(timeout=0) is conflict.value
    results = [_acknowledged(f) for f in futures]
    assert [r.duplicate for r in results] == [i == 3 for i in range(30)]
    assert server.ledger.store.head("org/acme").size == 30


def test_r24_the_stream_transport_acknowledges_once_the_stream_is_answered(
    server: RunningServer, make_event: EventFactory
) -> None:
    calls = _Calls()
    events = [make_event() for _ in range(1500)]
    with _client(server, calls) as client, BatchingAppender(client, transport="stream", max_batch=500) as appender:
        futures = [appender.append(e) for e in events]
        assert appender.flush(timeout=30)
        assert all(f.result(timeout=0) is None for f in futures)
    assert {method for method, _ in calls.calls} == {"StreamEvents"}
    assert sum(n for _, n in calls.calls) == 1500
    assert server.ledger.store.head("org/acme").size == 1500


def test_appends_from_many_threads_each_land_once(server: RunningServer, make_event: EventFactory) -> None:
    with LedgerClient(f"127.0.0.1:{server.port}") as client, BatchingAppender(client) as appender:
        results: dict[str, Any] = {}
        lock = threading.Lock()

        def produce(k: int) -> None:
            for i in range(100):
                event = make_event(event_id=f"t{k}-{i}")
                future = appender.append(event)
                with lock:
                    results[event["event_id"]] = future

        threads = [threading.Thread(target=produce, args=(k,)) for k in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert appender.flush(timeout=30)
    sequences = sorted(_acknowledged(f).sequence for f in results.values())
    assert sequences == list(range(800))


@pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None, reason="node is not installed")
def test_the_node_example_batches_single_events_into_the_ledger(tmp_path: Path) -> None:
    """examples/node-appender: the same pattern for a Node.js control plane, run against a real server. Skipped
    where node is absent; where it is, its locked packages are installed first (node_modules is not committed)."""
    example = REPO / "examples" / "node-appender"
    if not (example / "node_modules" / "@grpc" / "grpc-js").is_dir():
        installed = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=example, capture_output=True, text=True, timeout=300
        )
        assert installed.returncode == 0, installed.stderr
    running = start_server(f"sqlite:///{tmp_path / 'ledger.db'}", clock=FixedClock())
    try:
        done = subprocess.run(
            ["node", str(example / "appender.mjs"), f"127.0.0.1:{running.port}", "250"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "250 events acknowledged" in done.stdout
        assert running.ledger.store.head("org/node-demo").size == 250
    finally:
        running.stop(grace=None)
