"""Shared fixtures: real SQLite files, a fresh PostgreSQL database per test, real gRPC servers on ephemeral ports."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import settings

from client.ledger_client import LedgerClient
from ledger.intake import Ledger
from ledger.timeutil import parse_rfc3339_micros
from server.app import RunningServer, start_server
from storage.sql import SqlStore

# CI (CI=true) draws hypothesis's examples deterministically, so a submission's result depends on its code and not
# on the draw; local runs keep exploring new examples, and what they find is kept as an explicit @example or test.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

PG_ADMIN_URL = os.environ.get("LEDGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
EXAMPLE_DAY = Path(__file__).resolve().parents[1] / "examples" / "day.jsonl"
# Tests run on a fixed clock shortly after the example day so "5 minutes in the future" checks are deterministic.
TEST_NOW = parse_rfc3339_micros("2026-10-06T12:00:00Z")


class FixedClock:
    """An injectable clock that tests move by hand."""

    def __init__(self, now: int = TEST_NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, micros: int) -> None:
        self.now += micros


def _pg_database() -> Iterator[str]:
    """Create a database of its own for one test and drop it afterwards."""
    name = f"ledger_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    """ledger-server's main() configures root logging for the process; put the test process's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _pg_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each storage test runs on a SQLite file and on the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        yield from _pg_database()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def ledger(db_url: str, clock: FixedClock) -> Iterator[Ledger]:
    store = SqlStore(db_url, clock=clock)
    yield Ledger(store, clock=clock)
    store.close()


@pytest.fixture
def server(db_url: str, clock: FixedClock) -> Iterator[RunningServer]:
    running = start_server(db_url, "127.0.0.1:0", clock=clock)
    yield running
    running.stop(grace=None)


@pytest.fixture
def client(server: RunningServer) -> Iterator[LedgerClient]:
    with LedgerClient(f"127.0.0.1:{server.port}", retries=0) as c:
        yield c


EventFactory = Callable[..., dict[str, Any]]


@pytest.fixture
def make_event() -> EventFactory:
    """A valid usage event as billing-rules.md spells it; keyword arguments override fields."""
    counter = iter(range(1_000_000))

    def factory(**overrides: Any) -> dict[str, Any]:
        event: dict[str, Any] = {
            "event_id": f"ev-{next(counter):06d}",
            "org_id": "acme",
            "endpoint_id": "ep-1",
            "workload_id": "wl-1",
            "workload_kind": "SERVING",
            "instance_type": "A100",
            "type": "WORKLOAD_UP",
            "occurred_at": "2026-10-05T09:00:00.000000Z",
        }
        event.update(overrides)
        return {k: v for k, v in event.items() if v is not None}

    return factory
