"""`ledgerctl` as a person runs it: a real process against a real server, checking output and exit codes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from server.app import RunningServer
from tests.conftest import EXAMPLE_DAY


def ledgerctl(*args: str, target: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ledgerctl", *args]
    if target is not None:
        command += ["--target", target]
    env = {**os.environ, "COLUMNS": "200", "LEDGER_DATABASE_URL": ""}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


@pytest.fixture
def target(server: RunningServer) -> str:
    return f"127.0.0.1:{server.port}"


def example_counts() -> tuple[int, set[str]]:
    lines = [json.loads(line) for line in EXAMPLE_DAY.read_text().splitlines() if line.strip()]
    return len(lines), {line["org_id"] for line in lines}


def test_ingesting_the_example_day_twice_appends_nothing_the_second_time(target: str) -> None:
    total, orgs = example_counts()
    first = ledgerctl("events", "ingest", str(EXAMPLE_DAY), "--json", target=target)
    assert first.returncode == 0, first.stderr
    assert as_json(first) == {"ok": True, "file": str(EXAMPLE_DAY), "events": total, "appended": total, "duplicates": 0}
    again = ledgerctl("events", "ingest", str(EXAMPLE_DAY), "--json", target=target)
    assert as_json(again)["appended"] == 0 and as_json(again)["duplicates"] == total

    [org] = orgs
    head = ledgerctl("log", "head", "--org", org, "--json", target=target)
    assert as_json(head)["size"] == total + 2  # R29: the day is past events, bracketed by BACKFILL OPENED/CLOSED
    table = ledgerctl("log", "list", target=target)
    assert f"org/{org}" in table.stdout and str(total + 2) in table.stdout
    verified = ledgerctl("audit", "verify", "--json", target=target)
    assert verified.returncode == 0, verified.stdout
    assert as_json(verified)["entries"] == total + 3  # plus the system log's price book


def test_a_bad_line_is_reported_with_its_line_number_and_nothing_is_appended(target: str, tmp_path: Path) -> None:
    lines = [line for line in EXAMPLE_DAY.read_text().splitlines() if '"HEARTBEAT"' not in line][:5]  # workloads'
    bad = json.loads(lines[3])
    bad["instance_type"] = "Quantum 9000"
    lines[3] = json.dumps(bad)
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = ledgerctl("events", "ingest", str(path), "--no-backfill", target=target)  # no R29 bracket entries
    assert result.returncode == 1
    assert "line 4: instance_type" in result.stderr and "R11" in result.stderr
    assert (
        ledgerctl("log", "head", "--org", bad["org_id"], target=target).returncode == 1
    )  # NOT_FOUND: nothing appended


def test_malformed_json_is_a_usage_error_naming_the_line(target: str, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"event_id": "a"}\n{not json\n')
    result = ledgerctl("events", "ingest", str(path), "--json", target=target)
    assert result.returncode == 2
    assert as_json(result)["ok"] is False and ":2:" in as_json(result)["error"]


def test_an_unreachable_server_exits_3_with_a_hint() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before ledgerctl dials it
    result = ledgerctl("log", "list", target=f"127.0.0.1:{port}")
    assert result.returncode == 3
    assert "cannot reach the ledger" in result.stderr and "ledger-server" in result.stderr


def test_usage_errors_exit_2() -> None:
    assert ledgerctl("log", "head").returncode == 2  # neither --org nor --log
    assert ledgerctl("events", "ingest", "/no/such/file.jsonl").returncode == 2


def test_every_command_has_help() -> None:
    for command in (
        ["--help"],
        ["events", "ingest", "--help"],
        ["log", "head", "--help"],
        ["audit", "verify", "--help"],
    ):
        result = ledgerctl(*command)
        assert result.returncode == 0 and "Usage" in result.stdout
