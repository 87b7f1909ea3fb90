"""Crash safety: a `ledger-server` process killed mid-ingestion loses no acknowledged event and half-writes no batch."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import select

from client.ledger_client import CHANNEL_OPTIONS, LedgerClient
from ledger.log.audit import verify
from storage.sql import SqlStore
from storage.sql.schema import entries

LEDGER_SERVER = str(Path(sys.executable).with_name("ledger-server"))
_SERVING_RE = re.compile(r"serving on 127\.0\.0\.1:(\d+) ")
# Well in the past of any real clock, so the server's "not in the future" check never trips.
OCCURRED_AT = "2026-10-05T09:00:00.000000Z"


class ServerProcess:
    """A real `ledger-server` process on loopback, started, killed and restarted on the same port by a test."""

    def __init__(self, database_url: str, log_dir: Path, *, extra_args: tuple[str, ...] = ()) -> None:
        self.database_url = database_url
        self.log_dir = log_dir
        self.extra_args = extra_args
        self.port = 0  # 0 until the first start: the server picks a free port and prints it
        self.starts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._stdout: Path | None = None

    @property
    def target(self) -> str:
        assert self.port, "the server has not started yet"
        return f"127.0.0.1:{self.port}"

    def launch(self) -> None:
        """Start the process without waiting for it, so several servers can boot in parallel."""
        assert self._process is None, "already running"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self._stdout = self.log_dir / f"stdout-{self.starts}.log"
        stderr = self.log_dir / f"stderr-{self.starts}.log"
        command = [
            LEDGER_SERVER,
            "--database-url",
            self.database_url,
            "--listen",
            f"127.0.0.1:{self.port}",
            "--log-level",
            "WARNING",
            # Crash safety is about appends; PostgreSQL refuses to start without a key or this flag.
            *(() if "--signing-key" in self.extra_args else ("--no-signing",)),
            *self.extra_args,
        ]
        with self._stdout.open("wb") as out, stderr.open("wb") as err:
            self._process = subprocess.Popen(
                command, stdout=out, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"}
            )

    def wait_serving(self, timeout: float = 20.0) -> None:
        """Wait for the "serving on" line (which carries the real port), then for a SERVING health check."""
        assert self._process is not None and self._stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            match = _SERVING_RE.search(self._stdout.read_text(errors="replace"))
            if match:
                self.port = int(match.group(1))
                break
            if self._process.poll() is not None:
                stderr = (self.log_dir / f"stderr-{self.starts}.log").read_text(errors="replace")
                raise AssertionError(f"ledger-server exited with {self._process.returncode}: {stderr[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"ledger-server did not start within {timeout} s")
            time.sleep(0.05)
        with grpc.insecure_channel(self.target) as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""),
                timeout=max(deadline - time.monotonic(), 1.0),
                wait_for_ready=True,
            )
        assert response.status == health_pb2.HealthCheckResponse.SERVING

    def start(self) -> None:
        self.launch()
        self.wait_serving()

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no graceful drain, exactly what a crash or the OOM killer does."""
        assert self._process is not None
        self._process.send_signal(signal.SIGKILL)
        self._process.wait(timeout=10)
        self._process = None

    def stop(self) -> None:
        """SIGTERM and wait (graceful); a server that ignores it is killed."""
        if self._process is None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None


def usage_event(event_id: str, org_id: str) -> dict[str, Any]:
    """A valid event; REQUEST_STARTED needs no session, so any number of them can go into any org's log."""
    return {
        "event_id": event_id,
        "org_id": org_id,
        "endpoint_id": "ep-1",
        "workload_id": "wl-1",
        "workload_kind": "SERVING",
        "instance_type": "A100",
        "type": "REQUEST_STARTED",
        "request_id": f"req-{event_id}",
        "occurred_at": OCCURRED_AT,
    }


@dataclass(frozen=True)
class Batch:
    """One atomic append request with fixed event IDs, so a resend is recognisably the same facts (R24)."""

    name: str
    events: tuple[dict[str, Any], ...]

    @property
    def keys(self) -> list[tuple[str, str]]:
        return [(f"org/{e['org_id']}", e["event_id"]) for e in self.events]


