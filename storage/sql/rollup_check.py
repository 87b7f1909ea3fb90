"""Rollup verification: re-derive an org's usage rollups from its verified entries in a scratch store and name every
stored row that differs (docs/audit.md, "Derived data").

The rollups (storage/sql/rollups.py) answer usage queries, billing evaluations and dispute lookups without
reading the log, so a tampered or buggy rollup row changes what people are told they owe while every hash still
verifies. This check runs the very code that builds them (their follower, RollupFollower.catch_up) over exactly
the entries the stored rollups say they reflect (the cursor: the org log's first `applied_size` entries and the
system log's first `system_size`), in a fresh SQLite file, and compares the two row by row. The repair is
`ledgerctl rollups rebuild`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from sqlalchemy import Table, select

from ledger.account import AccountChange, AccountHistory
from ledger.billing.cents import usd
from ledger.intake import derive_index
from ledger.log.entry import GENESIS_HASH, SYSTEM_LOG, Entry, EntryKind, org_log_id
from ledger.log.merkle import Frontier, leaf_hash
from ledger.pricebook import PriceBook, PriceHistory
from ledger.rating.money import fraction_to_decimal
from ledger.timeutil import format_micros
from storage.sql.rollups import rollup_follower
from storage.sql.schema import (
    entries,
    log_heads,
    metadata,
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
    "ROLLUP_TABLES",
    "RollupCheck",
    "RollupDifference",
    "VerifiedEntries",
    "check_org_rollups",
    "rollup_cursors_of",
]

# Every table derived from an org log by the rollups' follower, with the columns that name a row besides its log_id.
ROLLUP_TABLES: tuple[Table, ...] = (
    rollup_workloads,
    rollup_storage,
    rollup_requests,
    rollup_serving,
    rollup_request_spans,
    rollup_evidence,
)

# The cursor's columns derived from the log (the org's latest event and HEARTBEAT, R28), besides its sizes.
_CURSOR_EVIDENCE = ("latest_event_at", "heartbeat_at")

# Reads re-rate an open session from its kept lifecycle and its evidence of running (R10, R28: the evidence rows and
# the cursor's evidence columns, compared below), never from these two columns: they are compared for closed
# sessions only.
_RATED_AT_READ = frozenset({"session", "billed_end"})

# (log id, how many of its first entries) -> those entries, each checked to chain onto the one before and their root
# checked against the one the audit verified at that size (client/cli_audit.py's _entries_verified).
VerifiedEntries = Callable[[str, int], Iterable[Entry]]

_COPY_CHUNK = 5000


@dataclass(frozen=True)
class RollupDifference:
    """One stored rollup row that is not what the log gives: missing, extra, or with columns that differ."""

    table: str
    row: str
    detail: str

    def __str__(self) -> str:
        return f"{self.table}: {self.row}: {self.detail}"


@dataclass(frozen=True)
class RollupCheck:
    """One org log's rollups against the log: `applied_size` is the cursor (None: no rollups yet)."""

    log_id: str
    applied_size: int | None
    rows: int
    differences: tuple[RollupDifference, ...]
    # Why nothing was compared: the rollups caught up past the cursor the audit planned for while it ran.
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return not self.differences


def rollup_cursors_of(store: SqlStore) -> dict[str, tuple[int, int]]:
    """Every rollup cursor: log id -> (org log entries applied, system log size the rating used)."""
    with store.reading() as conn:
        rows = conn.execute(
            select(rollup_cursors.c.log_id, rollup_cursors.c.applied_size, rollup_cursors.c.system_size)
        ).all()
    return {log_id: (int(applied), int(system)) for log_id, applied, system in rows}


