"""gRPC health follows the store (issue #23 item 5, #27 item 5): NOT_SERVING while the database cannot be reached,
SERVING again when it can, and Health/List answers. Against a real server and a PostgreSQL cluster of the test's own
that the test stops and starts."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client.ledger_client import LedgerClient
from server.app import RunningServer, start_server
from server.main import main as server_main
from tests.conftest import EventFactory, FixedClock
from tests.own_postgres import own_postgres

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICES = ("", "usageledger.v1.LedgerService", "usageledger.v1.AuditService", "usageledger.v1.UsageService")


@pytest.fixture
def channel_to() -> Iterator[list[grpc.Channel]]:
    channels: list[grpc.Channel] = []
    yield channels
    for channel in channels:
        channel.close()


def _health(server: RunningServer, channels: list[grpc.Channel]) -> health_pb2_grpc.HealthStub:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    channels.append(channel)
    return health_pb2_grpc.HealthStub(channel)


def _statuses(stub: health_pb2_grpc.HealthStub) -> dict[str, int]:
    listed = stub.List(health_pb2.HealthListRequest(), timeout=5)
    return {name: response.status for name, response in listed.statuses.items()}


def _wait_for(stub: health_pb2_grpc.HealthStub, status: int, seconds: float = 30.0) -> float:
    """Seconds until Check("") answers `status`; fails the test after `seconds`."""
    start = time.monotonic()
    while True:
        answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
        if answer == status:
            return time.monotonic() - start
        if time.monotonic() - start > seconds:
            pytest.fail(f"health still {answer} after {seconds} s, expected {status}")
        time.sleep(0.05)


def test_list_answers_every_service_serving(db_url: str, clock: FixedClock, channel_to: list[grpc.Channel]) -> None:
    server = start_server(db_url, clock=clock)
    try:
        statuses = _statuses(_health(server, channel_to))
        for name in SERVICES:
            assert statuses[name] == SERVING, name
    finally:
        server.stop(grace=None)


@pytest.mark.postgres
def test_health_is_not_serving_while_postgresql_is_down_and_serving_once_it_is_back(
    clock: FixedClock, make_event: EventFactory, channel_to: list[grpc.Channel]
) -> None:
    with own_postgres() as cluster:
        server = start_server(cluster.url, clock=clock, health_probe_seconds=0.2)
        try:
            stub = _health(server, channel_to)
            with LedgerClient(f"127.0.0.1:{server.port}", retries=0) as client:
                client.append_events([make_event()])
                assert _wait_for(stub, SERVING) < 1

                cluster.stop()
                assert _wait_for(stub, NOT_SERVING) < 5
                assert set(_statuses(stub).values()) == {NOT_SERVING}
                watched = stub.Watch(health_pb2.HealthCheckRequest(service="usageledger.v1.LedgerService"))
                assert next(watched).status == NOT_SERVING

                cluster.start()
                assert _wait_for(stub, SERVING) < 5
                assert next(watched).status == SERVING  # a watcher hears it come back
                watched.cancel()
                assert set(_statuses(stub).values()) == {SERVING}
                client.append_events([make_event(event_id="after-restart")])  # and the server really serves
                assert client.head("org/acme").size == 2
        finally:
            server.stop(grace=None)


@pytest.mark.postgres
def test_health_is_not_serving_while_postgresql_hangs_and_serving_once_it_answers(
    clock: FixedClock, make_event: EventFactory, channel_to: list[grpc.Channel]
) -> None:
    """A database that accepts connections but never answers (every PostgreSQL process stopped with SIGSTOP): the
    probe's ping hangs, and after its timeout health must say NOT_SERVING rather than keep its last answer."""
    with own_postgres() as cluster:
        server = start_server(cluster.url, clock=clock, health_probe_seconds=0.2, health_timeout_seconds=1.0)
        try:
            stub = _health(server, channel_to)
            with LedgerClient(f"127.0.0.1:{server.port}", retries=0) as client:
                client.append_events([make_event()])
            assert _wait_for(stub, SERVING) < 1
            frozen = cluster.processes()
            for pid in frozen:
                os.kill(pid, signal.SIGSTOP)
            try:
                assert 0.5 < _wait_for(stub, NOT_SERVING) < 5
            finally:
                for pid in frozen:
                    os.kill(pid, signal.SIGCONT)
            assert _wait_for(stub, SERVING) < 5
        finally:
            server.stop(grace=None)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_server_refuses_a_health_interval_that_is_not_a_positive_number_of_seconds(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listen = ["--database-url", f"sqlite:///{tmp_path / 'l.db'}", "--listen", "127.0.0.1:0"]
    for option in ("--health-probe-seconds", "--health-timeout-seconds"):
        with pytest.raises(SystemExit) as refused:
            server_main([*listen, option, value])
        assert refused.value.code == 2
        assert f"{option}: must be a number of seconds above 0" in capsys.readouterr().err
    assert not (tmp_path / "l.db").exists()  # refused before anything was opened
