"""Derived usage rollups kept current by tailing each org log; rebuildable, never the source of truth.

A cursor per log records how far the rollups have read. Catching up reads only the entries appended since,
re-rates only the workloads whose lifecycle they touched (request events do not change billed units), and
rates each storage sample once. A new price-book version or ACCOUNT entry re-rates every workload of the org
from the lifecycle events kept here, never from the log.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, or_, select, text, union, union_all
from sqlalchemy.engine import Connection

from ledger.events import MAX_INTERVAL_SECONDS, EventType, StorageKind, UsageEvent, WorkerType, event_from_body
from ledger.log.entry import ORG_LOG_PREFIX, SYSTEM_LOG, EntryKind, org_log_id, org_of_log
from ledger.plans import PlanHistory
from ledger.pricebook import PriceHistory
from ledger.rating import (
    OrgRating,
    Session,
    StorageCharge,
    UnitRun,
    WorkloadRating,
    rate_storage_sample,
    rate_workload,
)
from ledger.rating.storage import storage_charge
from ledger.tracing import span
from storage.sql import serving
from storage.sql.driver import DriverQuery, rows_together
from storage.sql.lists import member_of
from storage.sql.schema import (
    SHORT_STORAGE_INTERVAL_SECONDS,
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
_CHUNK = 20_000  # entries read per catch-up transaction: bounds memory and lock time


@dataclass(frozen=True, slots=True)
class RolledSession:
    """What a usage query needs of one rated session: its dimensions and its priced unit runs."""

    workload_id: str
    endpoint_id: str
    workload_kind: str
    instance_type: str
    worker_type: str
    unit_seconds: int
    runs: tuple[UnitRun, ...]


@dataclass(frozen=True, slots=True)
class RolledStorage:
    seq: int
    endpoint_id: str
    workload_id: str
    storage_kind: str
    start: int
    exact_amount: Fraction
    # The sample's size and interval, for the GB-seconds a usage row shows (R13, R14); its R8 flag bills nothing.
    gigabytes: Decimal | None = None
    interval_seconds: int | None = None
    development: bool = False


@dataclass(frozen=True, slots=True)
class WindowLifecycles:
    """The workloads of a dispute lookup's window and what the rollups keep of them: the lifecycle events (with
    their sequence numbers) of those that have any, those events' entry hashes by sequence number, and the request
    summaries of those with requests."""

    workload_ids: list[str]
    lifecycles: dict[str, list[tuple[UsageEvent, int]]]
    hashes: dict[int, bytes]
    summaries: dict[str, serving.RequestSummary]


class UsageRollups:
    """Rollups for the logs of one SqlStore."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    def catch_up(self, org_id: str, prices: PriceHistory, plans: PlanHistory) -> int:
        """Apply every entry appended to the org's log since the cursor; returns the log size now reflected."""
        if self.store.in_snapshot():
            raise RuntimeError("catch the rollups up before SqlStore.snapshot(): its reads would miss what this writes")
        log_id = org_log_id(org_id)
        current, _ = self.state(org_id)
        if current is not None:
            return current  # nothing to apply: no write transaction, so reads never queue behind appends
        with span("ledger.rollups.catch_up", org_id=org_id):
            while True:
                with self.store.writer.begin() as conn:
                    applied, done = self._catch_up_chunk(conn, log_id, prices, plans)
                if done:
                    return applied

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

    def lag(self) -> dict[str, int]:
        """Per org: the entries of its log the rollups have not applied yet (usageledger.rollup.lag). The closer
        and the queries catch up lazily, so a lag that keeps growing means neither reaches that org."""
        behind = log_heads.c.size - func.coalesce(rollup_cursors.c.applied_size, 0)
        query = (
            select(log_heads.c.log_id, behind)
            .outerjoin(rollup_cursors, rollup_cursors.c.log_id == log_heads.c.log_id)
            .where(log_heads.c.log_id.like(f"{ORG_LOG_PREFIX}%"))
        )
        with self.store.reading() as conn:
            rows = conn.execute(query).all()
        return {org: int(count) for log_id, count in rows if (org := org_of_log(log_id)) is not None}

    def rebuild(self, org_id: str, prices: PriceHistory, plans: PlanHistory) -> tuple[int, int]:
        """Drop the org's rollups and re-derive them from its log; returns (entries read, workloads)."""
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
        size = self.catch_up(org_id, prices, plans)
        with self.store.reading() as conn:
            workloads = len(
                conn.execute(select(rollup_workloads.c.workload_id).where(rollup_workloads.c.log_id == log_id)).all()
            )
        return size, workloads

    def _catch_up_chunk(
        self, conn: Connection, log_id: str, prices: PriceHistory, plans: PlanHistory
    ) -> tuple[int, bool]:
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
            _int_or_none(row.latest_event_at),
            _int_or_none(row.heartbeat_at),
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
            known[row.workload_id] = _load_lifecycle(row.lifecycle, hashes)
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

    # -- reads --------------------------------------------------------------------------------------------

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
                lifecycle = _load_lifecycle(row.lifecycle)
                known = _later(heartbeat_at, evidence.get(row.workload_id))
                session = rate_workload(lifecycle, prices, plans, known_evidence=known, as_of=as_of).session
                if session is None:
                    continue
                found.append(_rolled(row, session.unit_seconds, session.runs))
            elif row.session is not None:
                data = json.loads(row.session)
                found.append(_rolled(row, data["unit_seconds"], tuple(_run(r) for r in data["runs"])))
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
                    storage.setdefault(row.workload_id, []).append(_storage_charge(org_id, row))
            # Every workload returned is rated whole (an invoice draft takes back what it no longer finds in one),
            # so a workload with a storage sample in scope comes with its session too.
            loaded = {w: _load_lifecycle(blob) for w, blob in lifecycles.items()}
            loaded.update(self.lifecycles(log_id, set(storage) - set(loaded)))
        applied, latest_event_at, heartbeat_at = (None, None, None) if cursor is None else tuple(cursor)
        heartbeat = _int_or_none(heartbeat_at)
        workloads = []
        for workload_id in sorted(set(loaded) | set(storage)):
            lifecycle = loaded.get(workload_id)
            known = _later(heartbeat, evidence.get(workload_id))
            session = rate_workload(lifecycle, prices, plans, known_evidence=known).session if lifecycle else None
            charges = tuple(storage.get(workload_id, ()))
            workloads.append(WorkloadRating(workload_id, None, session, (), charges, ()))
        return OrgRating(
            org_id,
            None,
            tuple(workloads),
            None if applied is None else int(applied),
            _int_or_none(latest_event_at),
            heartbeat,
            _int_or_none(hold),
        )

    # -- reads for a dispute lookup (R27; ledger.dispute.SessionIndex) ---------------------------------------------

    def window_lifecycles_and_storage(
        self, org_id: str, endpoint_id: str, start: int, end: int, entries_to: int
    ) -> tuple[WindowLifecycles, list[tuple[StorageCharge, bytes]]]:
        """The workloads a dispute lookup of [start, end] rates, with what the rollups keep of each, and the
        endpoint's storage intervals meeting the window.

        The workloads: those with an entry of the endpoint in [start, entries_to] (from ix_entries_endpoint_time
        alone), and those whose lifecycle [first event, stop or boot failure] meets [start, end], so a replica up
        across the whole window with no entry inside it is found too (R3); for each, as lifecycles_and_summaries
        reads them, its lifecycle events and request summary, joined to it in the same statement. The storage
        intervals (R13, R14, R8 for development workloads) with each sample's entry hash, by sequence number: the
        samples of 300 s or less by start (ix_rollup_storage_endpoint), the longer ones from their own index
        (ix_rollup_storage_long).

        Two independent statements: on PostgreSQL they go in one round trip (rows_together), and the database runs
        the second while the first one's rows are read."""
        log_id = org_log_id(org_id)
        with self.store.reading() as conn:
            workload_rows, storage_rows = rows_together(
                conn,
                [
                    (_WINDOW_LIFECYCLES, _window_params(org_id, endpoint_id, start, end, entries_to)),
                    (_ENDPOINT_STORAGE, _storage_params(log_id, endpoint_id, start, end)),
                ],
            )
        lifecycles: dict[str, list[tuple[UsageEvent, int]]] = {}
        hashes: dict[int, bytes] = {}
        summaries: dict[str, serving.RequestSummary] = {}
        for workload_id, lifecycle, summary in workload_rows:
            if lifecycle is not None:
                lifecycles[workload_id] = _load_lifecycle(lifecycle, hashes)
                if summary is not None:
                    summaries[workload_id] = serving.RequestSummary.decode(summary)
        workload_ids = sorted({workload_id for workload_id, _, _ in workload_rows})
        found = WindowLifecycles(workload_ids, lifecycles, hashes, summaries)
        return found, _storage_charges(log_id, start, storage_rows)

    def lifecycles(self, log_id: str, workload_ids: Iterable[str]) -> dict[str, list[tuple[UsageEvent, int]]]:
        """The lifecycle events (with their sequence numbers) the rollups keep of each workload that has any."""
        ids = sorted(set(workload_ids))
        found: dict[str, list[tuple[UsageEvent, int]]] = {}
        with self.store.reading() as conn:
            for at in range(0, len(ids), 500):
                params = {"log_id": log_id, "workload_ids": ids[at : at + 500]}
                rows = _LIFECYCLES.rows(conn, params)
                found.update((workload_id, _load_lifecycle(lifecycle)) for workload_id, lifecycle in rows)
        return found

    def lifecycles_and_summaries(
        self, log_id: str, workload_ids: Iterable[str]
    ) -> tuple[dict[str, list[tuple[UsageEvent, int]]], dict[int, bytes], dict[str, serving.RequestSummary]]:
        """For each workload with lifecycle entries: its lifecycle events with their sequence numbers, the entry
        hashes kept with them (by seq; a dispute lookup cites them without reading them), and its request summary
        if it has requests. One read."""
        ids = sorted(set(workload_ids))
        lifecycles: dict[str, list[tuple[UsageEvent, int]]] = {}
        hashes: dict[int, bytes] = {}
        summaries: dict[str, serving.RequestSummary] = {}
        with self.store.reading() as conn:
            for at in range(0, len(ids), 500):
                params = {"log_id": log_id, "workload_ids": ids[at : at + 500]}
                for workload_id, lifecycle, summary in _LIFECYCLES_AND_SUMMARIES.rows(conn, params):
                    lifecycles[workload_id] = _load_lifecycle(lifecycle, hashes)
                    if summary is not None:
                        summaries[workload_id] = serving.RequestSummary.decode(summary)
        return lifecycles, hashes, summaries

    def request_spans(self, log_id: str, reaches: dict[str, tuple[int, int]]) -> dict[str, list[serving.StartedSpan]]:
        """The requests each workload started in its own range (serving.request_spans)."""
        with self.store.reading() as conn:
            return serving.request_spans(conn, log_id, reaches)

    def window_request_spans(
        self, log_id: str, ranges: dict[str, tuple[int, int, int]], limit: int, asked: tuple[str, str] | None
    ) -> tuple[dict[str, tuple[int, list[serving.StartedSpan]]], dict[int, bytes]]:
        """The requests a dispute lookup counts and lists of each workload, and their entry hashes
        (serving.window_request_spans)."""
        with self.store.reading() as conn:
            return serving.window_request_spans(conn, log_id, ranges, limit, asked)

    def serving_union(self, log_id: str, workload_id: str, summary: serving.RequestSummary) -> serving.ServingUnion:
        """The workload's serving union (R25), read hour rows at a time as it is measured."""

        def read(query: DriverQuery, params: dict[str, Any]) -> list[tuple[Any, ...]]:
            with self.store.reading() as conn:
                return query.rows(conn, params)

        return serving.ServingUnion(read, log_id, workload_id, summary)


