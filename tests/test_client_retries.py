"""Issue #23 item 3: the client library retries appends that timed out or found the server unavailable, within a
bound; R24 makes the resend safe (an append that committed after its client gave up answers as a duplicate)."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from pathlib import Path

import grpc
import pytest

from client.ledger_client import LedgerClient
from server.app import start_server
from tests.conftest import EventFactory, FixedClock


def _hold_write_lock(path: Path, seconds: float) -> threading.Thread:
    """Another process's writer (here: another connection) holding the SQLite write lock for `seconds`."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")

    def release() -> None:
        time.sleep(seconds)
        holder.execute("ROLLBACK")
        holder.close()

    thread = threading.Thread(target=release)
    thread.start()
    return thread


def test_r24_an_append_that_times_out_is_resent_and_lands_once(tmp_path: Path, make_event: EventFactory) -> None:
    path = tmp_path / "ledger.db"
    running = start_server(f"sqlite:///{path}", clock=FixedClock())
    try:
        target = f"127.0.0.1:{running.port}"
        events = [make_event() for _ in range(5)]
        holder = _hold_write_lock(path, 1.5)
        t0 = time.monotonic()
        with LedgerClient(target, timeout=0.4, retries=20) as client:
            results = client.append_events(events)  # attempts time out until the lock is released
        holder.join()
        assert time.monotonic() - t0 >= 1.4
        # Every event is in the log exactly once, whichever attempt committed it.
        assert [r.sequence for r in results] == [0, 1, 2, 3, 4]
        assert running.ledger.store.head("org/acme").size == 5
        with LedgerClient(target) as client:
            again = client.append_events(events)
        assert all(r.duplicate for r in again) and [r.entry_hash for r in again] == [r.entry_hash for r in results]
    finally:
        running.stop(grace=None)


def test_append_retries_are_bounded_by_attempts_and_by_time(tmp_path: Path, make_event: EventFactory) -> None:
    path = tmp_path / "ledger.db"
    running = start_server(f"sqlite:///{path}", clock=FixedClock())
    try:
        target = f"127.0.0.1:{running.port}"
        holder = _hold_write_lock(path, 4.0)
        t0 = time.monotonic()
        with LedgerClient(target, timeout=0.3, retries=2) as client, pytest.raises(grpc.RpcError) as raised:
            client.append_events([make_event()])
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - t0 < 2.0  # three attempts of 0.3 s and two short pauses
        t0 = time.monotonic()
        with (
            LedgerClient(target, timeout=0.3, retries=1000, retry_budget=1.0) as client,
            pytest.raises(grpc.RpcError) as raised,
        ):
            client.append_events([make_event()])
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - t0 < 3.0  # the budget, not the thousand attempts, ended it
        holder.join()
    finally:
        running.stop(grace=None)


def test_reads_do_not_retry_deadline_exceeded() -> None:
    # Only appends are known safe to resend after a timeout (R24); a read's timeout is the caller's to judge.
    # The peer is a hung server: it takes the connection and never answers, so every attempt runs into its
    # deadline. (A 1 us deadline against a real server did not always expire: a quick answer could beat the
    # client's deadline timer, and the test then failed now and then.)
    with socket.create_server(("127.0.0.1", 0)) as hung:
        target = f"127.0.0.1:{hung.getsockname()[1]}"
        with LedgerClient(target, timeout=0.2, retries=5) as client:
            t0 = time.monotonic()
            with pytest.raises(grpc.RpcError) as raised:
                client.head("system")
            assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - t0 < 0.5  # one attempt: with five retries it would take over a second
