"""The one benchmark command (issue #9): `python -m bench.run [--quick] [--backend sqlite|postgresql|both]`.

Per backend, on fresh databases, loopback only, every loop bounded:
  ingest   - a real ledger-server child; several client processes send AppendEvents batches for many orgs
  ceiling  - the same rows into a fresh database with plain executemany (bench.ceiling)
  biglog   - one org log built to --log-size through StreamEvents (the bulk path), server RSS sampled as it grows
  lookup   - dispute-lookup queries on that log (bench.lookup)
  verify   - ledger.log.audit.verify over that log, its invoices re-derived from the raw entries, its usage rollups
             re-derived and compared (storage.sql.rollup_check), and
             merkle.inclusion_proof latency (bench.verification)
Results go to bench/results/<label>-<time>.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
US = 1_000_000
DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BIG_ORG = "org-big"

# Issue #9's targets on the 2-core benchmark machine.
TARGETS = {
    "sqlite_ingest_events_per_second": 50_000,
    "sqlite_ingest_ceiling_ratio": 0.5,
    "postgresql_ingest_events_per_second": 20_000,
    "lookup_p99_ms": 20.0,
    "verify_entries_per_second": 300_000,
    "inclusion_proof_p99_ms": 2.0,
}

FULL = {"ingest_events": 200_000, "log_size": 1_000_000, "lookups": 2000, "proofs": 2000}
QUICK = {"ingest_events": 30_000, "log_size": 100_000, "lookups": 300, "proofs": 300}


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages: above the core count, other work was competing with the benchmark."""
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- databases ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(backend: str, name: str, args: argparse.Namespace) -> Iterator[str]:
    """A new empty database for one phase, removed afterwards (PostgreSQL: `bench_*`, dropped WITH (FORCE))."""
    if backend == "sqlite":
        path = Path(args.workdir) / f"{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    import psycopg

    database = f"bench_{name}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    base = args.pg_admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{database}"
    finally:
        with psycopg.connect(args.pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@contextlib.contextmanager
def standin_autoanalyze(url: str, every: float = 10.0) -> Iterator[dict[str, Any]]:
    """On a PostgreSQL with autovacuum off (this machine's CI config), ANALYZE entries every `every` seconds.

    Production PostgreSQL autovacuums: as a table grows, autoanalyze keeps the planner's statistics current.
    Without it a table loaded from empty keeps "empty" statistics, and the plans psycopg prepares after five
    executions can turn into sequential scans of a million rows. The harness stands in for autoanalyze so the
    figures are those of a normally run database; the results record that it did.
    """
    info: dict[str, Any] = {}
    if not url.startswith("postgresql"):
        yield info
        return
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SHOW autovacuum").fetchone()
    info["autovacuum"] = row[0] if row else "?"
    if info["autovacuum"] == "on":
        yield info
        return
    stop = threading.Event()
    runs = [0]

    def analyze() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not stop.wait(every):
                conn.execute("ANALYZE entries")
                runs[0] += 1

    worker = threading.Thread(target=analyze, name="standin-autoanalyze", daemon=True)
    worker.start()
    try:
        yield info
    finally:
        stop.set()
        worker.join(60)
        info["standin_analyze_runs"] = runs[0]
        info["standin_analyze_every_seconds"] = every


# -- phases --------------------------------------------------------------------------------------------


def _timeline(events_per_org: int) -> tuple[int, int]:
    """(start, until): history starts far enough back that no generated event lies in the future."""
    now = time.time_ns() // 1000
    hour = 3600 * US
    days_back = 14 + events_per_org // 20_000  # the generator makes well under 20,000 events per org-day
    return (now - days_back * 24 * hour) // hour * hour, now - 10 * 60 * US


def phase_ingest(backend: str, args: argparse.Namespace, out: dict[str, Any]) -> None:
    from bench import ceiling
    from bench.ingest import ClientPlan, run_clients
    from bench.server import Profiler, ServerProcess
    from bench.workload import org_ids
    from storage.sql import SqlStore

    orgs = org_ids(args.orgs)
    per_client = [tuple(orgs[k :: args.clients]) for k in range(args.clients)]
    start, until = _timeline(args.ingest_events // max(1, args.orgs))
    rows: list[Any] = []
    with fresh_database(backend, "ingest", args) as url:
        server = ServerProcess(url, Path(args.workdir) / f"server-{backend}-ingest.log", extra_args=args.server_arg)
        profiler = None
        try:
            plans = [
                ClientPlan(
                    index=k,
                    target=server.target,
                    mode="append",
                    orgs=per_client[k],
                    events=args.ingest_events // args.clients + (k < args.ingest_events % args.clients),
                    batch=args.batch,
                    start_micros=start,
                    until_micros=until,
                    endpoints=6,
                    seed=args.seed + k,
                    ids=args.ids,
                )
                for k in range(args.clients)
            ]
            if args.profile:
                profiler = Profiler(server.pid, RESULTS_DIR / f"{args.label}-{backend}-ingest.collapsed")
            _log(f"{backend}: ingest {args.ingest_events} events, {args.clients} clients, {args.orgs} orgs")
            with standin_autoanalyze(url) as maintenance:
                result = run_clients(plans, server)
            result["database_maintenance"] = maintenance
            if profiler is not None:
                from bench.profile import summarise

                path = profiler.stop()
                profiler = None
                result["profile"] = {"collapsed": str(path.relative_to(REPO)), **summarise(path)}
            result["server_memory_kib"] = server.memory_kib()
            result["load_average_after"] = load_average()
            out["ingest"] = result
            _log(f"{backend}: ingest {result['events_per_second']:,.0f} events/s")
        finally:
            if profiler is not None:
                profiler.stop()
            server.stop()
        if "ceiling" in args.phases:
            store = SqlStore(url, migrate_schema=False)
            try:
                rows = ceiling.stored_rows(store)
            finally:
                store.close()
            if len(rows) != out["ingest"]["events"] - out["ingest"]["duplicates"]:
                raise RuntimeError(f"the server stored {len(rows)} rows for {out['ingest']['events']} events")
    if rows:
        with fresh_database(backend, "ceiling", args) as url:
            result = ceiling.insert_ceiling(url, rows, args.batch)
        result["ratio_ingest_to_ceiling"] = round(out["ingest"]["events_per_second"] / result["events_per_second"], 3)
        out["ceiling"] = result
        _log(f"{backend}: ceiling {result['events_per_second']:,.0f} rows/s")
        if backend == "postgresql":
            with fresh_database(backend, "ceiling_copy", args) as url:
                result = ceiling.insert_ceiling(url, rows, args.batch, method="copy")
            result["ratio_ingest_to_ceiling"] = round(
                out["ingest"]["events_per_second"] / result["events_per_second"], 3
            )
            out["ceiling_copy"] = result
            _log(f"{backend}: COPY ceiling {result['events_per_second']:,.0f} rows/s")


def phase_biglog(backend: str, args: argparse.Namespace, url: str, out: dict[str, Any]) -> None:
    """Build one org's log to --log-size over StreamEvents, sampling the server's size and memory as it grows."""
    import grpc
    from usageledger.v1 import ledger_pb2 as pb
    from usageledger.v1 import ledger_pb2_grpc as pb_grpc

    from bench.ingest import ClientPlan, run_clients
    from bench.server import ServerProcess

    start, until = _timeline(args.log_size)
    server = ServerProcess(url, Path(args.workdir) / f"server-{backend}-biglog.log", extra_args=args.server_arg)
    samples: list[dict[str, Any]] = []
    t0 = time.monotonic()
    try:
        channel = grpc.insecure_channel(server.target)
        stub = pb_grpc.LedgerServiceStub(channel)

        def sample() -> None:
            try:
                size = stub.GetLogHead(pb.GetLogHeadRequest(log_id=f"org/{BIG_ORG}"), timeout=10).head.size
            except grpc.RpcError:
                size = 0
            samples.append({"seconds": round(time.monotonic() - t0, 2), "size": size, **server.memory_kib()})

        sample()
        plans = [
            ClientPlan(
                index=k,
                target=server.target,
                mode="stream",
                orgs=(BIG_ORG,),
                events=args.log_size // args.clients + (k < args.log_size % args.clients),
                batch=args.batch,
                start_micros=start,
                until_micros=until,
                endpoints=24,
                seed=args.seed + 100,
                endpoint_share=(k, args.clients),
                ids=args.ids,
            )
            for k in range(args.clients)
        ]
        _log(f"{backend}: building a {args.log_size}-entry log over StreamEvents")
        with standin_autoanalyze(url) as maintenance:
            result = run_clients(plans, server, on_tick=sample, tick=1.0)
        result["database_maintenance"] = maintenance
        channel.close()
    finally:
        server.stop()
    result["load_average_after"] = load_average()
    result["memory_by_size"] = _memory_by_size(samples, args.log_size)
    result["samples"] = samples
    out["biglog"] = result
    _log(f"{backend}: big log {result['events_per_second']:,.0f} events/s")


def _memory_by_size(samples: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """The first sample at or past 1/8, 1/4, 1/2 and all of the log: flat VmHWM means memory does not grow."""
    picked = []
    for fraction in (0.125, 0.25, 0.5, 1.0):
        sample = next((s for s in samples if s["size"] >= fraction * size), None)
        if sample is not None:
            picked.append({"fraction": fraction, **sample})
    return picked


def phase_reads(backend: str, args: argparse.Namespace, url: str, out: dict[str, Any]) -> None:
    from bench import lookup, verification
    from ledger.log.entry import SYSTEM_LOG, org_log_id
    from storage.sql import SqlStore

    store = SqlStore(url, migrate_schema=False)  # the server migrated it
    try:
        # Fresh statistics, and on PostgreSQL a set visibility map, as autovacuum keeps them on a production
        # database (this machine's runs with autovacuum off): without it an index-only scan of a freshly loaded
        # table still visits the heap for every row (the endpoint-window read took twice as long).
        if store.dialect == "postgresql":
            with store.writer.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM (ANALYZE)")
        else:
            with store.writer.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
        if "lookup" in args.phases:
            # As a server with --signing-key runs, so that the lookups asking for proofs (include_proofs) prove
            # the entries they cite against the newest signed checkpoint of their log.
            signed = _sign_checkpoints(store, [org_log_id(BIG_ORG), SYSTEM_LOG])
            cases = lookup.draw_cases(store, BIG_ORG, args.lookups)
            reconstruction = lookup.ReconstructionLookup(store)
            catch_up_seconds = reconstruction.catch_up(BIG_ORG)
            result = lookup.measure(reconstruction, cases)
            result["with_proofs"] = lookup.measure(lookup.ReconstructionLookup(store, with_proofs=True), cases)
            result["log_size"] = store.head(org_log_id(BIG_ORG)).size
            result["implementation"] = (
                "ledger.dispute.reconstruct_charges and the serialized response message, in-process as the server "
                "handler runs them (no transport)"
            )
            result["rollup_catch_up_seconds"] = round(catch_up_seconds, 2)
            result["signed_checkpoint_sizes"] = signed
            result["index_reads_only"] = lookup.measure(lookup.IndexedQueryLookup(store), cases)
            result["plans"] = lookup.query_plans(store, cases)
            result["load_average_after"] = load_average()
            out["lookup"] = result
            _log(f"{backend}: lookup p99 {result['endpoint_window']['p99_ms']} ms")
        if "verify" in args.phases:
            out["verify"] = verification.verify_rate(store, org_log_id(BIG_ORG))
            out["verify"]["load_average_after"] = load_average()
            _log(f"{backend}: verify {out['verify']['entries_per_second']:,.0f} entries/s")
            out["rederive"] = verification.rederive_rate(store, org_log_id(BIG_ORG), BIG_ORG)
            _log(f"{backend}: invoices re-derived at {out['rederive']['entries_per_second']:,.0f} entries/s")
            rollups = verification.rollup_check_rate(store, org_log_id(BIG_ORG), BIG_ORG)
            if rollups is not None:
                out["rollup_check"] = rollups
                _log(f"{backend}: rollups re-derived and compared at {rollups['entries_per_second']:,.0f} entries/s")
            proofs = verification.inclusion_proofs(store, org_log_id(BIG_ORG), args.proofs)
            if proofs is not None:
                out["inclusion_proof"] = proofs
    finally:
        store.close()


def _sign_checkpoints(store: Any, log_ids: list[str]) -> dict[str, int]:
    from ledger.log.note import NoteSigner, generate_signer_key
    from ledger.log.signing import CheckpointSigner

    signer = CheckpointSigner(store, NoteSigner(generate_signer_key("bench.example")))
    return {log_id: signer.sign(log_id)[0].size for log_id in log_ids}


def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "ingest" in args.phases or "ceiling" in args.phases:
        phase_ingest(backend, args, out)
    if {"biglog", "lookup", "verify"} & set(args.phases):
        with fresh_database(backend, "biglog", args) as url:
            phase_biglog(backend, args, url, out)
            phase_reads(backend, args, url, out)
    return out


# -- machine, targets, table -------------------------------------------------------------------------


def machine(args: argparse.Namespace) -> dict[str, Any]:
    import google.protobuf
    import grpc
    import sqlalchemy

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = next(
        line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "mem_total_gib": round(int(memory) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "grpcio": grpc.__version__,
        "protobuf": google.protobuf.__version__,
        "sqlalchemy": sqlalchemy.__version__,
    }
    if "postgresql" in args.backends:
        import psycopg

        with psycopg.connect(args.pg_admin_url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            info["postgresql"] = row[0] if row else "?"
            info["psycopg"] = psycopg.__version__
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True)
        info["git"] = head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    return info


def check_targets(results: dict[str, Any]) -> dict[str, Any]:
    checks: dict[str, Any] = {}

    def check(name: str, value: float | None, target: float, higher_is_better: bool = True) -> None:
        if value is not None:
            met = value >= target if higher_is_better else value < target
            checks[name] = {"value": value, "target": target, "met": met}

    for backend, r in results.items():
        ingest = r.get("ingest", {}).get("events_per_second")
        check(f"{backend}_ingest_events_per_second", ingest, TARGETS[f"{backend}_ingest_events_per_second"])
        if backend == "sqlite":
            check(
                "sqlite_ingest_ceiling_ratio",
                r.get("ceiling", {}).get("ratio_ingest_to_ceiling"),
                TARGETS["sqlite_ingest_ceiling_ratio"],
            )
        for kind in ("endpoint_window", "request"):
            check(
                f"{backend}_lookup_{kind}_p99_ms",
                r.get("lookup", {}).get(kind, {}).get("p99_ms"),
                TARGETS["lookup_p99_ms"],
                higher_is_better=False,
            )
        check(
            f"{backend}_verify_entries_per_second",
            r.get("verify", {}).get("entries_per_second"),
            TARGETS["verify_entries_per_second"],
        )
        check(
            f"{backend}_inclusion_proof_p99_ms",
            r.get("inclusion_proof", {}).get("p99_ms"),
            TARGETS["inclusion_proof_p99_ms"],
            higher_is_better=False,
        )
    return checks


def table(document: dict[str, Any]) -> str:
    lines = [
        f"usage-ledger benchmark '{document['label']}' ({document['machine']['nproc']} cores, "
        f"{document['machine']['cpu_model']})",
        "",
    ]
    rows: list[tuple[str, ...]] = [("metric", *document["results"])]

    def row(name: str, get: Any) -> None:
        values = []
        for r in document["results"].values():
            try:
                value = get(r)
            except (KeyError, TypeError, IndexError):
                value = None
            values.append("-" if value is None else f"{value:,}" if isinstance(value, (int, float)) else str(value))
        rows.append((name, *values))

    row("ingest events/s (gRPC AppendEvents)", lambda r: round(r["ingest"]["events_per_second"]))
    row(
        "  server CPU cores / client CPU cores",
        lambda r: f"{r['ingest']['server_cpu_cores']} / {r['ingest']['client_cpu_cores']}",
    )
    row(
        "  postgres / others' CPU cores",
        lambda r: f"{r['ingest']['postgres_cpu_cores']} / {r['ingest']['other_cpu_cores']}",
    )
    row(
        "  batch latency p50 / p99 ms",
        lambda r: f"{r['ingest']['batch_latency_ms']['p50']} / {r['ingest']['batch_latency_ms']['p99']}",
    )
    row("ceiling rows/s (executemany)", lambda r: round(r["ceiling"]["events_per_second"]))
    row("  ingest / ceiling", lambda r: r["ceiling"]["ratio_ingest_to_ceiling"])
    row("COPY ceiling rows/s (PostgreSQL)", lambda r: round(r["ceiling_copy"]["events_per_second"]))
    row("  ingest / COPY ceiling", lambda r: r["ceiling_copy"]["ratio_ingest_to_ceiling"])
    row("big log events/s (StreamEvents, 1 org)", lambda r: round(r["biglog"]["events_per_second"]))
    row(
        "  server / client / others' CPU cores",
        lambda r: (
            f"{r['biglog']['server_cpu_cores']} / {r['biglog']['client_cpu_cores']} / {r['biglog']['other_cpu_cores']}"
        ),
    )
    row("  log size", lambda r: r["lookup"]["log_size"])
    row(
        "  server VmHWM MiB at 1/8, 1/4, 1/2, 1",
        lambda r: " ".join(str(round(s["VmHWM"] / 1024)) for s in r["biglog"]["memory_by_size"]),
    )
    row(
        "lookup endpoint+-30min p50 / p99 ms",
        lambda r: f"{r['lookup']['endpoint_window']['p50_ms']} / {r['lookup']['endpoint_window']['p99_ms']}",
    )
    row("  entries cited per lookup (mean)", lambda r: r["lookup"]["endpoint_window"]["rows_mean"])
    row(
        "  with inclusion proofs p50 / p99 ms",
        lambda r: (
            f"{r['lookup']['with_proofs']['endpoint_window']['p50_ms']} / "
            f"{r['lookup']['with_proofs']['endpoint_window']['p99_ms']}"
        ),
    )
    row(
        "  raw index reads alone p50 / p99 ms",
        lambda r: (
            f"{r['lookup']['index_reads_only']['endpoint_window']['p50_ms']} / "
            f"{r['lookup']['index_reads_only']['endpoint_window']['p99_ms']}"
        ),
    )
    row("  rollup catch-up before the first lookup s", lambda r: r["lookup"]["rollup_catch_up_seconds"])
    row(
        "lookup request_id p50 / p99 ms",
        lambda r: f"{r['lookup']['request']['p50_ms']} / {r['lookup']['request']['p99_ms']}",
    )
    row(
        "  with inclusion proofs p50 / p99 ms",
        lambda r: (
            f"{r['lookup']['with_proofs']['request']['p50_ms']} / {r['lookup']['with_proofs']['request']['p99_ms']}"
        ),
    )
    row("audit verify entries/s", lambda r: round(r["verify"]["entries_per_second"]))
    row(
        "invoices re-derived from the whole log, entries/s (invoices)",
        lambda r: f"{round(r['rederive']['entries_per_second']):,} ({r['rederive']['invoices']})",
    )
    row(
        "rollups re-derived and compared, entries/s (rows)",
        lambda r: f"{round(r['rollup_check']['entries_per_second']):,} ({r['rollup_check']['rows']:,})",
    )
    row(
        "inclusion proof p50 / p99 ms", lambda r: f"{r['inclusion_proof']['p50_ms']} / {r['inclusion_proof']['p99_ms']}"
    )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, r in enumerate(rows):
        lines.append(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    for name, c in document["targets"].items():
        lines.append(f"{'met ' if c['met'] else 'MISS'}  {name}: {c['value']:,} (target {c['target']:,})")
    return "\n".join(lines)


# -- command line ----------------------------------------------------------------------------------------


PHASES = ("ingest", "ceiling", "biglog", "lookup", "verify")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a minute or two per backend)")
    parser.add_argument(
        "--ingest-events", type=int, help=f"events sent over AppendEvents (default {FULL['ingest_events']:,})"
    )
    parser.add_argument("--log-size", type=int, help=f"entries in the big org log (default {FULL['log_size']:,})")
    parser.add_argument("--lookups", type=int, help="lookups of each kind to time")
    parser.add_argument("--proofs", type=int, help="inclusion proofs to time")
    parser.add_argument("--clients", type=int, default=4, help="client processes (default %(default)s)")
    parser.add_argument("--batch", type=int, default=1000, help="events per batch (default %(default)s)")
    parser.add_argument("--orgs", type=int, default=48, help="orgs in the ingest phase (default %(default)s)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--ids",
        choices=["random", "ordered"],
        default="random",
        help="event and request IDs: random (UUIDv4-like, the default) or time-ordered (ULID-like)",
    )
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset of " + ", ".join(PHASES))
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="pass ARG to ledger-server (repeatable), e.g. --server-arg=--close-interval=0",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy record the server during the ingest phase")
    parser.add_argument("--label", default="run", help="name for this run in the results file")
    parser.add_argument("--output", type=Path, help="results file (default bench/results/LABEL-TIME.json)")
    parser.add_argument("--pg-admin-url", default=os.environ.get("LEDGER_BENCH_PG", DEFAULT_PG_ADMIN_URL))
    parser.add_argument("--workdir", help="where SQLite files and server logs go (default: a temporary directory)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    for key, value in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    for name in ("ingest_events", "log_size", "lookups", "proofs", "clients", "batch", "orgs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    own_workdir = args.workdir is None
    if own_workdir:
        args.workdir = tempfile.mkdtemp(prefix="ledger-bench-")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y%m%dT%H%M%S")
    output = args.output or RESULTS_DIR / f"{args.label}-{started}.json"
    document: dict[str, Any] = {
        "label": args.label,
        "started": started,
        "command": " ".join(
            [Path(sys.executable).name, "-m", "bench.run", *(argv if argv is not None else sys.argv[1:])]
        ),
        "parameters": {
            k: getattr(args, k)
            for k in (
                "backends",
                "phases",
                "ingest_events",
                "log_size",
                "lookups",
                "proofs",
                "clients",
                "batch",
                "orgs",
                "seed",
                "ids",
            )
        },
        "machine": machine(args),
        "results": {},
    }
    try:
        for backend in args.backends:
            t0 = time.monotonic()
            document["results"][backend] = run_backend(backend, args)
            document["results"][backend]["phase_seconds"] = round(time.monotonic() - t0, 1)
    finally:
        if own_workdir:
            shutil.rmtree(args.workdir, ignore_errors=True)
    document["targets"] = check_targets(document["results"])
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(table(document))
    print(f"\nresults: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