def _storage_charge(org_id: str, row: Any) -> StorageCharge:
    interval = int(row.interval_seconds)
    return storage_charge(
        int(row.seq),
        row.event_id,
        org_id,
        row.endpoint_id,
        row.workload_id,
        row.workspace_id,
        StorageKind(row.storage_kind),
        row.volume_id,
        Decimal(row.gigabytes),
        interval,
        int(row.start) + interval * 1_000_000,
        development=bool(row.development),
    )


def _state_params(org_id: str) -> dict[str, Any]:
    return {"log_id": org_log_id(org_id), "system_log": SYSTEM_LOG}


def _window_params(org_id: str, endpoint_id: str, start: int, end: int, entries_to: int) -> dict[str, Any]:
    return {
        "org_id": org_id,
        "log_id": org_log_id(org_id),
        "endpoint_id": endpoint_id,
        "start": start,
        "end": end,
        "entries_to": entries_to,
    }


def _storage_params(log_id: str, endpoint_id: str, start: int, end: int) -> dict[str, Any]:
    return {
        "log_id": log_id,
        "endpoint_id": endpoint_id,
        "end": end,
        "short_from": start - SHORT_STORAGE_INTERVAL_SECONDS * 1_000_000,
        "long_from": start - MAX_INTERVAL_SECONDS * 1_000_000,
    }


