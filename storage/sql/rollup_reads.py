"""Reads of the usage rollups for usage queries and billing evaluations (R10, R13, R14, R28); the follower keeps
them current (ledger/usage/follower.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal
from fractions import Fraction

from sqlalchemy import and_, bindparam, func, or_, select
from sqlalchemy.engine import Connection

from ledger.events import UsageEvent
from ledger.log.entry import org_log_id
from ledger.plans import PlanHistory
from ledger.pricebook import PriceHistory
from ledger.rating import OrgRating, StorageCharge, WorkloadRating, rate_workload
from storage.sql.driver import DriverQuery
from storage.sql.lists import member_of
from storage.sql.rollup_rows import (
    RolledSession,
    RolledStorage,
    decode_run,
    int_or_none,
    later,
    load_lifecycle,
    rolled_session,
    rolled_storage_charge,
)
from storage.sql.schema import rollup_cursors, rollup_evidence, rollup_storage, rollup_workloads
from storage.sql.store import SqlStore


class UsageReads:
    """The rollups' reads for usage and billing (part of storage.sql.rollups.UsageRollups)."""

    store: SqlStore

    def sessions_in(
        self,
        org_id: str,
        start: int,
        end: int,
        endpoint_id: str | None,
        prices: PriceHistory,
        plans: PlanHistory,
        as_of: int | None = None,
    ) -> list[RolledSession]:
        """Rated sessions with any unit starting in [start, end); open ones re-rated to their evidence (R10, R28),
        cut at `as_of` when given."""
        log_id = org_log_id(org_id)
        table = rollup_workloads
        conditions = [
            table.c.log_id == log_id,
            table.c.up < end,
            or_(table.c.is_open, table.c.billed_end > start),
        ]
        if endpoint_id is not None:
            conditions.append(table.c.endpoint_id == endpoint_id)
        with self.store.reading() as conn:
            rows = conn.execute(select(table).where(and_(*conditions))).all()
            heartbeat_at = _heartbeat(conn, log_id)
            evidence = _evidence(conn, log_id, [row.workload_id for row in rows if row.is_open])
        found = []
        for row in rows:
            if row.is_open:
                lifecycle = load_lifecycle(row.lifecycle)
                known = later(heartbeat_at, evidence.get(row.workload_id))
                session = rate_workload(lifecycle, prices, plans, known_evidence=known, as_of=as_of).session
                if session is None:
                    continue
                found.append(rolled_session(row, session.unit_seconds, session.runs))
            elif row.session is not None:
                data = json.loads(row.session)
                found.append(rolled_session(row, data["unit_seconds"], tuple(decode_run(r) for r in data["runs"])))
        return found

    def storage_in(self, org_id: str, start: int, end: int, endpoint_id: str | None) -> list[RolledStorage]:
        """Storage intervals starting in [start, end) (R13, R14; R15 and invoices count them by start)."""
        table = rollup_storage
        conditions = [table.c.log_id == org_log_id(org_id), table.c.start >= start, table.c.start < end]
        if endpoint_id is not None:
            conditions.append(table.c.endpoint_id == endpoint_id)
        with self.store.reading() as conn:
            rows = conn.execute(select(table).where(and_(*conditions))).all()
        return [
            RolledStorage(
                int(r.seq),
                r.endpoint_id,
                r.workload_id,
                r.storage_kind,
                int(r.start),
                Fraction(r.charge.decode()),
                Decimal(r.gigabytes) if r.gigabytes is not None else None,
                int(r.interval_seconds) if r.interval_seconds is not None else None,
                bool(r.development),
            )
            for r in rows
        ]

    # -- reads for a billing evaluation (ledger/billing/scope.py) --------------------------------------------------

    def billing_rating(
        self,
        org_id: str,
        prices: PriceHistory,
        plans: PlanHistory,
        *,
        changed_from: int,
        units_from: int | None,
    ) -> OrgRating:
        """The sessions and storage charges of the org that a billing evaluation can still charge differently,
        open sessions re-rated to their evidence (R28) from the lifecycle events kept here, never from the log.

        In: workloads with a lifecycle entry at or after sequence `changed_from`, open sessions, and sessions
        billed past `units_from`; storage samples at or after `changed_from` or starting at or after
        `units_from`. `changed_from=0` takes everything. Call catch_up first. `log_size` is exactly how many of
        the log's entries the rating reflects.
        """
        log_id = org_log_id(org_id)
        table = rollup_workloads
        wanted = [table.c.changed_seq >= changed_from, table.c.is_open.is_(True)]
        if units_from is not None:
            wanted.append(table.c.billed_end > units_from)
        query = select(table.c.workload_id, table.c.lifecycle, table.c.is_open).where(
            table.c.log_id == log_id, or_(*wanted)
        )
        storage_wanted = [rollup_storage.c.seq >= changed_from]
        if units_from is not None:
            storage_wanted.append(rollup_storage.c.start >= units_from)
        storage_query = select(rollup_storage).where(rollup_storage.c.log_id == log_id, or_(*storage_wanted))
        storage: dict[str, list[StorageCharge]] = {}
        # One snapshot for the cursor and the rows it describes: the rating reflects exactly the log's first
        # `applied` entries, even when another process's catch-up applies more meanwhile. An invoice records that
        # size (rated_log_size), and an auditor re-derives the invoice from exactly those entries.
        with self.store.snapshot():
            with self.store.reading() as conn:
                cursor = conn.execute(
                    select(
                        rollup_cursors.c.applied_size, rollup_cursors.c.latest_event_at, rollup_cursors.c.heartbeat_at
                    ).where(rollup_cursors.c.log_id == log_id)
                ).one_or_none()
                lifecycles: dict[str, bytes] = {}
                open_workloads: list[str] = []
                for row in conn.execute(query):
                    lifecycles[row.workload_id] = row.lifecycle
                    if row.is_open:
                        open_workloads.append(row.workload_id)
                evidence = _evidence(conn, log_id, open_workloads)
                hold = conn.execute(_STORAGE_HOLD, {"log_id": log_id}).scalar_one_or_none()
                for row in conn.execute(storage_query):
                    storage.setdefault(row.workload_id, []).append(rolled_storage_charge(org_id, row))
            # Every workload returned is rated whole (an invoice draft takes back what it no longer finds in one),
            # so a workload with a storage sample in scope comes with its session too.
            loaded = {w: load_lifecycle(blob) for w, blob in lifecycles.items()}
            loaded.update(self.lifecycles(log_id, set(storage) - set(loaded)))
        applied, latest_event_at, heartbeat_at = (None, None, None) if cursor is None else tuple(cursor)
        heartbeat = int_or_none(heartbeat_at)
        workloads = []
        for workload_id in sorted(set(loaded) | set(storage)):
            lifecycle = loaded.get(workload_id)
            known = later(heartbeat, evidence.get(workload_id))
            session = rate_workload(lifecycle, prices, plans, known_evidence=known).session if lifecycle else None
            charges = tuple(storage.get(workload_id, ()))
            workloads.append(WorkloadRating(workload_id, None, session, (), charges, ()))
        return OrgRating(
            org_id,
            None,
            tuple(workloads),
            None if applied is None else int(applied),
            int_or_none(latest_event_at),
            heartbeat,
            int_or_none(hold),
        )

    def lifecycles(self, log_id: str, workload_ids: Iterable[str]) -> dict[str, list[tuple[UsageEvent, int]]]:
        """The lifecycle events (with their sequence numbers) the rollups keep of each workload that has any."""
        ids = sorted(set(workload_ids))
        found: dict[str, list[tuple[UsageEvent, int]]] = {}
        with self.store.reading() as conn:
            for at in range(0, len(ids), 500):
                params = {"log_id": log_id, "workload_ids": ids[at : at + 500]}
                rows = _LIFECYCLES.rows(conn, params)
                found.update((workload_id, load_lifecycle(lifecycle)) for workload_id, lifecycle in rows)
        return found


