"""Single-event appends from many concurrent clients against the same server's trivial RPC (issue #26).

    .venv/bin/python -m bench.single_appends --backend both --clients 16,64 [--rounds 3] [--profile]

A real `ledger-server` child on a fresh database. Each client is a thread with its own channel (its own
connection), spread over a few client processes so the clients' Python is not one GIL. In one run and against one
server, for each client count: the health `Check` (the trivial-RPC ceiling) and `AppendEvents` with one event per
call (a control plane's requests, each started then finished: request_traffic), in alternating blocks of phases
(compared_phases); then the batching appender (client/appender.py), over AppendEvents and over StreamEvents, against
hand-made 1,000-event AppendEvents batches, each way twice in mirrored order (BATCH_ORDER). Each reports calls (or
events) per second, the per-call latency p50 / p99, and the CPU time the server and the clients spent per call;
each store, the load average before and after (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.server import Profiler, ServerProcess

DEFAULT_PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1/postgres"


def _client_thread(target: str, kind: str, org: str, seconds: float, start: Any, out: list[Any]) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from usageledger.v1 import ledger_pb2 as pb
    from usageledger.v1 import ledger_pb2_grpc as pb_grpc

    channel = grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
    prefix = uuid.uuid4().hex[:12]
    latencies: list[float] = []
    refused = 0
    health = health_pb2_grpc.HealthStub(channel)
    ledger = pb_grpc.LedgerServiceStub(channel)
    check = health_pb2.HealthCheckRequest(service="")
    request_event = request_traffic(pb, prefix, org)
    n = 0
    start.wait()
    until = time.perf_counter() + seconds
    while True:
        began = time.perf_counter()
        if began >= until:
            break
        try:
            if kind == "check":
                health.Check(check, timeout=30)
            else:
                ledger.AppendEvents(pb.AppendEventsRequest(events=[request_event(n)]), timeout=30)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise
            refused += 1
            continue
        latencies.append(time.perf_counter() - began)
        n += 1
    out.append((latencies, refused))
    channel.close()


# Requests start every millisecond from here, each lasting REQUEST_MICROS (a past instant: nothing is refused as
# being in the future, whenever the bench runs).
TRAFFIC_FROM_MICROS = 1_791_190_800_000_000  # 2026-10-05T09:00:00Z
REQUEST_MICROS = 250_000


def request_traffic(pb: Any, prefix: str, org: str) -> Callable[[int], Any]:
    """Call n's event, as a control plane reports its requests: call 2k starts request k, call 2k + 1 finishes it
    (R25, R26). Built from the proto, as a control plane builds them (no mapping to convert per call).

    Finishing each request matters: a workload's requests still in flight are what its rollups must carry from one
    catch-up to the next, and starts alone (the figures before 2026-12-07) left every request in flight for good."""
    template = pb.UsageEvent(
        org_id=org,
        endpoint_id="ep-1",
        workload_id="wl-1",
        workload_kind=pb.WORKLOAD_KIND_SERVING,
        instance_type="A100",
    )

    def event(n: int) -> Any:
        request, finished = divmod(n, 2)
        made = pb.UsageEvent()
        made.CopyFrom(template)
        made.event_id = f"{prefix}-{n}"
        made.request_id = f"{prefix}-r{request}"
        made.type = pb.EVENT_TYPE_REQUEST_FINISHED if finished else pb.EVENT_TYPE_REQUEST_STARTED
        made.occur_time.FromMicroseconds(TRAFFIC_FROM_MICROS + request * 1000 + finished * REQUEST_MICROS)
        return made

    return event


def request_mappings(prefix: str, events: int, orgs: int = 4) -> list[dict[str, Any]]:
    """The batching phase's events as billing-rules.md mappings (what a control plane hands the appender, which
    converts them): request_traffic's requests, each started then finished, request k on org k mod `orgs`."""
    from ledger.timeutil import format_micros

    made = []
    for n in range(events):
        request, finished = divmod(n, 2)
        made.append(
            {
                "event_id": f"{prefix}-{n}",
                "org_id": f"bench-batch-{request % orgs}",
                "endpoint_id": "ep-1",
                "workload_id": "wl-1",
                "workload_kind": "SERVING",
                "instance_type": "A100",
                "type": "REQUEST_FINISHED" if finished else "REQUEST_STARTED",
                "request_id": f"{prefix}-r{request}",
                "occurred_at": format_micros(TRAFFIC_FROM_MICROS + request * 1000 + finished * REQUEST_MICROS),
            }
        )
    return made