def check_org_rollups(
    store: SqlStore, org_id: str, verified: VerifiedEntries, cursor_seen: tuple[int, int] | None = None
) -> RollupCheck:
    """Re-derive the org's rollups from `verified` entries as the module docstring says and compare them with the
    stored ones; every difference is reported, none raises. VerificationError from `verified` propagates.

    `cursor_seen`: the cursor as the caller read it before verifying the logs (so it noted their roots at those
    sizes); if the rollups have caught up since, nothing is compared and `skipped` says so."""
    log_id = org_log_id(org_id)
    with store.snapshot(), store.reading() as conn:
        cursor = conn.execute(
            select(
                rollup_cursors.c.applied_size,
                rollup_cursors.c.system_size,
                *(rollup_cursors.c[name] for name in _CURSOR_EVIDENCE),
            ).where(rollup_cursors.c.log_id == log_id)
        ).one_or_none()
        stored = _rows(conn, log_id)
    count = sum(len(rows) for rows in stored.values())
    if cursor is None:
        extra = [
            RollupDifference(table, _name(table, key), "stored without a rollup cursor (not derived from the log)")
            for table, rows in stored.items()
            for key in rows
        ]
        return RollupCheck(log_id, None, count, tuple(extra))
    applied, system_size = int(cursor[0]), int(cursor[1])
    if cursor_seen is not None and (applied, system_size) != cursor_seen:
        why = f"its rollups caught up from {cursor_seen[0]} to {applied} entries while it was audited; run again"
        return RollupCheck(log_id, applied, count, (), why)
    with tempfile.TemporaryDirectory(prefix="usage-ledger-rollups-") as scratch_dir:
        scratch = _scratch_store(Path(scratch_dir) / "rollups.db", store)
        try:
            books = _copy(scratch, SYSTEM_LOG, verified(SYSTEM_LOG, system_size), EntryKind.PRICE_BOOK)
            changes = _copy(scratch, log_id, verified(log_id, applied), EntryKind.ACCOUNT)
            prices = PriceHistory([PriceBook.from_body(e.body_json(), e.sequence) for e in books])
            plans = AccountHistory(tuple(AccountChange.from_body(e.body_json(), e.sequence) for e in changes)).plans()
            rollup_follower(scratch).catch_up(org_id, prices, plans)
            with scratch.reading() as conn:
                expected = _rows(conn, log_id)
                derived_cursor = conn.execute(
                    select(*(rollup_cursors.c[name] for name in _CURSOR_EVIDENCE)).where(
                        rollup_cursors.c.log_id == log_id
                    )
                ).one()
        finally:
            scratch.close()
    cursor_differences = [
        RollupDifference(
            rollup_cursors.name,
            f"the cursor's {name} (R28: the org's evidence of running)",
            f"{name}: stored {_shown(name, have)}, re-derived {_shown(name, want)}",
        )
        for name, have, want in zip(_CURSOR_EVIDENCE, tuple(cursor)[2:], tuple(derived_cursor), strict=True)
        if have != want
    ]
    return RollupCheck(log_id, applied, count, (*_differences(stored, expected), *cursor_differences))


def _scratch_store(path: Path, like: SqlStore) -> SqlStore:
    """An empty SQLite store with the ledger's tables (from the schema, not the migrations: no triggers needed)."""
    scratch = SqlStore(f"sqlite:///{path}", clock=like.clock, migrate_schema=False)
    metadata.create_all(scratch.writer)
    return scratch


def _copy(scratch: SqlStore, log_id: str, source: Iterable[Entry], keep: EntryKind) -> list[Entry]:
    """Insert the entries as stored (their own hashes and times, which the rollups keep) with the columns the store
    derives, and the log's head; returns the entries of kind `keep`."""
    kept: list[Entry] = []
    previous, frontier = GENESIS_HASH, Frontier.empty()
    with scratch.writer.begin() as conn:
        rows: list[dict[str, Any]] = []
        for entry in source:
            if entry.kind is keep:
                kept.append(entry)
            encoded = entry.encoded()
            frontier, subtrees = frontier.append(leaf_hash(encoded))
            index = derive_index(entry.kind, json.loads(entry.body))
            rows.append(
                {
                    "log_id": log_id,
                    "seq": entry.sequence,
                    "kind": entry.kind.value,
                    "recorded_at": entry.recorded_at,
                    "body": entry.body,
                    "prev_hash": entry.previous_hash,
                    "entry_hash": entry.entry_hash,
                    "subtree_hashes": b"".join(subtrees),
                    **index._asdict(),
                }
            )
            previous = entry.entry_hash
            if len(rows) >= _COPY_CHUNK:
                conn.execute(entries.insert(), rows)
                rows = []
        if rows:
            conn.execute(entries.insert(), rows)
        conn.execute(
            log_heads.insert().values(log_id=log_id, size=frontier.size, head_hash=previous, frontier=frontier.encode())
        )
    return kept


def _rows(conn: Any, log_id: str) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    """Each rollup table's rows of the log, by their key (the primary key less log_id), values normalized."""
    found: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
    for table in ROLLUP_TABLES:
        key_columns = [c.name for c in table.primary_key.columns if c.name != "log_id"]
        rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        for row in conn.execute(select(table).where(table.c.log_id == log_id)):
            values = {name: _plain(value) for name, value in row._mapping.items() if name != "log_id"}
            rows[tuple(values[name] for name in key_columns)] = values
        found[table.name] = rows
    return found


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview | bytearray) else value