def _storage_charges(log_id: str, start: int, rows: list[tuple[Any, ...]]) -> list[tuple[StorageCharge, bytes]]:
    """The rows of _ENDPOINT_STORAGE rated (the rollups keep each sample's fields), by sequence number."""
    org_id = org_of_log(log_id)
    assert org_id is not None, log_id  # storage samples are in org logs only
    found: dict[int, tuple[StorageCharge, bytes]] = {}
    for row in rows:
        (seq, event_id, endpoint, workload_id, workspace_id, kind, volume_id, gigabytes, interval, at,
         development, entry_hash) = row  # fmt: skip
        ends = int(at) + int(interval) * 1_000_000
        if ends <= start or int(seq) in found:  # before the window, or a long sample both parts found
            continue
        charge = storage_charge(
            int(seq),
            event_id,
            org_id,
            endpoint,
            workload_id,
            workspace_id,
            StorageKind(kind),
            volume_id,
            Decimal(gigabytes),
            int(interval),
            ends,
            development=bool(development),
        )
        found[charge.seq] = (charge, bytes(entry_hash))
    return [found[seq] for seq in sorted(found)]


# The cursor and both log sizes it is compared with, in one statement (every lookup and evaluation runs it).
_CURRENT = DriverQuery(
    select(
        rollup_cursors.c.applied_size,
        rollup_cursors.c.system_size,
        select(log_heads.c.size).where(log_heads.c.log_id == rollup_cursors.c.log_id).scalar_subquery(),
        select(log_heads.c.size).where(log_heads.c.log_id == bindparam("system_log")).scalar_subquery(),
    ).where(rollup_cursors.c.log_id == bindparam("log_id"))
)
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
_SYSTEM_SIZE = DriverQuery(select(log_heads.c.size).where(log_heads.c.log_id == bindparam("system_log")))
_LIFECYCLES = DriverQuery(
    select(rollup_workloads.c.workload_id, rollup_workloads.c.lifecycle).where(
        rollup_workloads.c.log_id == bindparam("log_id"),
        member_of(rollup_workloads.c.workload_id, "workload_ids"),
    )
)
_LIFECYCLES_AND_SUMMARIES = DriverQuery(
    select(rollup_workloads.c.workload_id, rollup_workloads.c.lifecycle, rollup_requests.c.summary)
    .outerjoin(
        rollup_requests,
        and_(
            rollup_requests.c.log_id == rollup_workloads.c.log_id,
            rollup_requests.c.workload_id == rollup_workloads.c.workload_id,
        ),
    )
    .where(
        rollup_workloads.c.log_id == bindparam("log_id"),
        member_of(rollup_workloads.c.workload_id, "workload_ids"),
    )
)
_STORAGE_COLUMNS = (
    rollup_storage.c.seq,
    rollup_storage.c.event_id,
    rollup_storage.c.endpoint_id,
    rollup_storage.c.workload_id,
    rollup_storage.c.workspace_id,
    rollup_storage.c.storage_kind,
    rollup_storage.c.volume_id,
    rollup_storage.c.gigabytes,
    rollup_storage.c.interval_seconds,
    rollup_storage.c.start,
    rollup_storage.c.development,
    rollup_storage.c.entry_hash,
)
_OF_ENDPOINT = (
    rollup_storage.c.log_id == bindparam("log_id"),
    rollup_storage.c.endpoint_id == bindparam("endpoint_id"),
    rollup_storage.c.start < bindparam("end"),
)
# The long samples' condition is written as the partial index's own (a bound value would not match it).
_ENDPOINT_STORAGE = DriverQuery(
    union_all(
        select(*_STORAGE_COLUMNS).where(*_OF_ENDPOINT, rollup_storage.c.start > bindparam("short_from")),
        select(*_STORAGE_COLUMNS).where(
            *_OF_ENDPOINT,
            rollup_storage.c.start > bindparam("long_from"),
            text(f"interval_seconds > {SHORT_STORAGE_INTERVAL_SECONDS}"),
        ),
    )
)
_LIVE = select(rollup_workloads.c.workload_id).where(
    rollup_workloads.c.log_id == bindparam("log_id"),
    rollup_workloads.c.endpoint_id == bindparam("endpoint_id"),
    rollup_workloads.c.lifecycle_from <= bindparam("end"),
    or_(rollup_workloads.c.lifecycle_to.is_(None), rollup_workloads.c.lifecycle_to >= bindparam("start")),
)
_WINDOW_WORKLOADS = union(
    select(entries.c.workload_id).where(
        entries.c.org_id == bindparam("org_id"),
        entries.c.endpoint_id == bindparam("endpoint_id"),
        entries.c.occurred_at >= bindparam("start"),
        entries.c.occurred_at <= bindparam("entries_to"),
        entries.c.workload_id.is_not(None),
    ),
    _LIVE,
).cte("window_workloads")
# Each window workload with its lifecycle and request summary when the rollups keep them (as
# _LIFECYCLES_AND_SUMMARIES has them: a summary only beside a lifecycle).
_WINDOW_LIFECYCLES = DriverQuery(
    select(_WINDOW_WORKLOADS.c.workload_id, rollup_workloads.c.lifecycle, rollup_requests.c.summary).select_from(
        _WINDOW_WORKLOADS.outerjoin(
            rollup_workloads,
            and_(
                rollup_workloads.c.log_id == bindparam("log_id"),
                rollup_workloads.c.workload_id == _WINDOW_WORKLOADS.c.workload_id,
            ),
        ).outerjoin(
            rollup_requests,
            and_(
                rollup_requests.c.log_id == rollup_workloads.c.log_id,
                rollup_requests.c.workload_id == rollup_workloads.c.workload_id,
            ),
        )
    )
)


