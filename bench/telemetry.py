"""What telemetry costs the append path: a real `ledger-server` child on a fresh SQLite file, one client sending
AppendEvents batches over loopback, with telemetry off, with metrics scraped by Prometheus (`--metrics-listen`,
scraped every second), and with traces, metrics and logs all exported over OTLP/HTTP to a sink this script runs.

    .venv/bin/python -m bench.telemetry                      # 3 rounds of 40 batches of 500 events per mode
    .venv/bin/python -m bench.telemetry --rounds 1 --batches 5 --size 100

Modes run interleaved round by round (off, metrics, full, off, ...), so drift on a shared machine falls on all of
them alike. Per mode it prints events per second (wall) and the server's CPU milliseconds per 1,000 events (user
plus system, every thread: exporters and scrapes included), the median of the rounds.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.server import ServerProcess
from client.ledger_client import LedgerClient

MODES = ("off", "metrics", "full")


class _Sink(BaseHTTPRequestHandler):
    """Accepts any OTLP/HTTP export and drops it."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@contextmanager
def otlp_sink() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _batches(count: int, size: int) -> list[list[dict[str, Any]]]:
    prefix = uuid.uuid4().hex[:12]
    return [
        [
            {
                "event_id": f"{prefix}-{b}-{i}",
                "org_id": f"org-{b % 8}",
                "endpoint_id": "ep-1",
                "workload_id": "wl-1",
                "workload_kind": "SERVING",
                "instance_type": "A100",
                "type": "REQUEST_STARTED",
                "request_id": f"{prefix}-{b}-{i}",
                "occurred_at": "2026-10-05T09:00:00Z",
            }
            for i in range(size)
        ]
        for b in range(count)
    ]


def _scraper(url: str, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()


def run_mode(mode: str, folder: Path, sink: str, batches: int, size: int) -> tuple[float, float]:
    """(events per second, server CPU ms per 1,000 events) of one round in `mode`."""
    env = {}
    args: tuple[str, ...] = ()
    metrics_port = _free_port()
    if mode == "metrics":
        args = ("--metrics-listen", f"127.0.0.1:{metrics_port}")
    elif mode == "full":
        env = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink,
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        }
    work = _batches(batches, size)
    database = folder / f"{mode}-{uuid.uuid4().hex[:8]}.db"
    with environment(env), ServerProcess(f"sqlite:///{database}", folder / "server.log", extra_args=args) as server:
        stop = threading.Event()
        scraper = None
        if mode == "metrics":
            url = f"http://127.0.0.1:{metrics_port}/metrics"
            scraper = threading.Thread(target=_scraper, args=(url, stop), daemon=True)
            scraper.start()
        with LedgerClient(server.target, retries=0) as client:
            client.append_events(_batches(1, 10)[0])  # warm: connections, price book, first log heads
            cpu_before, began = server.cpu_seconds(), time.perf_counter()
            for batch in work:
                client.append_events(batch)
            wall, cpu = time.perf_counter() - began, server.cpu_seconds() - cpu_before
        stop.set()
        if scraper is not None:
            scraper.join(5)
    events = batches * size
    return events / wall, cpu * 1000 / (events / 1000)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.telemetry", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated, of: %(default)s")
    args = parser.parse_args(argv)
    modes = [mode for mode in args.modes.split(",") if mode in MODES]
    results: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory() as folder, otlp_sink() as sink:
        for _ in range(args.rounds):
            for mode in modes:
                results[mode].append(run_mode(mode, Path(folder), sink, args.batches, args.size))
    print(f"{'mode':<8} {'events/s':>10} {'server CPU ms / 1k events':>27}")
    for mode in modes:
        rate = statistics.median(r for r, _ in results[mode])
        cpu = statistics.median(c for _, c in results[mode])
        print(f"{mode:<8} {rate:>10,.0f} {cpu:>27.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