@dataclass
class Acks:
    """Every acknowledgement clients received, per batch, in arrival order; shared by client threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    by_batch: dict[str, list[list[tuple[str, int, bytes, bool]]]] = field(default_factory=lambda: defaultdict(list))

    def record(self, batch: Batch, results: list[Any]) -> None:
        assert len(results) == len(batch.events), "one result per event, in request order"
        answer = [(r.log_id, r.sequence, r.entry_hash, r.duplicate) for r in results]
        with self.lock:
            self.by_batch[batch.name].append(answer)

    def snapshot(self) -> dict[str, list[list[tuple[str, int, bytes, bool]]]]:
        with self.lock:
            return {name: list(answers) for name, answers in self.by_batch.items()}


def stored_events(store: SqlStore) -> dict[tuple[str, str], tuple[int, bytes]]:
    """(log, event_id) -> (sequence, entry hash) of every stored event, failing if any event is stored twice."""
    with store.reader.connect() as conn:
        rows = conn.execute(
            select(entries.c.log_id, entries.c.event_id, entries.c.seq, entries.c.entry_hash).where(
                entries.c.log_id.like("org/%")
            )
        ).all()
    counts = Counter((row.log_id, row.event_id) for row in rows)
    twice = [key for key, n in counts.items() if n > 1]
    assert not twice, f"events stored more than once: {twice[:5]}"
    return {(row.log_id, row.event_id): (int(row.seq), bytes(row.entry_hash)) for row in rows}


def psycopg_url(database_url: str) -> str:
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def wait_for_no_other_sessions(database_url: str, timeout: float = 10.0) -> None:
    """A killed server's PostgreSQL backends end (rolling back) only when they notice the closed socket; until
    then a COMMIT already received could still land, so the database is only settled once they are gone."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(psycopg_url(database_url), autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
            if row is not None and row[0] == 0:
                return
            assert time.monotonic() < deadline, "the killed server's database sessions did not end"
            time.sleep(0.05)


@dataclass
class Ingestion:
    """Client threads appending their batches one after another, parking on UNAVAILABLE until the restart."""

    target: str
    plans: list[list[Batch]]
    acks: Acks = field(default_factory=Acks)
    restarted: threading.Event = field(default_factory=threading.Event)
    parked: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    errors: list[BaseException] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    deadline: float = field(default_factory=lambda: time.monotonic() + 25.0)

    def start(self) -> None:
        self.threads = [threading.Thread(target=self._run, args=(plan,), daemon=True) for plan in self.plans]
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=max(self.deadline - time.monotonic(), 0.1))
        assert not any(t.is_alive() for t in self.threads), "a client thread did not finish in time"
        assert not self.errors, self.errors

    def acknowledged(self) -> int:
        return sum(1 for answers in self.acks.snapshot().values() if answers)

    def _run(self, plan: list[Batch]) -> None:
        try:
            with LedgerClient(self.target, retries=0, timeout=10.0) as client:
                parked = False
                for batch in plan:
                    while True:
                        assert time.monotonic() < self.deadline, "ingestion did not finish in time"
                        try:
                            results = client.append_events(batch.events)
                        except grpc.RpcError as err:
                            if err.code() is not grpc.StatusCode.UNAVAILABLE:
                                raise
                            if not parked:
                                # Unacknowledged: tell the test we are idle, then resend the very same batch.
                                parked = True
                                self.parked.release()
                            assert self.restarted.wait(timeout=max(self.deadline - time.monotonic(), 0.1))
                            time.sleep(0.05)  # the channel reconnects with backoff; do not spin meanwhile
                            continue
                        self.acks.record(batch, results)
                        break
                if not parked:
                    self.parked.release()
        except BaseException as err:
            self.errors.append(err)
            self.parked.release()

    def wait_all_parked(self) -> None:
        for _ in self.plans:
            assert self.parked.acquire(timeout=max(self.deadline - time.monotonic(), 0.1)), "clients did not stop"


def crash_plans(clients: int, batches: int, size: int) -> list[list[Batch]]:
    """Each client's batches span a shared org and its own org, so atomicity across logs is on trial too."""
    plans = []
    for c in range(clients):
        plan = []
        for b in range(batches):
            name = f"c{c}-b{b:03d}"
            plan.append(
                Batch(
                    name,
                    tuple(usage_event(f"{name}-e{i:02d}", "shared" if i % 2 else f"client-{c}") for i in range(size)),
                )
            )
        plans.append(plan)
    return plans


