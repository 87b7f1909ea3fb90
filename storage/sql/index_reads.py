"""Reads served by the entries table's indexes, never by scanning a log: entries by kind, and the dispute lookups
(R27, ledger.dispute)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select

from ledger.log.entry import Entry, EntryHead, EntryKind, org_of_log
from storage.sql.connections import SqlConnections
from storage.sql.driver import DriverQuery, rows_together
from storage.sql.entry_rows import ENTRY_COLUMNS, LOOKUP_CHUNK, binary, entry_from_row, refs_from_rows
from storage.sql.lists import member_of
from storage.sql.schema import entries, log_heads


class IndexReads(SqlConnections):
    """Index-backed reads of entries: by kind, endpoint and time, request, workload."""

    def entries_of_kind(self, log_id: str, kinds: Sequence[str]) -> list[Entry]:
        """Every non-EVENT entry of the given kinds in a log, in sequence order (served by ix_entries_kind)."""
        return [entry_from_row(row) for row in self._read(_ENTRIES_OF_KIND, {"log_id": log_id, "kinds": list(kinds)})]

    def kind_refs(self, log_id: str, kind: str) -> list[tuple[int, bytes]]:
        """(seq, entry_hash) of every entry of one non-EVENT kind in a log, without bodies (ix_entries_kind)."""
        return refs_from_rows(self._read(_KIND_REFS, {"log_id": log_id, "kind": kind}))

    def entries_and_refs_of_kind(
        self,
        log_id: str,
        kinds: Sequence[str],
        ref_kind: str,
        also: Sequence[tuple[DriverQuery, Mapping[str, Any]]] = (),
    ) -> tuple[list[Entry], list[tuple[int, bytes]], list[list[tuple[Any, ...]]]]:
        """entries_of_kind(log_id, kinds) and kind_refs(log_id, ref_kind), and the rows of the independent reads
        `also`, in one round trip on PostgreSQL (driver.rows_together): what a dispute lookup reads first."""
        reads: list[tuple[DriverQuery, Mapping[str, Any]]] = [
            (_ENTRIES_OF_KIND, {"log_id": log_id, "kinds": list(kinds)}),
            (_KIND_REFS, {"log_id": log_id, "kind": ref_kind}),
        ]
        with self.reading() as conn:
            entry_rows, ref_rows, *more = rows_together(conn, [*reads, *also])
        return [entry_from_row(row) for row in entry_rows], refs_from_rows(ref_rows), more

    def endpoint_window_entries(self, org_id: str, endpoint_id: str, start: int, end: int) -> list[Entry]:
        """Entries of one endpoint with occurred_at in [start, end], in occurred_at order (ix_entries_endpoint_time)."""
        query = (
            select(*ENTRY_COLUMNS)
            .where(
                entries.c.org_id == org_id,
                entries.c.endpoint_id == endpoint_id,
                entries.c.occurred_at >= start,
                entries.c.occurred_at <= end,
            )
            .order_by(entries.c.occurred_at, entries.c.seq)
        )
        with self.reading() as conn:
            rows = conn.execute(query).all()
        return [entry_from_row(row) for row in rows]

    def request_entries(self, request_id: str, org_id: str | None = None) -> list[Entry]:
        """Entries naming a request, in every org's log unless `org_id` is given (ix_entries_request)."""
        if org_id is None:
            rows = self._read(_REQUEST_ENTRIES_ANY_ORG, {"request_id": request_id})
        else:
            rows = self._read(_REQUEST_ENTRIES_OF_ORG, {"request_id": request_id, "org_id": org_id})
        return [entry_from_row(row) for row in rows]

    def workload_entries(self, log_id: str, workload_ids: Sequence[str]) -> list[Entry]:
        """Every entry of the given workloads of one log, in sequence order (ix_entries_workload)."""
        ids = sorted(set(workload_ids))
        found: list[Entry] = []
        with self.reading() as conn:
            for start in range(0, len(ids), LOOKUP_CHUNK):
                query = select(*ENTRY_COLUMNS).where(
                    entries.c.log_id == log_id, entries.c.workload_id.in_(ids[start : start + LOOKUP_CHUNK])
                )
                found.extend(entry_from_row(row) for row in conn.execute(query))
        found.sort(key=lambda entry: entry.sequence)
        return found

    def workload_entries_between(
        self, log_id: str, workload_ids: Sequence[str], start: int, end: int, *, requests: bool = True
    ) -> dict[str, list[Entry]]:
        """Entries of the given workloads with occurred_at in [start, end] (without request events unless
        `requests`), by workload, in sequence order (ix_entries_workload_time)."""
        found: dict[str, list[Entry]] = {}
        statement = _WORKLOAD_WINDOW if requests else _WORKLOAD_WINDOW_NO_REQUESTS
        for at in range(0, len(workload_ids), LOOKUP_CHUNK):
            ids = list(workload_ids[at : at + LOOKUP_CHUNK])
            for row in self._read(statement, {"log_id": log_id, "workload_ids": ids, "start": start, "end": end}):
                found.setdefault(row[-1], []).append(entry_from_row(row))
        for rows in found.values():
            rows.sort(key=lambda entry: entry.sequence)
        return found

    def entries_at(self, log_id: str, sequences: Sequence[int]) -> list[Entry]:
        """The entries of one log at the given sequence numbers (those that exist), in sequence order."""
        wanted = sorted(set(sequences))
        found: list[Entry] = []
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            params = {"log_id": log_id, "seqs": wanted[start : start + LOOKUP_CHUNK]}
            found.extend(entry_from_row(row) for row in self._read(_ENTRIES_AT, params))
        found.sort(key=lambda entry: entry.sequence)
        return found

    def entry_heads(self, log_id: str, sequences: Sequence[int]) -> list[EntryHead]:
        """The heads (kind, time, hash) of one log's entries at the given sequence numbers, in sequence order."""
        wanted = sorted(set(sequences))
        found: list[EntryHead] = []
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            params = {"log_id": log_id, "seqs": wanted[start : start + LOOKUP_CHUNK]}
            found.extend(
                EntryHead(log_id, int(seq), EntryKind(kind), int(recorded_at), binary(entry_hash))
                for seq, kind, recorded_at, entry_hash in self._read(_ENTRY_HEADS_AT, params)
            )
        found.sort(key=lambda head: head.sequence)
        return found

    def live_workloads(self, org_id: str, endpoint_id: str, at: int) -> list[str]:
        """Workloads of an endpoint up at `at`: a WORKLOAD_UP before it and no WORKLOAD_STOPPED or
        WORKLOAD_BOOT_FAILED before it (R1, R4, R5), so a session spanning a whole window with no entry inside it
        is still found.

        No index column holds the event type, so this reads the endpoint's entries before `at` through
        ix_entries_endpoint_time and matches the type in the canonical body (identifiers cannot contain a quote, so
        the pattern only matches the `type` field); only lifecycle rows leave the database. Its cost grows with
        the endpoint's history: an index on the lifecycle events would bound it (see docs/disputes.md).
        """
        is_up = _body_contains(self.dialect, b'"type":"WORKLOAD_UP"')
        ends = _body_contains(self.dialect, b'"type":"WORKLOAD_STOPPED"') | _body_contains(
            self.dialect, b'"type":"WORKLOAD_BOOT_FAILED"'
        )
        query = select(entries.c.workload_id, is_up.label("is_up")).where(
            entries.c.org_id == org_id,
            entries.c.endpoint_id == endpoint_id,
            entries.c.occurred_at < at,
            entries.c.kind == EntryKind.EVENT.value,
            is_up | ends,
        )
        up: set[str] = set()
        ended: set[str] = set()
        with self.reading() as conn:
            for row in conn.execute(query):
                (up if row.is_up else ended).add(row.workload_id)
        return sorted(up - ended)

    def running_evidence(self, log_id: str, workload_ids: Sequence[str]) -> tuple[int | None, dict[str, int]]:
        """R28: the log's latest HEARTBEAT and each workload's latest event time, from ix_entries_workload_time (a
        HEARTBEAT is the one event entry without a workload)."""
        ids = sorted(set(workload_ids))
        with self.reading() as conn:
            heartbeat = conn.execute(
                select(sa.func.max(entries.c.occurred_at)).where(
                    entries.c.log_id == log_id, entries.c.workload_id.is_(None), entries.c.kind == "EVENT"
                )
            ).scalar()
            latest: dict[str, int] = {}
            for start in range(0, len(ids), 500):
                rows = conn.execute(
                    select(entries.c.workload_id, sa.func.max(entries.c.occurred_at))
                    .where(entries.c.log_id == log_id, entries.c.workload_id.in_(ids[start : start + 500]))
                    .group_by(entries.c.workload_id)
                )
                latest.update((workload_id, int(at)) for workload_id, at in rows if at is not None)
        return (None if heartbeat is None else int(heartbeat)), latest

    def endpoint_orgs(self, endpoint_id: str) -> list[str]:
        """Orgs whose logs hold entries of an endpoint: each org log probed through ix_entries_endpoint_time."""
        with self.reading() as conn:
            logs = conn.execute(select(log_heads.c.log_id).where(log_heads.c.log_id.like("org/%"))).scalars().all()
            orgs = sorted(org for org in (org_of_log(log_id) for log_id in logs) if org)
            found: set[str] = set()
            for start in range(0, len(orgs), LOOKUP_CHUNK):
                query = (
                    select(entries.c.org_id)
                    .where(
                        entries.c.org_id.in_(orgs[start : start + LOOKUP_CHUNK]), entries.c.endpoint_id == endpoint_id
                    )
                    .distinct()
                )
                found.update(conn.execute(query).scalars())
        return sorted(found)