def _client_process(target: str, kind: str, orgs: list[str], seconds: float, barrier: Any, results: Any) -> None:
    out: list[Any] = []
    start = threading.Barrier(len(orgs) + 1)
    threads = [threading.Thread(target=_client_thread, args=(target, kind, org, seconds, start, out)) for org in orgs]
    for thread in threads:
        thread.start()
    barrier.wait()
    cpu = time.process_time()  # every thread of this process: the clients' side of the calls
    start.wait()
    for thread in threads:
        thread.join()
    results.put((out, time.process_time() - cpu))


@dataclass
class Calls:
    """What one timed phase measured: every call's latency, the refusals, and the CPU the server and clients spent."""

    latencies: list[float]
    refused: int
    server_cpu: float
    client_cpu: float
    seconds: float


def measure_calls(server: ServerProcess, kind: str, clients: int, seconds: float, processes: int, orgs: int) -> Calls:
    """`clients` threads over `processes` processes calling `kind` ("check" or "append") for `seconds`, with the CPU
    time the server and the clients spent (the machine is shared: CPU per call compares across runs better than
    rates do)."""
    target = server.target
    context = mp.get_context("spawn")
    processes = min(processes, clients)
    barrier, results = context.Barrier(processes), context.Queue()
    names = [f"bench-{c % orgs}" for c in range(clients)]
    workers = [
        context.Process(target=_client_process, args=(target, kind, names[p::processes], seconds, barrier, results))
        for p in range(processes)
    ]
    for worker in workers:
        worker.start()
    latencies: list[float] = []
    refused = 0
    client_cpu = 0.0
    server_cpu = server.cpu_seconds()
    for _ in workers:
        out, cpu = results.get(timeout=seconds + 120)
        client_cpu += cpu
        for lat, ref in out:
            latencies.extend(lat)
            refused += ref
    server_cpu = server.cpu_seconds() - server_cpu
    for worker in workers:
        worker.join()
    return Calls(latencies, refused, server_cpu, client_cpu, seconds)


def pooled(phases: list[Calls]) -> dict[str, Any]:
    """One kind's phases as one: calls per second over their summed time, latencies and CPU over all their calls."""
    latencies = [latency for phase in phases for latency in phase.latencies]
    calls = max(len(latencies), 1)
    return {
        "calls_per_second": len(latencies) / sum(phase.seconds for phase in phases),
        "refused": sum(phase.refused for phase in phases),
        **_latency(latencies),
        "server_cpu_us_per_call": round(sum(phase.server_cpu for phase in phases) / calls * 1e6),
        "client_cpu_us_per_call": round(sum(phase.client_cpu for phase in phases) / calls * 1e6),
    }


def compared_phases(
    server: ServerProcess, clients: int, args: argparse.Namespace, profile_to: Path | None = None
) -> dict[str, Any]:
    """`Check` against single-event appends at one client count, in `args.alternations` blocks of four phases
    ordered check, append, append, check. The machine's speed drifts by a fifth within a minute: phases side by
    side, in mirrored order, meet the same drift, which a check phase followed by one append phase did not (one
    run's ratio could be a quarter off the next's). Each block's own ratio is kept
    too, to show the spread."""
    measured: dict[str, list[Calls]] = {"check": [], "append": []}
    blocks = []
    for block in range(args.alternations):
        mine: dict[str, list[Calls]] = {"check": [], "append": []}
        for kind in ("check", "append", "append", "check"):
            profiler = None
            if profile_to is not None and kind == "append" and block == 0 and not mine["append"]:
                profiler = Profiler(server.pid, profile_to)
            calls = measure_calls(server, kind, clients, args.seconds, args.processes, args.orgs)
            if profiler is not None:
                profiler.stop()
            mine[kind].append(calls)
            measured[kind].append(calls)
        blocks.append(round(_calls(mine["append"]) / max(_calls(mine["check"]), 1), 3))
    ceiling, appends = pooled(measured["check"]), pooled(measured["append"])
    return {
        "check": ceiling,
        "append": appends,
        "ratio": round(appends["calls_per_second"] / ceiling["calls_per_second"], 3),
        "block_ratios": blocks,
    }


def _calls(phases: list[Calls]) -> int:
    return sum(len(phase.latencies) for phase in phases)


def _latency(latencies: list[float]) -> dict[str, float]:
    if len(latencies) < 2:
        return {"p50_ms": 0.0, "p99_ms": 0.0}
    cuts = statistics.quantiles(latencies, n=100)
    return {"p50_ms": round(cuts[49] * 1000, 2), "p99_ms": round(cuts[98] * 1000, 2)}


