"""Usage rollups: an org log's usage derived by tailing it; rebuildable, never the source of truth.

This module holds their cursor and the step that advances it (RollupCursor in ledger/ports.py), which only the
follower calls (ledger/usage/follower.py); their reads are in rollup_reads.py (usage, billing) and
rollup_disputes.py (dispute lookups), their row encodings in rollup_rows.py.

A cursor per log records how far the rollups have read. A step reads only the entries appended since,
re-rates only the workloads whose lifecycle they touched (request events do not change billed units), and
rates each storage sample once. A new price-book version or ACCOUNT entry re-rates every workload of the org
from the lifecycle events kept here, never from the log.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, case, delete, func, select
from sqlalchemy.engine import Connection

from ledger.events import EventType, UsageEvent, event_from_body
from ledger.intake import Ledger
from ledger.log.entry import ORG_LOG_PREFIX, SYSTEM_LOG, EntryKind, org_log_id, org_of_log
from ledger.plans import PlanHistory
from ledger.ports import LookupStart
from ledger.pricebook import PriceHistory
from ledger.rating import rate_storage_sample, rate_workload
from ledger.usage import RollupFollower, UsageView
from storage.sql import rollup_serving as serving
from storage.sql.driver import DriverQuery
from storage.sql.rollup_disputes import DisputeReads, WindowLifecycles
from storage.sql.rollup_reads import UsageReads
from storage.sql.rollup_rows import (
    RolledSession,
    RolledStorage,
    int_or_none,
    lifecycle_blob,
    load_lifecycle,
    session_blob,
)
from storage.sql.schema import (
    entries,
    log_heads,
    rollup_cursors,
    rollup_evidence,
    rollup_request_spans,
    rollup_requests,
    rollup_serving,
    rollup_storage,
    rollup_workloads,
)
from storage.sql.store import SqlStore

__all__ = [
    "FINISHED_TYPE",
    "LIFECYCLE_TYPES",
    "RolledSession",
    "RolledStorage",
    "UsageRollups",
    "WindowLifecycles",
    "rollup_follower",
    "usage_view",
]

# The canonical body's type field of a REQUEST_FINISHED (identifiers hold no quote, so nothing else matches it).
FINISHED_TYPE = b'"type":"REQUEST_FINISHED"'

# Kept per workload: everything but requests and storage samples. SCHEDULED and IMAGE_PULL_STARTED bill nothing
# (R1) but a dispute lookup lists them, so they are kept too.
LIFECYCLE_TYPES = frozenset(
    {
        EventType.WORKLOAD_SCHEDULED,
        EventType.IMAGE_PULL_STARTED,
        EventType.WORKLOAD_UP,
        EventType.WORKLOAD_READY,
        EventType.WORKLOAD_STOPPED,
        EventType.WORKLOAD_BOOT_FAILED,
    }
)
_ENDS = frozenset({EventType.WORKLOAD_STOPPED, EventType.WORKLOAD_BOOT_FAILED})
_CHUNK = 20_000  # entries read per step (one transaction): bounds memory and lock time


def usage_view(ledger: Ledger, store: SqlStore) -> UsageView:
    """A ledger's usage over its SQL store's rollups, with their follower: a composition root builds it once per
    store and gives it to every service that reads usage, so they share one follower (and concurrent readers of
    one org wait for one catch-up)."""
    rollups = UsageRollups(store)
    return UsageView(ledger, rollups, follower=RollupFollower(rollups))


def rollup_follower(store: SqlStore) -> RollupFollower:
    """A follower of a SQL store's usage rollups, for a caller that needs them current without a UsageView."""
    return RollupFollower(UsageRollups(store))