def _heartbeat(conn: Connection, log_id: str) -> int | None:
    """The org's latest HEARTBEAT among the applied entries (R28)."""
    found = conn.execute(
        select(rollup_cursors.c.heartbeat_at).where(rollup_cursors.c.log_id == log_id)
    ).scalar_one_or_none()
    return _int_or_none(found)


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


def _later(first: int | None, second: int | None) -> int | None:
    if first is None:
        return second
    return first if second is None else max(first, second)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _load_lifecycle(blob: bytes, hashes: dict[int, bytes] | None = None) -> list[tuple[UsageEvent, int]]:
    """A workload's kept lifecycle events; each entry's hash goes into `hashes` (by seq) when given."""
    items = json.loads(blob)
    if hashes is not None:
        hashes.update((int(seq), bytes.fromhex(entry_hash)) for seq, _, entry_hash in items)
    return [(event_from_body(body), int(seq)) for seq, body, _ in items]


def _lifecycle_blob(lifecycle: list[tuple[UsageEvent, int]], hashes: dict[int, bytes]) -> bytes:
    """[seq, body, entry hash] per lifecycle event: every hash is known, from the entry or the row it was kept in."""
    items = [[seq, event.body(), hashes[seq].hex()] for event, seq in lifecycle]
    return json.dumps(items, separators=(",", ":")).encode()


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
        "lifecycle": _lifecycle_blob(lifecycle, hashes),
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
        row["session"] = _session_blob(session)
    return row


def _session_blob(session: Session) -> bytes:
    runs = [
        [
            r.first_unit_index,
            r.count,
            r.unit_seconds,
            r.first_unit_start,
            r.price_version,
            str(r.rate_per_second),
            r.worker_type.value,
            str(r.amount),
        ]
        for r in session.runs
    ]
    return json.dumps({"unit_seconds": session.unit_seconds, "runs": runs}, separators=(",", ":")).encode()


def _run(data: list[Any]) -> UnitRun:
    return UnitRun(
        first_unit_index=int(data[0]),
        count=int(data[1]),
        unit_seconds=int(data[2]),
        first_unit_start=int(data[3]),
        price_version=int(data[4]),
        rate_per_second=Decimal(data[5]),
        worker_type=WorkerType(data[6]),
        amount=Decimal(data[7]),
    )


def _rolled(row: Any, unit_seconds: int, runs: Iterable[UnitRun]) -> RolledSession:
    return RolledSession(
        row.workload_id,
        row.endpoint_id,
        row.workload_kind,
        row.instance_type,
        row.worker_type,
        unit_seconds,
        tuple(runs),
    )