# The batching phases, in this order: each way of sending runs as often before as after the others, so the log's
# growth and the period closer's work behind the earlier phases weigh on every way alike.
BATCH_ORDER = ("batches", "appender", "stream", "stream", "appender", "batches")


def batches_phase(target: str, events: int, how: str) -> dict[str, Any]:
    """`events` single events sent one `append()` at a time through the batching appender over AppendEvents
    (how="appender") or StreamEvents ("stream"), or as hand-made 1,000-event AppendEvents batches ("batches")."""
    from client.appender import BatchingAppender
    from client.ledger_client import LedgerClient

    prefix = uuid.uuid4().hex[:12]
    raw = request_mappings(prefix, events)
    with LedgerClient(target, timeout=120) as client:
        began = time.perf_counter()
        if how in ("appender", "stream"):
            with BatchingAppender(client, transport="append" if how == "appender" else "stream") as appender:
                futures = [appender.append(event) for event in raw]
            results = [future.result() for future in futures]
            if how == "stream":  # a stream answers with totals only: each future holds None once acknowledged
                assert len(results) == events and all(r is None for r in results)
                return {"events_per_second": events / (time.perf_counter() - began)}
        else:
            results = []
            for start in range(0, events, 1000):
                results.extend(client.append_events(raw[start : start + 1000]))
        wall = time.perf_counter() - began
    assert len(results) == events and not any(r is None or r.duplicate for r in results)
    return {"events_per_second": events / wall}


def run_backend(backend: str, url: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    # The machine is shared: its 1-minute load average says how much of it the run had.
    out: dict[str, Any] = {"load_before": round(os.getloadavg()[0], 2)}
    extra = [f"--max-inflight={args.max_inflight}"] if args.max_inflight is not None else []
    extra += args.server_arg
    with ServerProcess(url, workdir / f"{backend}-server.log", extra_args=extra) as server:
        target = server.target
        measure_calls(server, "append", 4, 1.0, 1, args.orgs)  # warm: the orgs' logs and heads exist
        for clients in args.clients:
            profile_to = workdir / f"{backend}-{clients}.txt" if args.profile else None
            out[f"clients_{clients}"] = compared = compared_phases(server, clients, args, profile_to)
            if profile_to is not None:
                from bench.profile import summarise

                compared["append"]["profile"] = summarise(profile_to, top=30)
        if args.batch_events:
            seconds = {how: 0.0 for how in BATCH_ORDER}
            for how in BATCH_ORDER:
                seconds[how] += args.batch_events / batches_phase(target, args.batch_events, how)["events_per_second"]
            rates = {how: BATCH_ORDER.count(how) * args.batch_events / spent for how, spent in seconds.items()}
            out["batching"] = {
                "hand_made_1000": {"events_per_second": rates["batches"]},
                "appender": {"events_per_second": rates["appender"]},
                "appender_stream": {"events_per_second": rates["stream"]},
                "ratio": round(rates["appender"] / rates["batches"], 3),
                "stream_ratio": round(rates["stream"] / rates["batches"], 3),
            }
    out["load_after"] = round(os.getloadavg()[0], 2)
    return out


def _fresh_pg(admin_url: str) -> str:
    import sqlalchemy as sa

    name = f"bench_single_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def _drop_pg(admin_url: str, url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    engine.dispose()


def table(results: dict[str, Any]) -> str:
    lines = [
        f"{'store':<11} {'clients':>7} {'Check/s':>9} {'appends/s':>9} {'ratio':>6} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'refused':>7} {'server us/call C/A':>18} {'client us/call C/A':>18}"
    ]
    for backend, figures in results.items():
        for key, phase in figures.items():
            if not key.startswith("clients_"):
                continue
            a, c = phase["append"], phase["check"]
            lines.append(
                f"{backend:<11} {key[8:]:>7} {c['calls_per_second']:>9.0f} {a['calls_per_second']:>9.0f} "
                f"{phase['ratio']:>6.2f} {a['p50_ms']:>7.1f} {a['p99_ms']:>7.1f} {a['refused']:>7} "
                f"{c['server_cpu_us_per_call']:>8} / {a['server_cpu_us_per_call']:<7} "
                f"{c['client_cpu_us_per_call']:>8} / {a['client_cpu_us_per_call']:<7} "
                f"blocks {', '.join(f'{r:.2f}' for r in phase['block_ratios'])}"
            )
        if "batching" in figures:
            b = figures["batching"]
            lines.append(
                f"{backend:<11} batching appender {b['appender']['events_per_second']:.0f} events/s, hand-made "
                f"1,000-event batches {b['hand_made_1000']['events_per_second']:.0f} events/s, ratio {b['ratio']:.2f}; "
                f"over StreamEvents {b['appender_stream']['events_per_second']:.0f} events/s, "
                f"ratio {b['stream_ratio']:.2f}"
            )
        lines.append(f"{backend:<11} load average before / after: {figures['load_before']} / {figures['load_after']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.single_appends", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--clients", default="16,64", help="concurrent clients per phase, comma-separated")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each timed phase")
    parser.add_argument(
        "--alternations",
        type=int,
        default=2,
        help="blocks of check, append, append, check phases per client count (the ratio is over all of them)",
    )
    parser.add_argument("--processes", type=int, default=4, help="client processes the clients are spread over")
    parser.add_argument("--orgs", type=int, default=4, help="orgs the clients append to (client k: org k mod N)")
    parser.add_argument("--batch-events", type=int, default=50_000, help="events for the batching phase (0: skip)")
    parser.add_argument("--max-inflight", help="passed to the server (default: the server's own)")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="pass ARG to ledger-server (repeatable), e.g. --server-arg=--close-interval=0",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy record the server during append phases")
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN_URL)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the whole bench this many times, each store on a fresh server and database, and report the "
        "medians of the ratios too (on a shared machine one run's ratio can be a quarter off)",
    )
    parser.add_argument("--output", type=Path, help="write every figure as JSON here")
    args = parser.parse_args(argv)
    args.clients = [int(c) for c in args.clients.split(",")]
    if args.rounds < 1 or args.alternations < 1:
        parser.error(f"--rounds and --alternations must be at least 1, got {args.rounds} and {args.alternations}")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    rounds = [run_round(backends, args) for _ in range(args.rounds)]
    for results in rounds:
        print(table(results))
    document: dict[str, Any] = rounds[0]
    if args.rounds > 1:
        document = {"rounds": rounds, "medians": median_ratios(rounds)}
        print(medians_table(document["medians"]))
    if args.output:
        args.output.write_text(json.dumps(document, indent=2))
    return 0