class UsageRollups(UsageReads, DisputeReads):
    """The usage rollups of the logs of one SqlStore: their cursor and step (here) and their reads (the bases)."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    # -- the cursor and its step (RollupCursor: the follower's alone) ----------------------------------------------

    def reflected_size(self, org_id: str) -> int | None:
        """RollupCursor.reflected_size: state()'s first half."""
        return self.state(org_id)[0]

    def apply_next(self, org_id: str, prices: PriceHistory, plans: PlanHistory) -> tuple[int, bool]:
        """RollupCursor.apply_next: one write transaction holding the cursor's row (_lock_cursor)."""
        if self.store.in_snapshot():
            raise RuntimeError("catch the rollups up before SqlStore.snapshot(): its reads would miss what this writes")
        with self.store.writer.begin() as conn:
            return self._apply_chunk(conn, org_log_id(org_id), prices, plans)

    def drop(self, org_id: str) -> None:
        """RollupCursor.drop: every table rollup_check.ROLLUP_TABLES names, then the cursor, in one transaction."""
        log_id = org_log_id(org_id)
        with self.store.writer.begin() as conn:
            tables = (
                rollup_workloads,
                rollup_storage,
                rollup_requests,
                rollup_request_spans,
                rollup_serving,
                rollup_evidence,
            )
            for table in (*tables, rollup_cursors):
                conn.execute(delete(table).where(table.c.log_id == log_id))

    def workload_count(self, org_id: str) -> int:
        log_id = org_log_id(org_id)
        with self.store.reading() as conn:
            query = select(func.count()).select_from(rollup_workloads).where(rollup_workloads.c.log_id == log_id)
            count = conn.execute(query).scalar_one()
        return int(count)

    def lag(self) -> dict[str, int]:
        """Per org: the entries of its log the rollups have not applied yet (usageledger.rollup.lag)."""
        behind = log_heads.c.size - func.coalesce(rollup_cursors.c.applied_size, 0)
        query = (
            select(log_heads.c.log_id, behind)
            .outerjoin(rollup_cursors, rollup_cursors.c.log_id == log_heads.c.log_id)
            .where(log_heads.c.log_id.like(f"{ORG_LOG_PREFIX}%"))
        )
        with self.store.reading() as conn:
            rows = conn.execute(query).all()
        return {org: int(count) for log_id, count in rows if (org := org_of_log(log_id)) is not None}

    # -- whether the rollups are current (a read: dispute lookups send it with their first reads) ---------------------

    def state(self, org_id: str) -> tuple[int | None, int | None]:
        """(the org log size the rollups reflect if they are up to date with it and the system log, else None;
        the system log's size), in one statement: a dispute lookup checks its price books against that size too."""
        with self.store.reading() as conn:
            rows = _CURRENT.rows(conn, _state_params(org_id))
        return self.state_of(rows)

    def state_read(self, org_id: str) -> tuple[DriverQuery, dict[str, Any]]:
        """The statement state() runs and its parameters, for a caller sending it with other reads; give its rows
        to state_of."""
        return _CURRENT, _state_params(org_id)

    def state_of(self, rows: list[tuple[Any, ...]]) -> tuple[int | None, int | None]:
        """state() from the rows of state_read's statement."""
        if not rows:
            with self.store.reading() as conn:
                system = _SYSTEM_SIZE.rows(conn, {"system_log": SYSTEM_LOG})
            return None, int(system[0][0]) if system else None
        applied, system_seen, size, system_log_size = rows[0]
        system_size = None if system_log_size is None else int(system_log_size)
        if size is not None and int(applied) >= int(size) and int(system_seen or 0) == int(system_size or 0):
            return int(applied), system_size
        return None, system_size

    def lookup_start(self, org_id: str, kinds: Sequence[str], ref_kind: str) -> LookupStart:
        """What a dispute lookup reads first (ledger.ports.DisputeRollups), in one round trip on PostgreSQL: the org
        log's entries of `kinds`, the refs of its `ref_kind` entries, and state()."""
        read, refs, (state_rows,) = self.store.entries_and_refs_of_kind(
            org_log_id(org_id), kinds, ref_kind, [self.state_read(org_id)]
        )
        applied, system_log_size = self.state_of(state_rows)
        return LookupStart(read, refs, applied, system_log_size)

    def _apply_chunk(self, conn: Connection, log_id: str, prices: PriceHistory, plans: PlanHistory) -> tuple[int, bool]:
        applied, system_seen, latest_event_at, heartbeat_at = self._lock_cursor(conn, log_id)
        sizes = dict(
            conn.execute(
                select(log_heads.c.log_id, log_heads.c.size).where(log_heads.c.log_id.in_([log_id, SYSTEM_LOG]))
            ).all()
        )
        head, system_size = int(sizes.get(log_id, 0)), int(sizes.get(SYSTEM_LOG, 0))
        if applied >= head and system_size == system_seen:
            return applied, True
        stop = min(head, applied + _CHUNK)
        touched: dict[str, list[tuple[UsageEvent, int]]] = {}
        lifecycle_hashes: dict[int, bytes] = {}  # by seq: kept with the lifecycle, so a lookup cites it unread
        requests: dict[str, list[serving.RequestMark]] = {}
        request_hashes: dict[int, bytes] = {}  # by seq, so a lookup cites requests from the rollups
        rerate_all = system_size != system_seen
        storage_rows: list[dict[str, Any]] = []
        evidence: dict[str, int] = {}  # R28: each workload's latest event time in this chunk
        storage_at: dict[str, int] = {}  # and its latest storage sample
        rows = conn.execute(
            select(
                entries.c.seq,
                entries.c.kind,
                entries.c.body,
                entries.c.workload_id,
                entries.c.request_id,
                entries.c.occurred_at,
                entries.c.entry_hash,
            )
            .where(entries.c.log_id == log_id, entries.c.seq >= applied, entries.c.seq < stop)
            .order_by(entries.c.seq)
        )
        for seq, kind, body, workload_id, request_id, occurred_at, entry_hash in rows:
            if kind == EntryKind.ACCOUNT.value:
                rerate_all = True  # R10: a plan change can change how any session is rated
                continue
            if kind != EntryKind.EVENT.value:
                continue
            at = int(occurred_at)
            latest_event_at = at if latest_event_at is None else max(latest_event_at, at)
            if workload_id is None:  # an org HEARTBEAT (R28): evidence for every open session, never a workload
                heartbeat_at = at if heartbeat_at is None else max(heartbeat_at, at)
                continue
            evidence[workload_id] = max(evidence.get(workload_id, at), at)
            if request_id is not None:  # only request events carry one: read from the index columns, not parsed
                mark = (int(seq), int(occurred_at), request_id, FINISHED_TYPE in bytes(body))
                requests.setdefault(workload_id, []).append(mark)
                request_hashes[int(seq)] = bytes(entry_hash)
                continue
            event = event_from_body(json.loads(body))
            if event.type in LIFECYCLE_TYPES:
                touched.setdefault(event.workload_id, []).append((event, int(seq)))
                lifecycle_hashes[int(seq)] = bytes(entry_hash)
            elif event.type is EventType.STORAGE_SAMPLE:
                storage_at[workload_id] = max(storage_at.get(workload_id, at), at)
                charge = rate_storage_sample(event, int(seq))
                storage_rows.append(
                    {
                        "log_id": log_id,
                        "seq": int(seq),
                        "endpoint_id": event.endpoint_id,
                        "workload_id": event.workload_id,
                        "storage_kind": charge.storage_kind.value,
                        "start": charge.start,
                        "charge": f"{charge.exact_amount.numerator}/{charge.exact_amount.denominator}".encode(),
                        "event_id": event.event_id,
                        "workspace_id": event.workspace_id,
                        "volume_id": event.volume_id,
                        "gigabytes": str(charge.gigabytes),
                        "interval_seconds": charge.interval_seconds,
                        "development": event.development,
                        "entry_hash": bytes(entry_hash),
                    }
                )
        if storage_rows:
            conn.execute(rollup_storage.insert(), storage_rows)
        self._rerate(conn, log_id, touched, lifecycle_hashes, rerate_all, prices, plans)
        serving.apply_request_events(conn, log_id, requests, request_hashes)
        self._raise_evidence(conn, log_id, evidence, storage_at)
        conn.execute(
            rollup_cursors.update()
            .where(rollup_cursors.c.log_id == log_id)
            .values(
                applied_size=stop,
                system_size=system_size,
                latest_event_at=latest_event_at,
                heartbeat_at=heartbeat_at,
            )
        )
        return stop, stop >= head

    def _raise_evidence(
        self, conn: Connection, log_id: str, evidence: dict[str, int], storage_at: dict[str, int]
    ) -> None:
        """R28: each workload's latest event time (and latest storage sample) is the later of the kept one and this
        chunk's."""
        if not evidence:
            return
        rows = [
            {"log_id": log_id, "workload_id": w, "evidence_at": at, "storage_at": storage_at.get(w)}
            for w, at in sorted(evidence.items())
        ]
        if self.store.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as upsert
        else:
            from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
        statement = upsert(rollup_evidence)
        later = case(
            (statement.excluded.evidence_at > rollup_evidence.c.evidence_at, statement.excluded.evidence_at),
            else_=rollup_evidence.c.evidence_at,
        )
        kept, new = rollup_evidence.c.storage_at, statement.excluded.storage_at
        storage = case((new.is_(None), kept), (kept.is_(None), new), (new > kept, new), else_=kept)
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=["log_id", "workload_id"], set_={"evidence_at": later, "storage_at": storage}
            ),
            rows,
        )

    def _lock_cursor(self, conn: Connection, log_id: str) -> tuple[int, int, int | None, int | None]:
        query = select(
            rollup_cursors.c.applied_size,
            rollup_cursors.c.system_size,
            rollup_cursors.c.latest_event_at,
            rollup_cursors.c.heartbeat_at,
        ).where(rollup_cursors.c.log_id == log_id)
        if self.store.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            conn.execute(
                pg_insert(rollup_cursors)
                .values(log_id=log_id, applied_size=0, system_size=0)
                .on_conflict_do_nothing(index_elements=["log_id"])
            )
            row = conn.execute(query.with_for_update()).one()
        else:
            found = conn.execute(query).one_or_none()  # SQLite: the writer's BEGIN IMMEDIATE is the lock
            if found is None:
                conn.execute(rollup_cursors.insert().values(log_id=log_id, applied_size=0, system_size=0))
                return 0, 0, None, None
            row = found
        return (
            int(row.applied_size),
            int(row.system_size),
            int_or_none(row.latest_event_at),
            int_or_none(row.heartbeat_at),
        )

    def _rerate(
        self,
        conn: Connection,
        log_id: str,
        touched: dict[str, list[tuple[UsageEvent, int]]],
        touched_hashes: dict[int, bytes],
        rerate_all: bool,
        prices: PriceHistory,
        plans: PlanHistory,
    ) -> None:
        query = select(rollup_workloads.c.workload_id, rollup_workloads.c.lifecycle).where(
            rollup_workloads.c.log_id == log_id
        )
        if not rerate_all:
            if not touched:
                return
            query = query.where(rollup_workloads.c.workload_id.in_(sorted(touched)))
        known: dict[str, list[tuple[UsageEvent, int]]] = {}
        hashes = dict(touched_hashes)
        for row in conn.execute(query):
            known[row.workload_id] = load_lifecycle(row.lifecycle, hashes)
        workloads = set(known) | set(touched)
        if not workloads:
            return
        if known:
            conn.execute(
                delete(rollup_workloads).where(
                    rollup_workloads.c.log_id == log_id, rollup_workloads.c.workload_id.in_(sorted(known))
                )
            )
        new_rows = []
        for workload_id in sorted(workloads):
            lifecycle = known.get(workload_id, []) + touched.get(workload_id, [])
            new_rows.append(_workload_row(log_id, workload_id, lifecycle, hashes, prices, plans))
        conn.execute(rollup_workloads.insert(), new_rows)


