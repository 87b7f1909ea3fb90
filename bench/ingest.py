"""gRPC ingest from several client processes: AppendEvents batches (many orgs) or StreamEvents (one big org log)."""

from __future__ import annotations

import multiprocessing
import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

US = 1_000_000
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used (all of /proc/stat's cpu line but idle and iowait)."""
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / _CLOCK_TICKS


def postgres_seconds() -> float:
    """CPU seconds used so far by the PostgreSQL processes still alive (their backends do part of an append)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                text = stat.read()
        except OSError:
            continue
        name, _, rest = text.partition(") ")
        if name.endswith("(postgres"):
            fields = rest.split()
            total += int(fields[11]) + int(fields[12])
    return total / _CLOCK_TICKS


@dataclass(frozen=True)
class ClientPlan:
    """What one client process sends. Each client owns its orgs (or, for one big org, its endpoints)."""

    index: int
    target: str
    mode: str  # "append": AppendEvents batches; "stream": one StreamEvents call of batches
    orgs: tuple[str, ...]
    events: int
    batch: int
    start_micros: int
    until_micros: int
    endpoints: int
    seed: int
    endpoint_share: tuple[int, int] = (0, 1)  # (k, n): keep endpoints k, k+n, ... (one org split over clients)
    ids: str = "random"  # bench.workload.OrgStream's `ids`


def _events(plan: ClientPlan) -> Iterator[Any]:
    from bench.workload import OrgStream, interleaved

    streams = []
    for n, org in enumerate(plan.orgs):
        seed = plan.seed * 1_000_003 + n + 1000 * plan.endpoint_share[0]
        stream = OrgStream(org, seed, plan.start_micros, endpoints=plan.endpoints, ids=plan.ids)
        k, every = plan.endpoint_share
        stream.endpoints = stream.endpoints[k::every]
        streams.append(stream)
    return interleaved(streams, plan.events, until=plan.until_micros)


def _batches(events: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch = []
    for event in events:
        batch.append(event)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def client_main(plan: ClientPlan, start: Any, results: Any) -> None:
    """One client process: connect, wait for the others, send, report counts, timings and its own CPU time."""
    try:
        import grpc
        from usageledger.v1 import ledger_pb2 as pb

        from client.ledger_client import LedgerClient

        client = LedgerClient(plan.target, timeout=600.0)
        grpc.channel_ready_future(client.channel).result(timeout=60)
        events = _events(plan)
        start.wait()
        cpu0 = time.process_time()
        t0 = time.monotonic()
        latencies: list[float] = []
        sent = duplicates = 0
        if plan.mode == "append":
            for batch in _batches(events, plan.batch):
                b0 = time.monotonic()
                response = client.append_events(batch)
                latencies.append(time.monotonic() - b0)
                sent += len(batch)
                duplicates += sum(1 for r in response if r.duplicate)
        else:
            requests = (pb.StreamEventsRequest(events=batch) for batch in _batches(events, plan.batch))
            summary = client.stub.StreamEvents(requests, timeout=3600)
            sent = summary.appended + summary.duplicates
            duplicates = summary.duplicates
        t1 = time.monotonic()
        client.close()
        results.put(
            {
                "client": plan.index,
                "events": sent,
                "duplicates": duplicates,
                "start": t0,
                "end": t1,
                "cpu_seconds": time.process_time() - cpu0,
                "batch_latency_s": latencies,
            }
        )
    except BaseException as err:  # the parent must hear about it rather than wait for ever
        results.put({"client": plan.index, "error": f"{type(err).__name__}: {err}"})
        raise


def run_clients(plans: list[ClientPlan], server: Any, *, on_tick: Any = None, tick: float = 0.5) -> dict[str, Any]:
    """Start one process per plan, release them together, and time from the release to the last answer."""
    context = multiprocessing.get_context("spawn")  # never fork a process that has gRPC threads
    start = context.Barrier(len(plans) + 1)
    results = context.Queue()
    processes = [context.Process(target=client_main, args=(p, start, results), daemon=True) for p in plans]
    for p in processes:
        p.start()
    start.wait(timeout=120)
    cpu0 = server.cpu_seconds()
    busy0 = machine_busy_seconds()
    pg0 = postgres_seconds()
    t0 = time.monotonic()
    reports: list[dict[str, Any]] = []
    deadline = t0 + 3600
    while len(reports) < len(plans):
        try:
            report = results.get(timeout=tick)
        except Exception:  # queue.Empty
            if time.monotonic() > deadline:
                raise RuntimeError("clients did not finish within an hour") from None
            if on_tick is not None:
                on_tick()
            if any(p.exitcode not in (None, 0) for p in processes) and results.empty():
                raise RuntimeError("a client process died; see its traceback above") from None
            continue
        if "error" in report:
            raise RuntimeError(f"client {report['client']} failed: {report['error']}")
        reports.append(report)
    t1 = time.monotonic()
    cpu1 = server.cpu_seconds()
    busy1 = machine_busy_seconds()
    pg1 = postgres_seconds()
    for p in processes:
        p.join(30)
    if on_tick is not None:
        on_tick()
    first = min(r["start"] for r in reports)
    last = max(r["end"] for r in reports)
    wall = last - first
    events = sum(r["events"] for r in reports)
    latencies = sorted(x for r in reports for x in r["batch_latency_s"])
    result: dict[str, Any] = {
        "events": events,
        "duplicates": sum(r["duplicates"] for r in reports),
        "wall_seconds": round(wall, 3),
        "events_per_second": round(events / wall, 1),
        "clients": len(plans),
        "batch": plans[0].batch,
        "server_cpu_seconds": round(cpu1 - cpu0, 2),
        "server_cpu_cores": round((cpu1 - cpu0) / (t1 - t0), 2),
        "client_cpu_seconds": round(sum(r["cpu_seconds"] for r in reports), 2),
        "client_cpu_cores": round(sum(r["cpu_seconds"] for r in reports) / wall, 2),
        "postgres_cpu_cores": round((pg1 - pg0) / (t1 - t0), 2),
        # What everything else on the machine used meanwhile (other users' jobs): a figure measured while this
        # is well above zero was measured on a busy machine.
        "other_cpu_cores": round(
            ((busy1 - busy0) - (cpu1 - cpu0) - (pg1 - pg0) - sum(r["cpu_seconds"] for r in reports)) / (t1 - t0), 2
        ),
        "machine_cores": os.cpu_count(),
    }
    if latencies:
        result["batch_latency_ms"] = {
            "p50": round(statistics.median(latencies) * 1000, 1),
            "p99": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 1),
            "max": round(latencies[-1] * 1000, 1),
        }
    return result