# R28: the earliest latest-storage-sample of the workloads whose lifecycle has not ended (rating.storage_hold).
_STORAGE_HOLD = (
    select(func.min(rollup_evidence.c.storage_at))
    .select_from(
        rollup_evidence.outerjoin(
            rollup_workloads,
            and_(
                rollup_workloads.c.log_id == rollup_evidence.c.log_id,
                rollup_workloads.c.workload_id == rollup_evidence.c.workload_id,
            ),
        )
    )
    .where(
        rollup_evidence.c.log_id == bindparam("log_id"),
        rollup_evidence.c.storage_at.is_not(None),
        rollup_workloads.c.lifecycle_to.is_(None),
    )
)
_LIFECYCLES = DriverQuery(
    select(rollup_workloads.c.workload_id, rollup_workloads.c.lifecycle).where(
        rollup_workloads.c.log_id == bindparam("log_id"),
        member_of(rollup_workloads.c.workload_id, "workload_ids"),
    )
)


def _heartbeat(conn: Connection, log_id: str) -> int | None:
    """The org's latest HEARTBEAT among the applied entries (R28)."""
    found = conn.execute(
        select(rollup_cursors.c.heartbeat_at).where(rollup_cursors.c.log_id == log_id)
    ).scalar_one_or_none()
    return int_or_none(found)


def _evidence(conn: Connection, log_id: str, workload_ids: list[str]) -> dict[str, int]:
    """Each workload's latest event time (R28) the rollups keep, for the given workloads."""
    found: dict[str, int] = {}
    ids = sorted(set(workload_ids))
    for at in range(0, len(ids), 500):
        rows = conn.execute(
            select(rollup_evidence.c.workload_id, rollup_evidence.c.evidence_at).where(
                rollup_evidence.c.log_id == log_id, rollup_evidence.c.workload_id.in_(ids[at : at + 500])
            )
        )
        found.update((workload_id, int(evidence_at)) for workload_id, evidence_at in rows)
    return found