def test_sigkill_mid_ingestion_loses_no_acknowledged_event_and_half_writes_no_batch(
    db_url: str, tmp_path: Path
) -> None:
    server = ServerProcess(db_url, tmp_path / "server")
    server.start()
    plans = crash_plans(clients=4, batches=30, size=20)
    all_batches = {batch.name: batch for plan in plans for batch in plan}
    ingestion = Ingestion(server.target, plans)
    try:
        ingestion.start()
        # Kill while every client is busy: a third of the batches in, the rest queued or in flight.
        while ingestion.acknowledged() < len(all_batches) // 3:
            assert time.monotonic() < ingestion.deadline, "ingestion stalled before the crash"
            assert not ingestion.errors, ingestion.errors
            time.sleep(0.005)
        server.kill()
        ingestion.wait_all_parked()
        if db_url.startswith("postgresql"):
            wait_for_no_other_sessions(db_url)
        acked_before = {name for name, answers in ingestion.acks.snapshot().items() if answers}
        assert 0 < len(acked_before) < len(all_batches)

        # The database as the crash left it, before any retry.
        store = SqlStore(db_url)
        try:
            stored = stored_events(store)
            assert verify(store).ok, verify(store).first_failure()
        finally:
            store.close()
        present_before = set()
        for name, batch in all_batches.items():
            found = sum(1 for key in batch.keys if key in stored)
            assert found in (0, len(batch.events)), f"batch {name} is half-written: {found} of {len(batch.events)}"
            if found:
                present_before.add(name)
        assert acked_before <= present_before, f"acknowledged but lost: {sorted(acked_before - present_before)}"
        for name in acked_before:
            for (log_id, seq, entry_hash, _), key in zip(
                ingestion.acks.by_batch[name][0], all_batches[name].keys, strict=True
            ):
                assert stored[key] == (seq, entry_hash) and key[0] == log_id

        server.start()  # same database, same port: the clients' channels reconnect to it
        ingestion.restarted.set()
        ingestion.join()
    finally:
        server.stop()

    store = SqlStore(db_url)
    try:
        stored = stored_events(store)
        report = verify(store)
    finally:
        store.close()
    assert report.ok, report.first_failure()
    assert set(stored) == {key for batch in all_batches.values() for key in batch.keys}
    acks = ingestion.acks.snapshot()
    for name, batch in all_batches.items():
        answers = acks[name]
        assert answers, f"batch {name} was never acknowledged"
        for answer in answers:
            assert [(log_id, seq, h) for log_id, seq, h, _ in answer] == [(k[0], *stored[k]) for k in batch.keys]
        # A batch that committed just before the crash but was never acknowledged comes back as duplicates (R24).
        if name in present_before and name not in acked_before:
            assert all(duplicate for *_, duplicate in answers[-1])
        if name not in present_before:
            assert not any(duplicate for *_, duplicate in answers[-1])


def test_client_library_retries_through_a_server_restart_and_each_event_lands_once(db_url: str, tmp_path: Path) -> None:
    server = ServerProcess(db_url, tmp_path / "server")
    server.start()
    statuses: list[grpc.StatusCode] = []
    channel = grpc.intercept_channel(
        grpc.insecure_channel(server.target, options=list(CHANNEL_OPTIONS)), _StatusRecorder(statuses)
    )
    first = [usage_event(f"first-{i}", "acme") for i in range(10)]
    second = [usage_event(f"second-{i}", "acme") for i in range(10)]
    try:
        # A restart takes seconds (more on a loaded machine); the default 6 retries back off for 1.6-4.7 s in all.
        with LedgerClient(server.target, channel=channel, retries=20, timeout=5.0) as client:
            original = client.append_events(first)
            server.stop()
            outcome: dict[str, Any] = {}

            def resend() -> None:
                # The first batch again (its acknowledgement "lost") plus new events, while the server is down.
                try:
                    outcome["results"] = client.append_events(first + second)
                except grpc.RpcError as err:
                    outcome["error"] = err

            sender = threading.Thread(target=resend, daemon=True)
            sender.start()
            time.sleep(0.5)  # long enough for several refused attempts
            server.start()
            sender.join(timeout=25)
            assert not sender.is_alive()
    finally:
        server.stop()
    assert "error" not in outcome, outcome.get("error")
    assert grpc.StatusCode.UNAVAILABLE in statuses, statuses
    results = outcome["results"]
    assert [(r.sequence, r.entry_hash, r.duplicate) for r in results[:10]] == [
        (r.sequence, r.entry_hash, True) for r in original
    ]
    assert not any(r.duplicate for r in results[10:])
    store = SqlStore(db_url)
    try:
        stored = stored_events(store)
        assert verify(store).ok
    finally:
        store.close()
    assert sorted(stored) == sorted(("org/acme", e["event_id"]) for e in first + second)


class _StatusRecorder(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Records the status of every attempt, so the test can see the retries the client library hides."""

    def __init__(self, statuses: list[grpc.StatusCode]) -> None:
        self.statuses = statuses

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        outcome = continuation(details, request)
        self.statuses.append(outcome.code())
        return outcome
