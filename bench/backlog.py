"""Catching up a backlog (issue #22): how fast the billing engine issues the invoices of a log it has never billed.

    .venv/bin/python -m bench.backlog [--entries 1000000] [--backend sqlite|postgresql]

One org's past weeks (bench.workload's realistic stream: 24 endpoints, autoscaled replicas, requests, storage) with
an org HEARTBEAT every 2 simulated minutes (R28) are appended to a fresh database, untimed, and copied. Then, timed:

  rating   - the bare rating of those entries: the usage rollups caught up from nothing and every workload rated
             to its evidence (RollupFollower.catch_up + billing_rating of everything), on one copy;
  backlog  - BillingEngine.close on the other copy, as the closer's first evaluation after the backlog landed:
             the rollups caught up, the org rated once, and every invoice cut (one per $50.00 crossing, R17, and
             each month end the settled-through time passed) and appended in one conditional append.

The issue's target: the backlog's rate (entries / second) at least half the bare rating's. Results go to
bench/results/backlog-<time>.json and stdout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.workload import OrgStream
from ledger.billing import BillingEngine
from ledger.intake import Ledger
from ledger.timeutil import format_micros, parse_rfc3339_micros
from ledger.usage import RollupFollower
from storage.sql import SqlStore
from storage.sql.rollups import UsageRollups
from wire.convert import event_to_raw

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ORG = "org-backlog"
START = parse_rfc3339_micros("2026-05-01T00:00:00Z")
HEARTBEAT_EVERY_MINUTES = 2


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def backlog_events(entries: int) -> list[dict[str, Any]]:
    """The org's events in the order its control plane sends them, HEARTBEATs included, `entries` in all."""
    stream = OrgStream(ORG, seed=22, start=START, endpoints=24, ids="ordered")
    events: list[dict[str, Any]] = []
    minute = 0
    while len(events) < entries:
        events.extend(event_to_raw(e) for e in stream.step())
        minute += 1
        if minute % HEARTBEAT_EVERY_MINUTES == 0:
            at = format_micros(stream.now)
            events.append({"event_id": f"hb-{minute:08d}", "org_id": ORG, "type": "HEARTBEAT", "occurred_at": at})
    return events[:entries]


def _micros(value: int | str) -> int:
    return value if isinstance(value, int) else parse_rfc3339_micros(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--workdir", default=None, help="where the SQLite files go (default: a temporary directory)")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="backlog-"))
    work.mkdir(parents=True, exist_ok=True)
    events = backlog_events(args.entries)
    last = max(
        int(e["occurred_at"]) if isinstance(e["occurred_at"], int) else parse_rfc3339_micros(e["occurred_at"])
        for e in events
    )
    clock = Clock(last + 3600 * 1_000_000)  # an hour after the last event: the grace of its month has not passed
    built = work / "built.db"
    store = SqlStore(f"sqlite:///{built}", clock=clock)
    ledger = Ledger(store, clock=clock)
    started = time.monotonic()
    for at in range(0, len(events), 10_000):
        ledger.append_events(events[at : at + 10_000])
    build_seconds = time.monotonic() - started
    size = store.head(f"org/{ORG}").size
    store.close()
    shutil.copy(built, work / "rating.db")
    shutil.copy(built, work / "backlog.db")

    store = SqlStore(f"sqlite:///{work / 'rating.db'}", clock=clock)
    ledger = Ledger(store, clock=clock)
    prices, plans = ledger.price_history(), ledger.account_history(ORG).plans()
    started = time.monotonic()
    rollups = UsageRollups(store)
    RollupFollower(rollups).catch_up(ORG, prices, plans)
    rating = rollups.billing_rating(ORG, prices, plans, changed_from=0, units_from=None)
    rating_seconds = time.monotonic() - started
    sessions = len(rating.sessions)
    store.close()

    store = SqlStore(f"sqlite:///{work / 'backlog.db'}", clock=clock)
    ledger = Ledger(store, clock=clock)
    engine = BillingEngine(ledger, rollups=UsageRollups(store))
    started = time.monotonic()
    result = engine.close(ORG)
    backlog_seconds = time.monotonic() - started
    invoices = engine.books(ORG).invoices
    store.close()

    figures = {
        "entries": size,
        "span": f"{format_micros(START)} to {format_micros(last)}",
        "sessions": sessions,
        "build_seconds": round(build_seconds, 2),
        "rating_seconds": round(rating_seconds, 3),
        "rating_entries_per_second": round(size / rating_seconds),
        "backlog_seconds": round(backlog_seconds, 3),
        "backlog_entries_per_second": round(size / backlog_seconds),
        "invoices": len(invoices),
        "issued_in_one_evaluation": len(result.issued),
        "threshold_invoices": sum(1 for inv in invoices if inv.trigger.value == "THRESHOLD"),
        "month_end_invoices": sum(1 for inv in invoices if inv.trigger.value == "MONTH_END"),
        "invoiced_total": str(sum(inv.total for inv in invoices)),
        "backlog_over_rating": round(rating_seconds / backlog_seconds, 3),
        "target": 0.5,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (RESULTS_DIR / f"backlog-{stamp}.json").write_text(json.dumps(figures, indent=2) + "\n")
    for name, value in figures.items():
        print(f"{name:32} {value}")


if __name__ == "__main__":
    main()
