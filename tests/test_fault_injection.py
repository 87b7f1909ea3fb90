"""Issue #23 item 6: faults tried for real. A PostgreSQL cluster of the test's own restarted under concurrent
appends, and a SQLite ledger on a small filesystem of the test's own that fills up.

Both need root (CI runs as root): the cluster runs as the `postgres` user, the filesystem is a tmpfs mounted here.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from grpc_status import rpc_status
from sqlalchemy import create_engine, text

from client.ledger_client import LedgerClient
from server.app import RunningServer, start_server
from tests.conftest import TEST_NOW, FixedClock

REPO = Path(__file__).resolve().parents[1]


def _as_root(reason: str) -> None:
    # Not a skip: CI runs as root, and a fault test that quietly does not run proves nothing.
    assert os.geteuid() == 0, f"{reason} needs root (CI's .ci/run runs as root)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _event(org: str, event_id: str, minute: int) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "org_id": org,
        "endpoint_id": "ep-1",
        "workload_id": f"wl-{event_id}",
        "workload_kind": "SERVING",
        "instance_type": "A100",
        "type": "WORKLOAD_SCHEDULED",
        "occurred_at": f"2026-10-05T{minute // 60 % 24:02d}:{minute % 60:02d}:00Z",
    }


def _audit_verify(url: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "ledgerctl", "audit", "verify", "--database-url", url, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _fault_of(err: grpc.RpcError) -> str | None:
    from google.rpc import error_details_pb2

    status = rpc_status.from_call(err)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.metadata.get("fault")
    return None


# -- (a) PostgreSQL restarted under load ------------------------------------------------------------------------


class Cluster:
    """A PostgreSQL cluster of the test's own: initdb, start and stop as the `postgres` user, on a free port."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        assert found, "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin"
        self.bin = Path(found[-1]).parent
        self.root = Path(tempfile.mkdtemp(prefix="ledger-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._options = options

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{tool}: {done.stdout[-1500:]}{done.stderr[-1500:]}"

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-o", self._options, "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        # fast: every session is terminated at once (AdminShutdown), as in a restart or a failover.
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
             "stop"],
            capture_output=True,
            timeout=60,
        )  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    _as_root("a PostgreSQL cluster of the test's own")
    own = Cluster()
    try:
        own.start()
        yield own
    finally:
        own.remove()


@dataclass
class Appender:
    """One control-plane shard: batches of new events, each retried by the client library until acknowledged."""

    target: str
    org: str
    acknowledged: list[str] = field(default_factory=list)
    given_up: list[list[str]] = field(default_factory=list)  # batches whose every retry failed: state unknown

    def run(self, stop: threading.Event) -> None:
        with LedgerClient(self.target, timeout=5.0, retries=60, retry_budget=60.0) as client:
            n = 0
            while not stop.is_set():
                ids = [f"{self.org}-{n + k:06d}" for k in range(10)]
                batch = [_event(self.org, event_id, (n + k) % 1400) for k, event_id in enumerate(ids)]
                n += len(ids)
                try:
                    results = client.append_events(batch)
                except grpc.RpcError:
                    self.given_up.append(ids)
                    continue
                assert [r.log_id for r in results] == [f"org/{self.org}"] * len(ids)
                self.acknowledged += ids


def _probe(target: str, stop: threading.Event, codes: list[grpc.StatusCode]) -> None:
    """A reader with no retries: what a client sees while the database is down."""
    with LedgerClient(target, timeout=5.0, retries=0) as client:
        while not stop.is_set():
            try:
                client.head("system")
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as err:
                codes.append(err.code())
                if err.code() == grpc.StatusCode.UNAVAILABLE:
                    assert _fault_of(err) == "CONNECTION_LOST", err.details()
            time.sleep(0.05)