def _body_contains(dialect: str, needle: bytes) -> Any:
    """A condition on the stored body bytes: SQLite's LIKE never matches a BLOB but instr() searches one byte
    for byte; PostgreSQL has bytea LIKE bytea (the needle holds no LIKE wildcard but `_`, which matches itself)."""
    if dialect == "sqlite":
        return sa.func.instr(entries.c.body, needle) > 0
    return entries.c.body.op("LIKE", is_comparison=True)(b"%" + needle + b"%")


_ENTRY_HEADS_AT = DriverQuery(
    select(entries.c.seq, entries.c.kind, entries.c.recorded_at, entries.c.entry_hash).where(
        entries.c.log_id == sa.bindparam("log_id"), member_of(entries.c.seq, "seqs")
    )
)


_ENTRIES_AT = DriverQuery(
    select(*ENTRY_COLUMNS).where(entries.c.log_id == sa.bindparam("log_id"), member_of(entries.c.seq, "seqs"))
)


# `kind != 'EVENT'` written into the SQL, not bound: it is ix_entries_kind's predicate, and PostgreSQL's generic plan
# for a prepared statement can use a partial index only if the query states its predicate (bound as a parameter,
# the generic plan is a parallel scan of the whole table, so PostgreSQL kept re-planning the statement each time).
_NOT_AN_EVENT = entries.c.kind != sa.literal_column("'EVENT'")