def _state_params(org_id: str) -> dict[str, Any]:
    return {"log_id": org_log_id(org_id), "system_log": SYSTEM_LOG}


# The cursor and both log sizes it is compared with, in one statement (every lookup and evaluation runs it).
_CURRENT = DriverQuery(
    select(
        rollup_cursors.c.applied_size,
        rollup_cursors.c.system_size,
        select(log_heads.c.size).where(log_heads.c.log_id == rollup_cursors.c.log_id).scalar_subquery(),
        select(log_heads.c.size).where(log_heads.c.log_id == bindparam("system_log")).scalar_subquery(),
    ).where(rollup_cursors.c.log_id == bindparam("log_id"))
)
_SYSTEM_SIZE = DriverQuery(select(log_heads.c.size).where(log_heads.c.log_id == bindparam("system_log")))


def _workload_row(
    log_id: str,
    workload_id: str,
    lifecycle: list[tuple[UsageEvent, int]],
    hashes: dict[int, bytes],
    prices: PriceHistory,
    plans: PlanHistory,
) -> dict[str, Any]:
    # An open session's row is rated to its lifecycle's evidence only: every read re-rates open sessions to their
    # whole evidence (R28), which a request, a storage sample or a HEARTBEAT may have moved since.
    rating = rate_workload(lifecycle, prices, plans)
    session = rating.session
    first = min(lifecycle, key=lambda item: (item[0].type is not EventType.WORKLOAD_UP, item[0].occurred_at))[0]
    row: dict[str, Any] = {
        "log_id": log_id,
        "workload_id": workload_id,
        "endpoint_id": first.endpoint_id,
        "workload_kind": first.workload_kind.value,
        "instance_type": first.instance_type,
        "worker_type": first.worker_type.value,
        "lifecycle": lifecycle_blob(lifecycle, hashes),
        "up": None,
        "billed_end": None,
        "is_open": False,
        "session": None,
        "lifecycle_from": min(event.occurred_at for event, _ in lifecycle),
        "lifecycle_to": max((event.occurred_at for event, _ in lifecycle if event.type in _ENDS), default=None),
        "changed_seq": max(seq for _, seq in lifecycle),
    }
    if session is not None:
        row["up"] = session.up
        row["is_open"] = session.is_open
        row["billed_end"] = session.up + session.billed_units * session.unit_seconds * 1_000_000
        row["session"] = session_blob(session)
    return row
