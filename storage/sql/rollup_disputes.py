"""Reads of the usage rollups for a dispute lookup (R25-R28; ledger.ports.SessionIndex): the window's workloads
with their kept lifecycles, request spans and serving unions, and the endpoint's storage intervals."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, text, union, union_all

from ledger.events import MAX_INTERVAL_SECONDS, StorageKind, UsageEvent
from ledger.log.entry import org_log_id, org_of_log
from ledger.rating import StorageCharge
from ledger.rating.serving_time import WindowLifecycles as WindowLifecycles
from ledger.rating.storage import storage_charge
from storage.sql import rollup_serving as serving
from storage.sql.driver import DriverQuery, rows_together
from storage.sql.lists import member_of
from storage.sql.rollup_rows import load_lifecycle
from storage.sql.schema import (
    SHORT_STORAGE_INTERVAL_SECONDS,
    entries,
    rollup_requests,
    rollup_storage,
    rollup_workloads,
)
from storage.sql.store import SqlStore


class DisputeReads:
    """The rollups' reads for a dispute lookup (part of storage.sql.rollups.UsageRollups)."""

    store: SqlStore

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
                lifecycles[workload_id] = load_lifecycle(lifecycle, hashes)
                if summary is not None:
                    summaries[workload_id] = serving.RequestSummary.decode(summary)
        workload_ids = sorted({workload_id for workload_id, _, _ in workload_rows})
        found = WindowLifecycles(workload_ids, lifecycles, hashes, summaries)
        return found, _storage_charges(log_id, start, storage_rows)

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
                    lifecycles[workload_id] = load_lifecycle(lifecycle, hashes)
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