def _eventually(check: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.postgres
def test_postgres_restarted_under_load_loses_and_duplicates_nothing(cluster: Cluster) -> None:
    url = cluster.create_database("ledger")
    running = start_server(url, clock=FixedClock(TEST_NOW))
    target = f"127.0.0.1:{running.port}"
    stop, probe_stop = threading.Event(), threading.Event()
    appenders = [Appender(target, f"org-{n}") for n in range(4)]
    codes: list[grpc.StatusCode] = []
    threads = [threading.Thread(target=a.run, args=(stop,)) for a in appenders]
    probe = threading.Thread(target=_probe, args=(target, probe_stop, codes))
    try:
        for thread in (*threads, probe):
            thread.start()
        _eventually(lambda: all(len(a.acknowledged) >= 50 for a in appenders), 60)
        before = sum(len(a.acknowledged) for a in appenders)
        cluster.stop()
        time.sleep(2.0)  # appends and reads meet a database that is not there
        cluster.start()
        # The server reconnects by itself: appends acknowledged after the restart, with no help from the test.
        _eventually(lambda: sum(len(a.acknowledged) for a in appenders) >= before + 200, 60)
        probe_stop.set()
        probe.join()
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        stop.set()
        probe_stop.set()
        running.stop(grace=None)

    assert grpc.StatusCode.UNAVAILABLE in codes, "the probe never saw the database down"
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, set(codes)  # never UNKNOWN or INTERNAL
    assert codes[-1] == grpc.StatusCode.OK
    assert not any(a.given_up for a in appenders), "the client library's retries should outlast a 2 s restart"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(
                text("SELECT event_id, count(*) FROM entries WHERE log_id LIKE 'org/%' GROUP BY event_id")
            ).all()
    finally:
        engine.dispose()
    counts = {event_id: count for event_id, count in stored}
    acknowledged = [event_id for a in appenders for event_id in a.acknowledged]
    assert len(acknowledged) == len(set(acknowledged))
    assert not [event_id for event_id in acknowledged if event_id not in counts], "acknowledged events lost"
    assert all(count == 1 for count in counts.values()), "an event stored twice after retries (R24)"
    assert set(counts) == set(acknowledged)  # nothing stored that no appender was told about
    report = _audit_verify(url)
    assert report["ok"] is True and report["entries"] >= len(acknowledged)


# -- (b) the disk filling up under SQLite ---------------------------------------------------------------------------


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 24 MiB tmpfs of the test's own, unmounted afterwards."""
    _as_root("a size-limited filesystem of the test's own")
    mountpoint = Path(tempfile.mkdtemp(prefix="ledger-disk-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)
        mountpoint.rmdir()


def _fill(path: Path, leave: int) -> None:
    """Take all but about `leave` bytes of the filesystem holding `path`."""
    free = shutil.disk_usage(path.parent).free
    with path.open("wb") as filler:
        filler.write(b"\0" * max(0, free - leave))


def test_a_full_disk_under_sqlite_fails_appends_cleanly_and_retryably(small_disk: Path) -> None:
    url = f"sqlite:///{small_disk / 'ledger.db'}"
    running: RunningServer = start_server(url, clock=FixedClock(TEST_NOW))
    target = f"127.0.0.1:{running.port}"
    try:
        with LedgerClient(target, retries=0) as client:
            client.append_events([_event("acme", f"first-{n}", n) for n in range(50)])
            _fill(small_disk / "filler", leave=64 * 1024)
            acknowledged, failed = 50, None
            for n in range(200):  # 100 events a batch: the WAL needs far more than the 64 KiB left
                batch = [_event("acme", f"e-{n:03d}-{k:03d}", k) for k in range(100)]
                try:
                    client.append_events(batch)
                    acknowledged += len(batch)
                except grpc.RpcError as err:
                    failed = (batch, err)
                    break
            assert failed is not None, "the disk never filled up"
            batch, err = failed
            assert err.code() == grpc.StatusCode.UNAVAILABLE, (err.code(), err.details())
            assert _fault_of(err) == "DISK_FULL", err.details()
            assert "disk is full" in (err.details() or "") and "INSERT" not in (err.details() or "")

            # Nothing partial: the log holds exactly what was acknowledged, none of the failed batch.
            head = client.head("org/acme")
            assert head.size == acknowledged
            assert [e.sequence for e in client.entries("org/acme", start=head.size - 3)] == [
                head.size - 3,
                head.size - 2,
                head.size - 1,
            ]
            # Reads keep working while the disk is full, and so does an answer about the same events.
            assert client.entry("org/acme", 0).body_json()["event_id"] == "first-0"
            with pytest.raises(grpc.RpcError) as again:
                client.append_events(batch)
            assert again.value.code() == grpc.StatusCode.UNAVAILABLE

            (small_disk / "filler").unlink()  # space returns
            results = client.append_events(batch)
            assert not any(r.duplicate for r in results)
            assert [r.sequence for r in results] == list(range(acknowledged, acknowledged + len(batch)))
            assert all(r.duplicate for r in client.append_events(batch))  # R24: a resend now lands nowhere new
    finally:
        running.stop(grace=None)
    report = _audit_verify(url)
    assert report["ok"] is True and report["entries"] >= acknowledged + 100
