"""Helpers for the billing tests: an org's ledger and billing engine on a clock the test moves by hand."""

from __future__ import annotations

import itertools
from typing import Any

from ledger.billing import BillingEngine, CloseResult, Invoice
from ledger.intake import Ledger
from ledger.log.entry import org_log_id
from ledger.ports import Appended
from ledger.timeutil import parse_rfc3339_micros
from storage.sql import SqlStore
from storage.sql.rollups import UsageRollups
from tests.conftest import FixedClock

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
SKEW = 5 * MINUTE  # events may be at most 5 minutes ahead of the ledger's clock

_ids = itertools.count()


def t(text: str) -> int:
    return parse_rfc3339_micros(text)


def event(org: str, workload: str, kind: str, at: str | int, **fields: Any) -> dict[str, Any]:
    from ledger.timeutil import format_micros

    return {
        "event_id": f"ev-{next(_ids):07d}",
        "org_id": org,
        "endpoint_id": fields.pop("endpoint_id", "ep-1"),
        "workload_id": workload,
        "workload_kind": fields.pop("workload_kind", "SERVING"),
        "instance_type": fields.pop("instance_type", "B200"),
        "worker_type": fields.pop("worker_type", "FLEX"),
        "type": kind,
        "occurred_at": at if isinstance(at, str) else format_micros(at),
        **fields,
    }


def heartbeat(org: str, at: str | int) -> dict[str, Any]:
    """An org HEARTBEAT (R28): the control plane has sent every event of the org before `at`."""
    from ledger.timeutil import format_micros

    moment = at if isinstance(at, str) else format_micros(at)
    return {"event_id": f"hb-{next(_ids):07d}", "org_id": org, "type": "HEARTBEAT", "occurred_at": moment}


class Desk:
    """One ledger, one billing engine and the clock both read; `org` is the org most calls default to."""

    def __init__(self, url: str, now: str, org: str = "acme") -> None:
        self.clock = FixedClock(t(now))
        self.store = SqlStore(url, clock=self.clock)
        self.ledger = Ledger(self.store, clock=self.clock)
        self.engine = BillingEngine(self.ledger, rollups=UsageRollups(self.store))
        self.org = org

    def close_store(self) -> None:
        self.store.close()

    def at(self, now: str) -> None:
        self.clock.now = t(now)

    def catch_up(self, instant: int) -> None:
        """Move the clock forward so an event at `instant` is not in the future."""
        self.clock.now = max(self.clock.now, instant - SKEW)

    def append(self, *events: dict[str, Any]) -> list[Appended]:
        for e in events:
            self.catch_up(t(e["occurred_at"]))
        return self.ledger.append_events(list(events))

    def session(
        self, workload: str, up: str, stop: str | None = None, *, org: str | None = None, **fields: Any
    ) -> list[Appended]:
        """A workload's UP (and STOPPED, SCALED_DOWN) events."""
        org = org or self.org
        events = [event(org, workload, "WORKLOAD_UP", up, **dict(fields))]
        if stop is not None:
            events.append(event(org, workload, "WORKLOAD_STOPPED", stop, stop_reason="SCALED_DOWN", **dict(fields)))
        return self.append(*events)

    def stop(self, workload: str, at: str, *, org: str | None = None, **fields: Any) -> list[Appended]:
        return self.append(
            event(org or self.org, workload, "WORKLOAD_STOPPED", at, stop_reason="SCALED_DOWN", **fields)
        )

    def heartbeat(self, at: str, *, org: str | None = None) -> list[Appended]:
        """An org HEARTBEAT at `at` (R28): the control plane has sent every event before it."""
        return self.append(heartbeat(org or self.org, at))

    def close(self, at: str, *, org: str | None = None, heartbeat: bool = True) -> CloseResult:
        """Evaluate the org's invoices with the wall clock at `at`, moving the clock there first if it is behind.

        With `heartbeat` (the default) the control plane is live: a HEARTBEAT at `at` (R28) says every event before
        it is in the log, so every open session is proven running to `at` and the settled-through time reaches it.
        """
        if heartbeat:
            self.heartbeat(at, org=org)
        self.clock.now = max(self.clock.now, t(at))
        return self.engine.close(org or self.org, t(at))

    def invoices(self, org: str | None = None) -> list[Invoice]:
        return list(self.engine.books(org or self.org).invoices)

    def entry_bytes(self, org: str | None = None) -> list[tuple[int, bytes, bytes]]:
        """(sequence, body, entry hash) of every INVOICE entry: what must never change once issued (R22)."""
        entries = self.store.entries_of_kind(org_log_id(org or self.org), ["INVOICE"])
        return [(e.sequence, e.body, e.entry_hash) for e in entries]


def assert_invoices_rederive(desk: Desk) -> None:
    """Every INVOICE entry of every org log equals the invoice drafted again from the raw entries before it
    (ledger.billing.rederive, what `ledgerctl audit verify` checks): what a rule test issued, an auditor can
    re-derive."""
    from ledger.billing.rederive import rederive_invoices
    from ledger.log.audit import all_log_ids
    from ledger.log.entry import SYSTEM_LOG, org_of_log

    system = list(desk.store.iter_entries(SYSTEM_LOG))
    for log_id in all_log_ids(desk.store):
        org_id = org_of_log(log_id)
        if org_id is not None:
            findings = rederive_invoices(org_id, desk.store.iter_entries(log_id), system)
            assert [(f.number, f.differences) for f in findings if not f.ok] == [], log_id


def amounts(invoice: Invoice) -> list[tuple[str, str, str]]:
    """(kind, rule, amount) per line, for compact assertions."""
    return [(line.kind.value, line.rule, f"{line.amount:.2f}") for line in invoice.lines]
