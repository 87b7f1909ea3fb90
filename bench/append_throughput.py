"""Appends per second from several processes on one database: all into one org's log, or each into its own.

    .venv/bin/python bench/append_throughput.py --database-url postgresql+psycopg://postgres@127.0.0.1/bench

Each process runs Ledger.append_events on its own SqlStore (no gRPC), as a server process would, and starts
on a shared barrier; the figure is all events over the wall time from the first start to the last finish.
On PostgreSQL it also samples pg_stat_activity every 5 ms: the share of busy ledger sessions that were waiting
for a lock (a log's head row) shows the per-log serialization directly, whatever else loads the machine.
Event IDs are fresh on every run, so the same database can be measured again.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import threading
import time
import uuid
from typing import Any

from sqlalchemy import text

from ledger.intake import Ledger
from storage.sql import SqlStore


def request_event(event_id: str, org_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "org_id": org_id,
        "endpoint_id": "ep-1",
        "workload_id": "wl-1",
        "workload_kind": "SERVING",
        "instance_type": "A100",
        "type": "REQUEST_STARTED",
        "request_id": event_id,
        "occurred_at": "2026-10-05T09:00:00Z",
    }


def _appender(url: str, org_id: str, batches: int, size: int, start: Any, results: Any) -> None:
    store = SqlStore(url)
    ledger = Ledger(store)
    prefix = uuid.uuid4().hex[:12]
    work = [[request_event(f"{prefix}-{b}-{i}", org_id) for i in range(size)] for b in range(batches)]
    start.wait()
    began = time.perf_counter()
    for batch in work:
        ledger.append_events(batch)
    results.put((began, time.perf_counter()))
    store.close()


class LockWaits:
    """Samples how many of the database's busy sessions are waiting for a lock, until stopped."""

    QUERY = text(
        "SELECT count(*) FILTER (WHERE wait_event_type = 'Lock'), count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()"
    )

    def __init__(self, store: SqlStore) -> None:
        self.store, self.waiting, self.busy = store, 0, 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        with self.store.reader.connect() as conn:
            while not self.done.wait(0.005):
                waiting, busy = conn.execute(self.QUERY).one()
                self.waiting += waiting
                self.busy += busy
                conn.rollback()

    def share(self) -> float:
        self.done.set()
        self.thread.join()
        return self.waiting / self.busy if self.busy else 0.0


def measure(url: str, processes: int, orgs: int, batches: int, size: int) -> tuple[float, float, float | None]:
    """(events/s, transactions/s, lock-wait share or None) with `processes` appenders over `orgs` org logs."""
    sampler_store = SqlStore(url) if url.startswith("postgresql") else None
    context = mp.get_context("spawn")
    start, results = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=_appender, args=(url, f"bench-{p % orgs}", batches, size, start, results))
        for p in range(processes)
    ]
    for worker in workers:
        worker.start()
    sampler = LockWaits(sampler_store) if sampler_store is not None else None
    spans = [results.get(timeout=600) for _ in workers]
    share = sampler.share() if sampler is not None else None
    for worker in workers:
        worker.join()
    if sampler_store is not None:
        sampler_store.close()
    wall = max(end for _, end in spans) - min(began for began, _ in spans)
    return processes * batches * size / wall, processes * batches / wall, share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--batches", type=int, default=200, help="batches per process")
    parser.add_argument("--sizes", default="1,50", help="events per batch, comma-separated")
    args = parser.parse_args()
    Ledger(SqlStore(args.database_url)).store.close()  # migrate once, before the processes race to
    print(f"{'events/batch':>12} {'org logs':>8} {'events/s':>10} {'batches/s':>10} {'lock waits':>10}")
    for size in (int(s) for s in args.sizes.split(",")):
        for orgs in (1, args.processes):
            events, transactions, share = measure(args.database_url, args.processes, orgs, args.batches, size)
            waits = f"{share:.0%}" if share is not None else "-"
            print(f"{size:>12} {orgs:>8} {events:>10.0f} {transactions:>10.0f} {waits:>10}", flush=True)


if __name__ == "__main__":
    main()