def run_round(backends: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Every phase once for each store, on a fresh database and server."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-single-") as tmp:
        workdir = Path(tmp)
        for backend in backends:
            if backend == "sqlite":
                results[backend] = run_backend(backend, f"sqlite:///{workdir}/bench.db", args, workdir)
            else:
                url = _fresh_pg(args.pg_admin_url)
                try:
                    results[backend] = run_backend(backend, url, args, workdir)
                finally:
                    _drop_pg(args.pg_admin_url, url)
    return results


# The batching phase's ratios, by the name the medians give them; each client count's is "clients_<n>".
_BATCHING_RATIOS = {"appender": "ratio", "appender_stream": "stream_ratio"}


def target_ratios(figures: dict[str, Any]) -> dict[str, float]:
    """One store's ratios of one round: each client count's against `Check`, the appender's against batches."""
    ratios = {key: phase["ratio"] for key, phase in figures.items() if key.startswith("clients_")}
    if "batching" in figures:
        ratios.update({name: figures["batching"][field] for name, field in _BATCHING_RATIOS.items()})
    return ratios


def median_ratios(rounds: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per store, each ratio's median over the rounds, with every round's value in order."""
    medians: dict[str, dict[str, dict[str, Any]]] = {}
    for backend in rounds[0]:
        per_round = [target_ratios(r[backend]) for r in rounds]
        medians[backend] = {}
        for key in per_round[0]:
            values = [ratios[key] for ratios in per_round]
            medians[backend][key] = {"median": round(statistics.median(values), 3), "rounds": values}
    return medians


def medians_table(medians: dict[str, dict[str, dict[str, Any]]]) -> str:
    names = {"appender": "appender / hand-made", "appender_stream": "stream / hand-made"}
    lines = ["medians over the rounds (each round's value in order)"]
    for backend, ratios in medians.items():
        for key, figure in ratios.items():
            name = names.get(key) or f"{key.removeprefix('clients_')} clients / Check"
            rounds = ", ".join(f"{value:.2f}" for value in figure["rounds"])
            lines.append(f"{backend:<11} {name:<24} ratio {figure['median']:.2f}  ({rounds})")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