def _differences(
    stored: dict[str, dict[tuple[Any, ...], dict[str, Any]]],
    expected: dict[str, dict[tuple[Any, ...], dict[str, Any]]],
) -> Iterator[RollupDifference]:
    for table in ROLLUP_TABLES:
        name = table.name
        have, want = stored[name], expected[name]
        for key in sorted(want.keys() - have.keys(), key=repr):
            yield RollupDifference(name, _name(name, key), "missing (the log gives this row, the rollups lack it)")
        for key in sorted(have.keys() - want.keys(), key=repr):
            yield RollupDifference(name, _name(name, key), "not derived from the log (the log gives no such row)")
        for key in sorted(have.keys() & want.keys(), key=repr):
            row, right = have[key], want[key]
            open_session = bool(row.get("is_open")) or bool(right.get("is_open"))
            columns = [
                column
                for column in right
                if row.get(column) != right[column]
                and not (open_session and column in _RATED_AT_READ)
                and not (name == rollup_requests.name and column == "summary" and _safely_irregular(row, right))
            ]
            if columns:
                detail = "; ".join(_column_difference(column, row.get(column), right[column]) for column in columns)
                yield RollupDifference(name, _name(name, key), detail)


def _safely_irregular(stored: dict[str, Any], derived: dict[str, Any]) -> bool:
    """A request summary that differs only in saying `irregular` where one pass over the log does not. Catching up
    chunk by chunk marks a workload irregular when one of its request IDs was closed in an earlier chunk, even by
    another workload (serving._reused_request_ids counts per log), where one pass only sees reuse within the
    workload. `irregular` only makes a dispute lookup read that workload whole, the reference reading, so it never
    changes an answer; the other way round (a shortcut the log does not allow) is a difference."""
    have, want = _json_object(stored.get("summary")), _json_object(derived.get("summary"))
    if have is None or want is None or have.get("irregular") is not True or want.get("irregular") is not False:
        return False
    return {**have, "irregular": False} == want


def _name(table: str, key: tuple[Any, ...]) -> str:
    """A row as a person would look for it."""
    if table == rollup_workloads.name:
        return f"workload {key[0]}"
    if table == rollup_storage.name:
        return f"storage sample at entry #{key[0]}"
    if table == rollup_requests.name:
        return f"request summary of workload {key[0]}"
    if table == rollup_serving.name:
        return f"serving time of workload {key[0]} in the hour from {format_micros(int(key[1]))}"
    if table == rollup_evidence.name:
        return f"evidence of running of workload {key[0]} (R28)"
    return f"request {key[1]} of workload {key[0]}"


def _column_difference(column: str, stored: Any, derived: Any) -> str:
    """`column: stored X, re-derived Y`; for a JSON object blob (a request summary), only the fields that differ."""
    have, want = (_json_object(stored), _json_object(derived)) if column != "session" else (None, None)
    if have is not None and want is not None:
        return "; ".join(
            f"{column}.{name}: stored {json.dumps(have.get(name))}, re-derived {json.dumps(want.get(name))}"
            for name in sorted(have.keys() | want.keys())
            if have.get(name) != want.get(name)
        )
    return f"{column}: stored {_shown(column, stored)}, re-derived {_shown(column, derived)}"


def _json_object(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, bytes):
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _shown(column: str, value: Any) -> str:
    """Money as dollars (the exact amount behind it stays in the row), other blobs shortened."""
    try:
        if column == "charge" and isinstance(value, bytes):
            return f"{usd(fraction_to_decimal(Fraction(value.decode())))} ({value.decode()})"
        if column == "lifecycle" and isinstance(value, bytes):
            return "the lifecycle events of entries " + ", ".join(f"#{item[0]}" for item in json.loads(value))
        if column == "session" and isinstance(value, bytes):
            runs = json.loads(value)["runs"]
            return f"a session billing {usd(sum((Decimal(run[7]) for run in runs), Decimal(0)))}"
    except (ValueError, KeyError, IndexError, TypeError, ArithmeticError):
        pass
    if isinstance(value, bytes):
        return value.hex()[:32] + ("…" if len(value) > 16 else "")
    return repr(value)