# Sorted by `seq + 0`, which no index holds, so a plan cannot read the primary key (log id, seq) in order and filter
# the log's every event for the few kinds asked for. It did, on SQLite (which keeps no statistics unless analyzed)
# and in PostgreSQL's generic plan made before the first ANALYZE: each read cost a scan of the log, and the period
# closer makes five per org each pass (issue #26: 80% of a pass at 8,000 events, growing with the log). With one
# kind, ix_entries_kind already holds the order; with several, it yields the log's few non-events to sort.
_ENTRIES_OF_KIND = DriverQuery(
    select(*ENTRY_COLUMNS)
    .where(
        entries.c.log_id == sa.bindparam("log_id"),
        _NOT_AN_EVENT,
        member_of(entries.c.kind, "kinds"),
    )
    .order_by(entries.c.seq + sa.literal_column("0"))
)


_KIND_REFS = DriverQuery(
    select(entries.c.seq, entries.c.entry_hash)
    .where(entries.c.log_id == sa.bindparam("log_id"), _NOT_AN_EVENT, entries.c.kind == sa.bindparam("kind"))
    .order_by(entries.c.seq)
)


_REQUEST_ENTRIES = (
    select(*ENTRY_COLUMNS)
    .where(entries.c.request_id == sa.bindparam("request_id"))
    .order_by(entries.c.log_id, entries.c.seq)
)


_REQUEST_ENTRIES_ANY_ORG = DriverQuery(_REQUEST_ENTRIES)


_REQUEST_ENTRIES_OF_ORG = DriverQuery(_REQUEST_ENTRIES.where(entries.c.org_id == sa.bindparam("org_id")))


_WORKLOAD_WINDOW_ALL = select(*ENTRY_COLUMNS, entries.c.workload_id).where(
    entries.c.log_id == sa.bindparam("log_id"),
    member_of(entries.c.workload_id, "workload_ids"),
    entries.c.occurred_at >= sa.bindparam("start"),
    entries.c.occurred_at <= sa.bindparam("end"),
)


_WORKLOAD_WINDOW = DriverQuery(_WORKLOAD_WINDOW_ALL)


# Not `request_id IS NULL`: planners then pick ix_entries_request and walk every entry of the log without one.
_WORKLOAD_WINDOW_NO_REQUESTS = DriverQuery(_WORKLOAD_WINDOW_ALL.where(sa.func.coalesce(entries.c.request_id, "") == ""))
