"""The benchmark harness (bench/, issue #9) in a tiny run, so it keeps working: results only, no timing asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PG_ADMIN_URL

REPO = Path(__file__).resolve().parents[1]


def run_bench(tmp_path: Path, backend: str) -> dict[str, Any]:
    output = tmp_path / "results.json"
    command = [
        sys.executable, "-m", "bench.run", "--backend", backend, "--label", "smoke", "--output", str(output),
        "--ingest-events", "1500", "--log-size", "2000", "--lookups", "20", "--proofs", "20",
        "--clients", "2", "--orgs", "4", "--batch", "250", "--workdir", str(tmp_path),
        "--pg-admin-url", PG_ADMIN_URL,
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "results:" in done.stdout
    document: dict[str, Any] = json.loads(output.read_text())
    return document


def check_backend(result: dict[str, Any]) -> None:
    ingest = result["ingest"]
    assert ingest["events"] == 1500 and ingest["duplicates"] == 0
    assert ingest["events_per_second"] > 0 and ingest["server_cpu_seconds"] >= 0
    assert ingest["batch_latency_ms"]["p99"] >= ingest["batch_latency_ms"]["p50"] > 0
    assert ingest["server_memory_kib"]["VmHWM"] >= ingest["server_memory_kib"]["VmRSS"] > 0
    assert result["ceiling"]["events"] == 1500 and result["ceiling"]["ratio_ingest_to_ceiling"] > 0
    biglog = result["biglog"]
    assert biglog["events"] == 2000 and [s["fraction"] for s in biglog["memory_by_size"]][-1] == 1.0
    lookup = result["lookup"]
    assert lookup["log_size"] >= 2000
    for kind in ("endpoint_window", "request"):
        assert lookup[kind]["count"] == 20 and 0 < lookup[kind]["p50_ms"] <= lookup[kind]["p99_ms"]
        assert lookup[kind]["rows_max"] >= 1
        assert lookup["with_proofs"][kind]["count"] == 20  # the same cases, asking for proofs
    # The lookups must run on their indexes, not scan the log.
    assert "ix_entries_endpoint_time" in lookup["plans"]["endpoint_window"]
    assert "ix_entries_request" in lookup["plans"]["request"]
    assert result["verify"]["entries"] == lookup["log_size"] and result["verify"]["entries_per_second"] > 0
    proof = result["inclusion_proof"]
    assert proof["tree_size"] == lookup["log_size"] and proof["hashes_mean"] > 1


def test_bench_quick_run_writes_results_for_sqlite(tmp_path: Path) -> None:
    document = run_bench(tmp_path, "sqlite")
    assert document["machine"]["nproc"] >= 1 and document["machine"]["sqlite"]
    check_backend(document["results"]["sqlite"])
    assert set(document["targets"]) >= {"sqlite_ingest_events_per_second", "sqlite_ingest_ceiling_ratio"}
    assert not list(tmp_path.glob("*.db")), "the benchmark left its databases behind"


@pytest.mark.postgres
def test_bench_quick_run_writes_results_for_postgresql(tmp_path: Path) -> None:
    document = run_bench(tmp_path, "postgresql")
    result = document["results"]["postgresql"]
    check_backend(result)
    assert result["ceiling_copy"]["method"] == "copy"
    assert document["machine"]["postgresql"]


def test_the_telemetry_bench_runs_every_mode() -> None:
    command = [sys.executable, "-m", "bench.telemetry", "--rounds", "1", "--batches", "2", "--size", "20"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()[1:]}
    assert set(rows) == {"off", "metrics", "full"}
    assert all(float(rate.replace(",", "")) > 0 for rate, _ in rows.values())


def test_the_memory_soak_runs_mixed_load_and_reports_rss(tmp_path: Path) -> None:
    """bench.soak in a few seconds: the same code as the 30-minute run whose figures docs/benchmarks.md reports."""
    output = tmp_path / "soak.json"
    command = [
        sys.executable, "-m", "bench.soak", "--minutes", "0.1", "--sample-seconds", "1", "--rate", "200",
        "--lookups", "5", "--workdir", str(tmp_path), "--output", str(output),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(output.read_text())
    summary, samples = document["summary"], document["samples"]
    assert len(samples) >= 5 and all(s["rss_kib"] > 0 for s in samples)
    assert summary["events"] > 0 and summary["duplicates"] == 0 and summary["append_errors"] == 0
    assert summary["lookups"] > 0 and summary["lookup_errors"] == 0
    assert summary["rss_kib_max"] == max(s["rss_kib"] for s in samples)


def test_the_single_event_bench_measures_both_stores_against_their_ceiling(tmp_path: Path) -> None:
    """bench.single_appends (issue #26) in a tiny run: every phase reports calls, the ratio and latencies."""
    output = tmp_path / "single.json"
    pg_admin = PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    command = [
        sys.executable, "-m", "bench.single_appends", "--backend", "both", "--clients", "2,4", "--seconds", "0.5",
        "--processes", "2", "--batch-events", "2000", "--pg-admin-url", pg_admin, "--output", str(output),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(output.read_text())
    for backend in ("sqlite", "postgresql"):
        for clients in (2, 4):
            phase = results[backend][f"clients_{clients}"]
            assert phase["append"]["calls_per_second"] > 0 and phase["check"]["calls_per_second"] > 0
            assert phase["append"]["p99_ms"] >= phase["append"]["p50_ms"] > 0
            assert phase["ratio"] == round(phase["append"]["calls_per_second"] / phase["check"]["calls_per_second"], 3)
            assert len(phase["block_ratios"]) == 2  # the default: two blocks of check, append, append, check
            assert min(phase["block_ratios"]) - 0.001 <= phase["ratio"] <= max(phase["block_ratios"]) + 0.001
        batching = results[backend]["batching"]
        assert batching["appender"]["events_per_second"] > 0 and batching["hand_made_1000"]["events_per_second"] > 0
        assert batching["appender_stream"]["events_per_second"] > 0
    assert "batching appender" in done.stdout


def test_the_single_event_bench_reports_each_ratios_median_over_rounds(tmp_path: Path) -> None:
    """--rounds N runs everything N times, each on a fresh server, and gives every target ratio's median."""
    output = tmp_path / "rounds.json"
    command = [
        sys.executable, "-m", "bench.single_appends", "--backend", "sqlite", "--clients", "2", "--seconds", "0.3",
        "--processes", "1", "--batch-events", "1000", "--rounds", "3", "--output", str(output),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(output.read_text())
    rounds, medians = document["rounds"], document["medians"]["sqlite"]
    assert len(rounds) == 3
    expected = {
        "clients_2": [r["sqlite"]["clients_2"]["ratio"] for r in rounds],
        "appender": [r["sqlite"]["batching"]["ratio"] for r in rounds],
        "appender_stream": [r["sqlite"]["batching"]["stream_ratio"] for r in rounds],
    }
    assert {key: figure["rounds"] for key, figure in medians.items()} == expected
    for key, values in expected.items():
        assert medians[key]["median"] == round(sorted(values)[1], 3)
    assert "appender / hand-made" in done.stdout and "medians over the rounds" in done.stdout
