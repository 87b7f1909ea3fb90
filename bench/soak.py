"""Memory soak (issue #23, item 6): a real server under steady mixed ingest and dispute lookups, its RSS sampled.

    python -m bench.soak --minutes 30 --output soak.json

A leak shows as resident memory that keeps climbing while the load stays the same: the report compares the median
RSS of the run's second quarter (after warm-up: caches and pools filled) with its last quarter, and fits a line
through every sample after the first quarter (KiB per minute). The load is deliberately modest and steady (the
machine is shared): `--rate` events per second in AppendEvents batches, `--lookups` ReconstructCharges calls per
second (R27) on endpoints and requests already in the ledger.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from usageledger.v1 import ledger_pb2 as pb
from usageledger.v1 import support_pb2 as spb
from usageledger.v1 import support_pb2_grpc as spb_grpc

from bench.server import ServerProcess
from bench.workload import US, OrgStream, interleaved, timestamp
from client.ledger_client import LedgerClient

DAY_US = 86_400 * US


@dataclass
class Seen:
    """What the ingest thread has sent, for the lookups to ask about (bounded: the newest few thousand)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    windows: list[tuple[str, str, int]] = field(default_factory=list)  # (org, endpoint, occurred micros)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (org, request_id)

    def add(self, event: pb.UsageEvent) -> None:
        micros = event.occur_time.seconds * US
        with self.lock:
            self.windows.append((event.org_id, event.endpoint_id, micros))
            if event.request_id:
                self.requests.append((event.org_id, event.request_id))
            for items in (self.windows, self.requests):
                if len(items) > 4000:
                    del items[:2000]

    def pick(self, rng: random.Random) -> tuple[str, tuple[Any, ...]] | None:
        with self.lock:
            if rng.random() < 0.5 and self.requests:
                return "request", rng.choice(self.requests)
            if self.windows:
                return "endpoint", rng.choice(self.windows)
        return None


@dataclass
class Counters:
    events: int = 0
    duplicates: int = 0
    batches: int = 0
    lookups: int = 0
    lookup_errors: int = 0
    append_errors: int = 0
    lookup_seconds: list[float] = field(default_factory=list)


def _event_stream(orgs: int, seed: int) -> Iterator[pb.UsageEvent]:
    """Endless events: each generation of orgs starts 60 simulated days back and is replaced when it nears now."""
    generation = 0
    while True:
        now = int(time.time() * US)
        streams = [
            OrgStream(f"soak-{generation}-{n:02d}", seed + 97 * generation + n, now - 60 * DAY_US, endpoints=6)
            for n in range(orgs)
        ]
        try:
            yield from interleaved(streams, limit=10**12, until=now - DAY_US)
        except RuntimeError:
            generation += 1


def _ingest(target: str, args: argparse.Namespace, stop: threading.Event, seen: Seen, counters: Counters) -> None:
    client = LedgerClient(target, timeout=60.0)
    events = _event_stream(args.orgs, args.seed)
    interval = args.batch / args.rate
    next_at = time.monotonic()
    while not stop.is_set():
        batch = [next(events) for _ in range(args.batch)]
        try:
            results = client.append_events(batch)
        except grpc.RpcError:
            counters.append_errors += 1
        else:
            counters.batches += 1
            counters.events += len(results)
            counters.duplicates += sum(1 for r in results if r.duplicate)
            for event in batch:
                seen.add(event)
        next_at += interval
        stop.wait(max(0.0, next_at - time.monotonic()))
    client.close()


def _lookups(target: str, args: argparse.Namespace, stop: threading.Event, seen: Seen, counters: Counters) -> None:
    rng = random.Random(args.seed)
    with grpc.insecure_channel(target) as channel:
        stub = spb_grpc.SupportServiceStub(channel)
        interval = 1.0 / args.lookups
        next_at = time.monotonic()
        while not stop.is_set():
            picked = seen.pick(rng)
            if picked is not None:
                kind, case = picked
                if kind == "request":
                    request = spb.ReconstructChargesRequest(org_id=case[0], request_id=case[1])
                else:
                    request = spb.ReconstructChargesRequest(
                        org_id=case[0],
                        endpoint_id=case[1],
                        approximate_time=timestamp(case[2]),
                        tolerance=Duration(seconds=1800),
                    )
                t0 = time.monotonic()
                try:
                    stub.ReconstructCharges(request, timeout=60)
                except grpc.RpcError:
                    counters.lookup_errors += 1
                else:
                    counters.lookups += 1
                    counters.lookup_seconds.append(time.monotonic() - t0)
            next_at += interval
            stop.wait(max(0.0, next_at - time.monotonic()))


def _slope_kib_per_minute(samples: list[dict[str, Any]]) -> float:
    xs = [s["minute"] for s in samples]
    ys = [s["rss_kib"] for s in samples]
    if len(xs) < 2:
        return 0.0
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread if spread else 0.0


def summarize(samples: list[dict[str, Any]], counters: Counters, minutes: float) -> dict[str, Any]:
    """The figures docs/benchmarks.md reports: RSS at warm-up and at the end, its trend, the load that was run."""
    quarter = max(1, len(samples) // 4)
    settled = samples[quarter:] or samples
    second_quarter = samples[quarter : 2 * quarter] or samples
    last_quarter = samples[-quarter:]
    lookups = sorted(counters.lookup_seconds)
    return {
        "minutes": minutes,
        "samples": len(samples),
        "events": counters.events,
        "duplicates": counters.duplicates,
        "append_errors": counters.append_errors,
        "events_per_second": round(counters.events / (minutes * 60), 1) if minutes else 0,
        "lookups": counters.lookups,
        "lookup_errors": counters.lookup_errors,
        "lookup_p50_ms": round(lookups[len(lookups) // 2] * 1000, 1) if lookups else None,
        "lookup_p99_ms": round(lookups[int(len(lookups) * 0.99)] * 1000, 1) if lookups else None,
        "rss_kib_first": samples[0]["rss_kib"] if samples else None,
        "rss_kib_second_quarter_median": statistics.median(s["rss_kib"] for s in second_quarter) if samples else None,
        "rss_kib_last_quarter_median": statistics.median(s["rss_kib"] for s in last_quarter) if samples else None,
        "rss_kib_max": max(s["rss_kib"] for s in samples) if samples else None,
        "rss_slope_kib_per_minute_after_warmup": round(_slope_kib_per_minute(settled), 1),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to run (default 30)")
    parser.add_argument("--rate", type=float, default=150.0, help="events appended per second (default 150)")
    parser.add_argument("--batch", type=int, default=50, help="events per AppendEvents call (default 50)")
    parser.add_argument("--lookups", type=float, default=2.0, help="dispute lookups per second (default 2)")
    parser.add_argument("--orgs", type=int, default=4, help="orgs sending at once (default 4)")
    parser.add_argument("--sample-seconds", type=float, default=10.0, help="RSS sampling period (default 10)")
    parser.add_argument("--database-url", help="default: a fresh SQLite file in --workdir")
    parser.add_argument("--workdir", help="default: a temporary directory")
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--output", help="write the samples and the summary here as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    url = args.database_url or f"sqlite:///{workdir / 'soak.db'}"
    seen, counters, stop = Seen(), Counters(), threading.Event()
    samples: list[dict[str, Any]] = []
    with ServerProcess(url, workdir / "server.log") as server:
        threads = [
            threading.Thread(target=work, args=(server.target, args, stop, seen, counters), daemon=True)
            for work in (_ingest, _lookups)
        ]
        t0 = time.monotonic()
        for thread in threads:
            thread.start()
        try:
            while (elapsed := time.monotonic() - t0) < args.minutes * 60:
                memory = server.memory_kib()
                samples.append(
                    {
                        "minute": round(elapsed / 60, 3),
                        "rss_kib": memory["VmRSS"],
                        "hwm_kib": memory["VmHWM"],
                        "events": counters.events,
                        "lookups": counters.lookups,
                    }
                )
                print(json.dumps(samples[-1]), flush=True)
                time.sleep(min(args.sample_seconds, max(0.0, args.minutes * 60 - elapsed)))
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=120)
        minutes = (time.monotonic() - t0) / 60
    summary = summarize(samples, counters, minutes)
    print("summary:", json.dumps(summary, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps({"summary": summary, "samples": samples}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
