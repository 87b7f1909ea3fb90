"""The SQL ledger store: per-log hash chains and Merkle subtree hashes in one append-only table."""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ArgumentError, DBAPIError

from ledger.errors import LedgerError, NotFound, StorageError
from ledger.export import VerifiedEntry, VerifiedLog
from ledger.issued_cuts import IssuedCut, check_price_version
from ledger.log.append import EMPTY_LOG, ROW_FIELDS, AppendBatch, Integrated, LogState, integrate, require_sizes
from ledger.log.entry import GENESIS_HASH, HASH_SIZE, Entry, EntryHead, EntryKind, LogHead
from ledger.log.merkle import Frontier, stored_at
from ledger.ports import Appended, NewEntry
from ledger.timeutil import Clock, system_clock
from storage.sql import faults, import_log, kept_heads, migrate
from storage.sql.audit_reads import AuditReads
from storage.sql.checkpoint_rows import CheckpointRows
from storage.sql.driver import DriverQuery, run_sqlite, traced
from storage.sql.entry_rows import ENTRY_COLUMNS, LOOKUP_CHUNK, binary, entry_from_row, head_from_row
from storage.sql.group_commit import PG_LANES, CommitLanes, QueuedAppend
from storage.sql.index_reads import IndexReads
from storage.sql.schema import entries, log_heads

# Entry heads cited one at a time and kept (entry_head), least recently used first out.
_HEADS_CACHED = 4096


# The append path's statements as plain SQL in the driver's parameter style. Run thousands of times a second,
# they skip SQLAlchemy's statement compilation and per-row parameter processing; the rows stored are the same.
# The rows the append step returns are in the entries table's column order (ledger.log.append.ROW_FIELDS).
_INSERT_COLUMNS = ROW_FIELDS
_EMPTY_FRONTIER = Frontier.empty().encode()


@dataclass(frozen=True)
class _AppendSql:
    marker: str  # "?" (sqlite3) or "%s" (psycopg)

    @property
    def insert_entries(self) -> str:
        marks = ", ".join([self.marker] * len(_INSERT_COLUMNS))
        return f"INSERT INTO entries ({', '.join(_INSERT_COLUMNS)}) VALUES ({marks})"

    @property
    def copy_entries(self) -> str:
        return f"COPY entries ({', '.join(_INSERT_COLUMNS)}) FROM STDIN (FORMAT BINARY)"

    @property
    def create_head(self) -> str:
        m = self.marker
        insert = f"INSERT INTO log_heads (log_id, size, head_hash, frontier) VALUES ({m}, 0, {m}, {m})"
        return insert + " ON CONFLICT (log_id) DO NOTHING" if m == "%s" else insert

    @property
    def update_head(self) -> str:
        m = self.marker
        return f"UPDATE log_heads SET size = {m}, head_hash = {m}, frontier = {m} WHERE log_id = {m}"

    @property
    def upsert_invoice_cut(self) -> str:
        m = self.marker
        return (
            f"INSERT INTO invoice_cuts (log_id, cut, seq) VALUES ({m}, {m}, {m}) ON CONFLICT (log_id) DO UPDATE "
            "SET cut = excluded.cut, seq = excluded.seq WHERE excluded.cut >= invoice_cuts.cut"
        )


_LATEST_INVOICE_CUT = "SELECT log_id, cut, seq FROM invoice_cuts ORDER BY cut DESC LIMIT 1"


def _sqlite_variables() -> int:
    """How many variables this SQLite library binds per statement (999 in old builds, 32766 since 3.32)."""
    probe = sqlite3.connect(":memory:")
    try:
        return int(probe.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    finally:
        probe.close()


_SQLITE_VARIABLES = _sqlite_variables()
# Rows per multi-row INSERT, and (log id, key) pairs per idempotency lookup: at most 500, within the limit.
_SQLITE_ROWS_PER_INSERT = min(500, _SQLITE_VARIABLES // len(_INSERT_COLUMNS))
_SQLITE_PAIRS_PER_LOOKUP = min(LOOKUP_CHUNK, _SQLITE_VARIABLES // 2)
# PostgreSQL: up to this many new rows go as multi-row INSERTs (pipelined with the head updates); more go by COPY,
# cheaper per row. The kept way (storage.sql.kept_heads: one statement, a parameter array per column) takes groups
# of up to this many rows too; bigger ones go the general way.
_PG_ROWS_PER_INSERT = 100
# Rows per multi-row INSERT on PostgreSQL: at most 50 parameters. psycopg caches its parse of a query's placeholders
# only up to 50 parameters, and re-parses a longer one at every execution: a 12-row INSERT cost this process 540-640
# us against 360-380 as four of three rows, and 60 rows 2.8-3.2 ms against 1.3 (pipelined; psycopg 3.3). A few
# texts (one to three rows) also let PostgreSQL keep one prepared statement each, whatever the group's size.
_PG_ROWS_PER_STATEMENT = max(1, 50 // len(_INSERT_COLUMNS))
# Logs whose head rows this process has seen, so appends to them skip the INSERT that creates missing heads.
_KNOWN_HEADS = 100_000


@functools.lru_cache(maxsize=16)
def _multirow_insert_sql(rows: int) -> str:
    row = "(" + ", ".join(["?"] * len(_INSERT_COLUMNS)) + ")"
    return f"INSERT INTO entries ({', '.join(_INSERT_COLUMNS)}) VALUES " + ", ".join([row] * rows)


@functools.lru_cache(maxsize=64)
def _sqlite_read_heads_sql(count: int) -> str:
    marks = ", ".join(["?"] * count)
    return f"SELECT log_id, size, head_hash, frontier FROM log_heads WHERE log_id IN ({marks})"


@functools.lru_cache(maxsize=64)
def _sqlite_existing_sql(count: int) -> str:
    # A VALUES table joined on (log_id, event_id): SQLite searches ux_entries_event_id once per pair (a row-value
    # `IN (VALUES ...)` would scan the table instead).
    keys = ", ".join(["(?, ?)"] * count)
    return (
        "SELECT e.log_id, e.event_id, e.seq, e.entry_hash, e.body "
        f"FROM (VALUES {keys}) AS k JOIN entries AS e ON e.log_id = k.column1 AND e.event_id = k.column2"
    )


# Entry kinds whose appends SqlStore._append_plain_sqlite takes: no price version (R12's guard) or invoice cut to
# check or record.
_PLAIN_KINDS = frozenset({EntryKind.EVENT, EntryKind.CREDIT})


@dataclass(frozen=True)
class _SqliteTx:
    """The pool's raw SQLite connection, with what run_sqlite reads of a SQLAlchemy Connection."""

    connection: Any
    dialect: Any
    engine: Any


def _answer_each(group: list[QueuedAppend], results: list[Appended]) -> None:
    """Slice a group's combined results back to its appends, each its own, in its own order."""
    start = 0
    for queued in group:
        queued.result = results[start : start + len(queued.entries)]
        start += len(queued.entries)


# PostgreSQL, for all the logs of a batch at once. New heads are inserted in the order of the (sorted) array.
_PG_CREATE_HEADS = (
    "INSERT INTO log_heads (log_id, size, head_hash, frontier) "
    "SELECT log_id, 0, %s, %s FROM unnest(%s::varchar[]) WITH ORDINALITY AS new(log_id, n) ORDER BY n "
    "ON CONFLICT (log_id) DO NOTHING"
)
_PG_SHARE_HEAD_SIZE = "SELECT size FROM log_heads WHERE log_id = %s FOR SHARE"
_SQLITE_HEAD_SIZE = "SELECT size FROM log_heads WHERE log_id = ?"
_PG_LOCK_HEADS = (
    "SELECT log_id, size, head_hash, frontier FROM log_heads WHERE log_id = ANY(%s) ORDER BY log_id FOR UPDATE"
)
# The (log id, key) pairs go as two JSON arrays: json.dumps is C, while psycopg dumps a list parameter element by
# element in Python (a tenth of the server's GIL time under ingest). psycopg prepares the lookup after a few runs and
# PostgreSQL then keeps one generic plan until the table is next analyzed, so the plan must not depend on what it
# knows of `entries`. As a plain join, a plan made while the table was small hashed the pairs and scanned it whole.
# Each pair is therefore looked up on its own, as a seek: the first (log id, event id) at or after the pair's, in
# the order of the R24 index (ux_entries_event_id), kept if it is the pair itself. A row comparison with that
# ORDER BY can only be an index condition of that index; with `log_id = ... AND event_id = ...` instead, a fresh
# database's generic plan probed ix_entries_workload_time on the log id alone and filtered every entry of the log
# by event id (issue #26: ~200 buffers per append's lookup in the benchmark, its dearest statement).
_PG_EXISTING = (
    "SELECT e.log_id, e.event_id, e.seq, e.entry_hash, e.body "
    "FROM ROWS FROM (json_array_elements_text(%s::json), json_array_elements_text(%s::json)) AS k(log_id, event_id) "
    "CROSS JOIN LATERAL (SELECT log_id, event_id, seq, entry_hash, body FROM entries "
    "WHERE (log_id, event_id) >= (k.log_id, k.event_id) ORDER BY log_id, event_id LIMIT 1) AS e "
    "WHERE e.log_id = k.log_id AND e.event_id = k.event_id"
)
_PG_BINARY = "b"  # psycopg.adapt.PyFormat.BINARY, without importing psycopg where SQLite is all there is
# COPY in binary, which costs this process a third less per row than text; the types are the columns' own.
_PG_COPY_TYPES = (
    "varchar", "int8", "varchar", "int8", "bytea", "bytea", "bytea", "bytea",
    "varchar", "varchar", "varchar", "varchar", "int8", "varchar",
)  # fmt: skip


def _pg_pairs(pairs: Sequence[tuple[str, str]]) -> tuple[str, str]:
    return json.dumps([p[0] for p in pairs]), json.dumps([p[1] for p in pairs])


def _found_by_log(logs: Iterable[str], rows: Iterable[Sequence[Any]]) -> dict[str, dict[str, tuple[bytes, Appended]]]:
    """The idempotency lookup's rows (log id, event id, sequence, entry hash, body) by log, then by event id."""
    found: dict[str, dict[str, tuple[bytes, Appended]]] = {log_id: {} for log_id in logs}
    for log_id, event_id, seq, entry_hash, body in rows:
        found[log_id][event_id] = (bytes(body), Appended(log_id, int(seq), bytes(entry_hash), True))
    return found


@functools.lru_cache(maxsize=8)
def _pg_multirow_insert_sql(rows: int) -> str:
    row = "(" + ", ".join(["%s"] * len(_INSERT_COLUMNS)) + ")"
    return f"INSERT INTO entries ({', '.join(_INSERT_COLUMNS)}) VALUES " + ", ".join([row] * rows)


def _pg_row_inserts(rows: Sequence[tuple[Any, ...]]) -> list[tuple[str, tuple[Any, ...]]]:
    """Entry rows as multi-row INSERTs (SQL, parameters) of _PG_ROWS_PER_STATEMENT rows at most."""
    chunks = [rows[start : start + _PG_ROWS_PER_STATEMENT] for start in range(0, len(rows), _PG_ROWS_PER_STATEMENT)]
    return [(_pg_multirow_insert_sql(len(chunk)), tuple(itertools.chain.from_iterable(chunk))) for chunk in chunks]


class SqlStore(IndexReads, AuditReads, CheckpointRows):
    """LedgerStore on SQLAlchemy Core. Appends to one log are serialized by its head row's lock.

    Its reads are split by job: storage.sql.index_reads (entries by kind, dispute lookups), audit_reads and
    checkpoint_rows; storage.sql.connections holds the engines and where each read runs."""

    def __init__(self, url: str, *, clock: Clock = system_clock, migrate_schema: bool = True) -> None:
        super().__init__(url)
        self.clock = clock
        # Group commit (storage.sql.group_commit): in one process appenders queue on a lane rather than on
        # the database's locks, and each lane's leader commits everything queued in one transaction.
        self._lanes = CommitLanes(1 if self.dialect == "sqlite" else PG_LANES)
        self._sql = _AppendSql(self.marker)
        self._copy_entries = self.writer.dialect.driver == "psycopg"
        self._known_heads: set[str] = set()  # PostgreSQL: logs whose head rows exist (_lock_heads)
        self._pipelines = self._copy_entries  # psycopg's pipeline mode sends several statements in one round trip
        self._kept_heads = kept_heads.KeptHeads()  # PostgreSQL: heads as this process committed them
        self._heads: OrderedDict[tuple[str, int], EntryHead] = OrderedDict()  # entry_head's cache
        self._committed_lock = threading.Lock()  # lanes' leaders may commit at once
        self._committed_count = 0  # append transactions committed (appends_committed)
        self._heads_lock = threading.Lock()
        if migrate_schema:
            migrate.upgrade(self.writer)

    # -- append -----------------------------------------------------------------------------------

    def append(
        self, new_entries: Sequence[NewEntry], *, expected_sizes: Mapping[str, int] | None = None
    ) -> list[Appended]:
        """Append atomically. With `expected_sizes`, only if each named log still holds exactly that many entries,
        checked under the log heads' locks in the append's own transaction; else LogMoved and nothing is appended
        (R17: an invoice is appended only while the log is as it was rated). A named log the append does not write
        (the system log whose price books rated the invoices) is held with a share lock until it commits."""
        if not new_entries:
            return []
        # Group commit: appends that queue up while a commit is in flight are committed together by the next
        # leader: one transaction, one WAL sync, and each append still lands whole or not at all, alone
        # (an R24 conflict or any other error in one append fails that append only).
        queued = QueuedAppend(new_entries, expected_sizes)
        return self._lanes.append(queued, self._append_group)

    def _append_translated(
        self, new_entries: Sequence[NewEntry], expected_sizes: Mapping[str, int] | None = None
    ) -> list[Appended]:
        try:
            with self.writer.begin() as conn:
                return self._append(conn, new_entries, expected_sizes, last=True)
        except Exception as err:  # a driver or pool failure becomes a retryable StorageError (storage.sql.faults)
            fault = faults.storage_fault(err)
            if fault is None:
                raise
            raise fault from err

    @property
    def appends_committed(self) -> int:
        """How many append transactions (groups, issue #26) this store has committed: tests count commits with it."""
        return self._committed_count

    def _append_group(self, group: list[QueuedAppend]) -> None:
        """Append every batch of `group`; each ends done, with its result or its own error."""
        try:
            if not (self.dialect == "sqlite" and self._append_plain_sqlite(group)):
                if len(group) == 1:  # nothing to share: exactly the ungrouped append
                    group[0].result = self._append_translated(group[0].entries, group[0].expected_sizes)
                else:
                    self._append_together(group)
            with self._committed_lock:
                self._committed_count += 1
        except BaseException as err:  # nothing of the group was committed
            for queued in group:
                queued.result, queued.error = None, queued.error or faults.translated(err)
            if not isinstance(err, Exception):
                raise
        finally:
            for queued in group:
                queued.done = True

    def _append_plain_sqlite(self, group: list[QueuedAppend]) -> bool:
        """SQLite, a group of plain appends (events and credits, no condition on log sizes): one transaction on the
        pooled writer connection, opened and committed on sqlite3's own connection. SQLAlchemy's Connection, its
        begin and commit and their events cost more than the group's statements (docs/appends.md).

        Returns False, with nothing committed, when the group holds anything else or an append of it fails other
        than for storage (an R24 conflict, say): the caller then commits it the general way, which answers each
        append with its own error. A storage fault (the database busy, the disk full) is raised, as there."""
        if any(q.expected_sizes is not None for q in group) or any(
            item.kind not in _PLAIN_KINDS for q in group for item in q.entries
        ):
            return False
        pooled = self.writer.raw_connection()  # the pool's one writer connection, as writer.begin() would take
        # Plain kinds add no price version and no invoice cut, so the append step runs nothing but SQLite's
        # statements, each through run_sqlite, which needs only .connection, .dialect and .engine.
        tx = cast(Connection, _SqliteTx(pooled, self.writer.dialect, self.writer))
        try:
            try:
                run_sqlite(tx, "BEGIN IMMEDIATE", ())
                results = self._append(tx, [item for queued in group for item in queued.entries])
                run_sqlite(tx, "COMMIT", ())
            except BaseException as err:
                with contextlib.suppress(sqlite3.Error):  # the pool's reset-on-return rolls back again anyway
                    pooled.driver_connection.rollback()  # type: ignore[union-attr]
                if not isinstance(err, Exception) or faults.storage_fault(err) is not None:
                    raise  # busy, full, I/O: a storage fault for every append of the group
                return False
        finally:
            pooled.close()
        _answer_each(group, results)
        return True

    def _append_together(self, group: list[QueuedAppend]) -> None:
        """Commit a group. Its unconditional appends first go as one batch in one transaction (one head lock, one
        idempotency lookup, one insert, one head update per log); if that fails, e.g. one of them conflicts (R24),
        it is rolled back whole and the group is committed again with each append in its own savepoint, as is a
        group holding an append conditional on its logs' sizes (R17's invoices)."""
        plain = [queued for queued in group if queued.expected_sizes is None]
        if len(plain) == len(group):
            try:
                with self.writer.begin() as conn:
                    results = self._append(conn, [item for queued in group for item in queued.entries], last=True)
            except Exception:  # nothing was committed: each append alone below answers with its own error
                pass
            else:
                _answer_each(group, results)
                return
        with self.writer.begin() as conn:
            if self.dialect == "postgresql":
                # Every head of the group, locked in one sorted order before any savepoint: a failed savepoint
                # releases its locks, and appends then locking one by one could deadlock another lane's group.
                written = set().union(*(queued.logs() for queued in group))
                self._lock_heads(conn, sorted(written))
                # And the logs conditional appends only read (R12/R17: the system log's price books), share-locked
                # here for the same reason: a savepoint that fails after taking one would release it.
                read = {log_id for queued in group for log_id in queued.expected_sizes or {}} - written
                for log_id in sorted(read):
                    self._share_head_size(conn, log_id)
            for queued in group:
                try:
                    with conn.begin_nested():  # a savepoint: a failed batch is undone alone
                        queued.result = self._append(conn, queued.entries, queued.expected_sizes)
                except Exception as err:
                    queued.error = faults.translated(err)

    def _append(
        self,
        conn: Connection,
        new_entries: Sequence[NewEntry],
        expected_sizes: Mapping[str, int] | None = None,
        *,
        last: bool = False,
    ) -> list[Appended]:
        """Read what the append step needs under the heads' locks, run it (ledger.log.append), persist its rows.
        `last`: nothing else runs in the transaction after this append, so on PostgreSQL its COMMIT may go in the
        same round trip as its rows."""
        recorded_at = self.clock()
        batch = AppendBatch(new_entries)
        if last and not expected_sizes and self._pipelines:
            on_kept = self._commit_on_kept_heads(conn, batch, recorded_at)
            if on_kept is not None:
                return on_kept.results
        heads, stored = self._lock_heads_and_look_up(conn, batch)
        if expected_sizes:
            require_sizes(
                expected_sizes,
                {
                    log_id: heads[log_id].size if log_id in heads else self._share_head_size(conn, log_id)
                    for log_id in expected_sizes
                },
            )
        done = integrate(batch, heads, stored, recorded_at)
        if done.price_versions:
            latest = self._latest_invoice_cut(conn, lock=True)
            for effective_from in done.price_versions:
                check_price_version(effective_from, latest)  # R12: raises, and the transaction appends nothing
        committed = self._write_rows(
            conn,
            done.rows,
            [(head.size, head.head_hash, head.frontier.encode(), log_id) for log_id, head in done.heads.items()],
            commit=last and not done.invoice_cuts,
        )
        if self._pipelines:  # kept once committed; until then (or if it never is), a kept head could be stale
            if committed:
                self._kept_heads.keep(done.heads)
            else:
                self._kept_heads.forget(done.heads)
        if done.invoice_cuts:
            self.record_invoice_cuts(conn, [(log_id, cut, seq) for log_id, (cut, seq) in done.invoice_cuts.items()])
        return done.results

    # -- R12's guard: the latest issued invoice cut ------------------------------------------------------------

    def record_invoice_cuts(self, conn: Connection, cuts: Sequence[tuple[str, int, int]]) -> None:
        """Keep each log's latest invoice cut (log id, cut, sequence), in the transaction appending the invoices."""
        conn.exec_driver_sql(self._sql.upsert_invoice_cut, list(cuts))

    def latest_invoice_cut(self) -> IssuedCut | None:
        """The latest cut instant of any issued invoice of any org, from ix_invoice_cuts_cut."""
        with self.reading() as conn:
            return self._latest_invoice_cut(conn, lock=False)

    def _latest_invoice_cut(self, conn: Connection, *, lock: bool) -> IssuedCut | None:
        if lock and self.dialect == "postgresql":
            # An invoice appended between this read and the commit could be cut after the version being added:
            # SHARE mode waits for every uncommitted invoice_cuts write and holds new ones off until the commit.
            # (SQLite's appends already hold the database's write lock.)
            conn.exec_driver_sql("LOCK TABLE invoice_cuts IN SHARE MODE")
        row = conn.exec_driver_sql(_LATEST_INVOICE_CUT).first()
        return None if row is None else IssuedCut(str(row[0]), int(row[1]), int(row[2]))

    def _insert_entries(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        """Insert entry rows (columns in _INSERT_COLUMNS order) in few statements, errors raised as SQLAlchemy's."""
        if self.dialect == "sqlite" and _SQLITE_ROWS_PER_INSERT > 1:
            # One multi-row INSERT per few hundred rows, not executemany: sqlite3 releases the GIL around every
            # statement step, and executemany steps once per row. With other RPC threads busy in Python the
            # appender, which holds the write lock, waits for the GIL again after each row (bench/ measured raw
            # inserts fall from 44,000 to under 200 rows/s with two busy threads; multi-row: 15,000).
            for start in range(0, len(rows), _SQLITE_ROWS_PER_INSERT):
                chunk = rows[start : start + _SQLITE_ROWS_PER_INSERT]
                run_sqlite(conn, _multirow_insert_sql(len(chunk)), tuple(itertools.chain.from_iterable(chunk)))
            return
        if not self._copy_entries:
            conn.exec_driver_sql(self._sql.insert_entries, rows)
            return
        # psycopg: COPY costs the server and this process several times less per row than INSERT, whether
        # executemany or multi-row VALUES. It runs in the append's transaction like any statement.
        driver: Any = conn.connection.driver_connection
        dbapi: Any = conn.dialect.dbapi
        try:
            with traced(conn.engine, self._sql.copy_entries), driver.cursor() as cursor:
                # set_types looks dumpers up by type oid, and for bytea that finds psycopg.dbapi20's dumper (it also
                # takes psycopg.Binary wrappers), written in Python: four calls into it per row. This cursor alone
                # dumps bytea with the C dumper psycopg itself picks for bytes values.
                cursor.adapters.register_dumper(bytes, cursor.adapters.get_dumper(bytes, _PG_BINARY))
                with cursor.copy(self._sql.copy_entries) as copy:
                    copy.set_types(_PG_COPY_TYPES)
                    write_row = copy.write_row
                    for row in rows:
                        write_row(row)
        except dbapi.Error as err:  # as conn.execute raises it: an OperationalError is still a StorageError
            raise DBAPIError.instance(self._sql.copy_entries, None, err, dbapi.Error, dialect=conn.dialect) from err

    def _share_head_size(self, conn: Connection, log_id: str) -> int:
        """The size of a log this append reads but does not write (the system log's price books an invoice was rated
        with, R12/R17), held until the transaction ends: on PostgreSQL a SHARE row lock, so a price-book append (which
        locks the head FOR UPDATE) waits for this append and then meets its cut in R12's guard; on SQLite the one
        writer lock already holds it."""
        sql = _PG_SHARE_HEAD_SIZE if self.dialect == "postgresql" else _SQLITE_HEAD_SIZE
        size = conn.exec_driver_sql(sql, (log_id,)).scalar_one_or_none()
        return 0 if size is None else int(size)

    def _lock_heads(self, conn: Connection, logs: list[str]) -> dict[str, LogState]:
        """Lock the heads of `logs` (sorted), creating missing ones; each log's size, head hash and frontier.

        Locks are taken in one fixed order (new heads in `logs` order, then existing ones in the database's
        order), so two multi-log batches can never deadlock.
        """
        if self.dialect != "postgresql":
            # SQLite: BEGIN IMMEDIATE already holds the database's write lock. One read for every log of the
            # batch (each statement costs this process far more than the index search it runs).
            heads: dict[str, LogState] = {}
            for start in range(0, len(logs), LOOKUP_CHUNK):
                chunk = logs[start : start + LOOKUP_CHUNK]
                for log_id, size, head_hash, frontier in run_sqlite(
                    conn, _sqlite_read_heads_sql(len(chunk)), tuple(chunk)
                ):
                    heads[log_id] = LogState(int(size), bytes(head_hash), Frontier.decode(bytes(frontier)))
            missing = [(log_id, GENESIS_HASH, _EMPTY_FRONTIER) for log_id in logs if log_id not in heads]
            if missing:
                run_sqlite(conn, self._sql.create_head, missing, many=True)
                heads.update((log_id, EMPTY_LOG) for log_id, _, _ in missing)
            return heads
        # Two statements for the whole batch rather than two per log: each is a round trip to the server. The
        # first only while a log may have no head yet (head rows are never deleted).
        if not self._known_heads.issuperset(logs):
            conn.exec_driver_sql(_PG_CREATE_HEADS, (GENESIS_HASH, _EMPTY_FRONTIER, logs))
        rows = conn.exec_driver_sql(_PG_LOCK_HEADS, (logs,)).all()
        if len(rows) < len(logs):  # a head this process saw is gone (a database emptied under it): create it
            conn.exec_driver_sql(_PG_CREATE_HEADS, (GENESIS_HASH, _EMPTY_FRONTIER, logs))
            rows = conn.exec_driver_sql(_PG_LOCK_HEADS, (logs,)).all()
        self._saw_heads(logs)
        return {row[0]: LogState(int(row[1]), bytes(row[2]), Frontier.decode(bytes(row[3]))) for row in rows}

    def _saw_heads(self, logs: Sequence[str]) -> None:
        if len(self._known_heads) > _KNOWN_HEADS:
            self._known_heads.clear()
        self._known_heads.update(logs)

    def _lock_heads_and_look_up(
        self, conn: Connection, batch: AppendBatch
    ) -> tuple[dict[str, LogState], dict[str, dict[str, tuple[bytes, Appended]]]]:
        """_lock_heads, then _existing_by_log. On PostgreSQL, for heads this process has seen, in one round trip:
        BEGIN, the heads' lock and the idempotency lookup go as one pipeline (psycopg's pipeline mode). Each
        statement still takes its own snapshot once the one before it is done, so the lookup sees every entry
        that the previous holder of a head's lock committed, as when they went one by one."""
        logs = batch.logs
        if not self._pipelines or not self._known_heads.issuperset(logs):
            return self._lock_heads(conn, logs), self._existing_by_log(conn, batch)
        pairs = batch.key_pairs()
        driver: Any = conn.connection.driver_connection
        dbapi: Any = conn.dialect.dbapi
        heads_cursor, found_cursor = driver.cursor(), driver.cursor()
        try:
            with traced(conn.engine, _PG_LOCK_HEADS + (";\n" + _PG_EXISTING if pairs else "")), driver.pipeline():
                heads_cursor.execute(_PG_LOCK_HEADS, (logs,))
                if pairs:
                    found_cursor.execute(_PG_EXISTING, _pg_pairs(pairs))
            head_rows = heads_cursor.fetchall()
            found_rows = found_cursor.fetchall() if pairs else []
        except dbapi.Error as err:  # as conn.execute raises it: an OperationalError is still a StorageError
            raise DBAPIError.instance(_PG_LOCK_HEADS, None, err, dbapi.Error, dialect=conn.dialect) from err
        finally:
            heads_cursor.close()
            found_cursor.close()
        if len(head_rows) < len(logs):  # a head this process saw is gone: create it, the slow way
            return self._lock_heads(conn, logs), self._existing_by_log(conn, batch)
        heads = {row[0]: LogState(int(row[1]), bytes(row[2]), Frontier.decode(bytes(row[3]))) for row in head_rows}
        return heads, _found_by_log(logs, found_rows)

    def _commit_on_kept_heads(self, conn: Connection, batch: AppendBatch, recorded_at: int) -> Integrated | None:
        """PostgreSQL, plain appends to logs whose heads this process committed: the whole append as one statement,
        its own transaction (storage.sql.kept_heads). None, with nothing written and no transaction open, when that
        does not apply or did not go through: the caller then appends the general way."""
        driver: Any = conn.connection.driver_connection
        if not kept_heads.has_no_transaction(driver):  # the caller's transaction holds statements already
            return None
        if any(item.kind not in _PLAIN_KINDS for item in batch.entries):
            return None
        kept = self._kept_heads.of(batch.logs)
        if kept is None:
            return None
        try:
            done = integrate(batch, kept, {}, recorded_at)  # R24: the unique index refuses an event stored already
        except LedgerError:
            # Decided knowing nothing stored: an event named twice with two bodies is an R24 conflict if the first
            # is stored already, and only the general way, which looks, can tell.
            return None
        if not done.rows or len(done.rows) > _PG_ROWS_PER_INSERT:
            return None
        dbapi: Any = conn.dialect.dbapi
        try:
            with traced(conn.engine, kept_heads.CALL):
                kept_heads.commit_on_kept_heads(driver, done.rows, kept, done.heads)
        except dbapi.Error as err:
            if getattr(err, "sqlstate", None) in kept_heads.STALE:
                # A head moved by another writer, or an event stored already: nothing was written, nothing is open.
                self._kept_heads.forget(batch.logs)
                return None
            # As conn.execute raises it: an OperationalError is still a StorageError.
            raise DBAPIError.instance(kept_heads.CALL, None, err, dbapi.Error, dialect=conn.dialect) from err
        self._kept_heads.keep(done.heads)
        return done

    def _write_rows(
        self,
        conn: Connection,
        rows: list[tuple[Any, ...]],
        head_updates: list[tuple[int, bytes, bytes, str]],
        *,
        commit: bool = False,
    ) -> bool:
        """Insert the new entry rows and move their logs' heads; True if that committed the transaction. On
        PostgreSQL a group of a few rows goes as multi-row INSERTs and the head updates in one round trip (a
        pipeline); COPY, which takes two round trips of its own, only pays for itself on bigger batches.

        `commit` (PostgreSQL, the transaction's last writes): the COMMIT goes in that pipeline too, a third round
        trip saved per group. If a statement before it fails, PostgreSQL skips the rest of the pipeline, so nothing
        commits and the error is raised as before; SQLAlchemy's commit afterwards finds no transaction open, and
        psycopg sends nothing for it."""
        if not rows:
            return False
        if not self._pipelines or len(rows) > _PG_ROWS_PER_INSERT:
            self._insert_entries(conn, rows)
            if self.dialect == "sqlite":
                run_sqlite(conn, self._sql.update_head, head_updates, many=True)
            else:
                conn.exec_driver_sql(self._sql.update_head, head_updates)
            return False
        driver: Any = conn.connection.driver_connection
        dbapi: Any = conn.dialect.dbapi
        inserts = _pg_row_inserts(rows)
        insert = inserts[0][0]
        statements = f"{insert};\n{self._sql.update_head}" + (";\nCOMMIT" if commit else "")
        try:
            with traced(conn.engine, statements), driver.pipeline(), driver.cursor() as cursor:
                for sql, params in inserts:
                    cursor.execute(sql, params)
                cursor.executemany(self._sql.update_head, head_updates)
                if commit:
                    cursor.execute("COMMIT")
        except dbapi.Error as err:  # a unique violation is an IntegrityError, as from conn.execute
            raise DBAPIError.instance(insert, None, err, dbapi.Error, dialect=conn.dialect) from err
        return commit

    def _existing_by_log(self, conn: Connection, batch: AppendBatch) -> dict[str, dict[str, tuple[bytes, Appended]]]:
        """For each log, the entries already stored under the idempotency keys of its new items (R24)."""
        found: dict[str, dict[str, tuple[bytes, Appended]]] = {log_id: {} for log_id in batch.logs}
        pairs = batch.key_pairs()
        if pairs and self.dialect != "postgresql":
            # SQLite: one join of the batch's (log, key) pairs with the unique index per chunk, not one query per log.
            for start in range(0, len(pairs), _SQLITE_PAIRS_PER_LOOKUP):
                chunk = pairs[start : start + _SQLITE_PAIRS_PER_LOOKUP]
                params = tuple(itertools.chain.from_iterable(chunk))
                for log_id, event_id, seq, entry_hash, body in run_sqlite(
                    conn, _sqlite_existing_sql(len(chunk)), params
                ):
                    found[log_id][event_id] = (bytes(body), Appended(log_id, int(seq), bytes(entry_hash), True))
        elif pairs:
            # One statement with two array parameters: its text never changes, so psycopg prepares it once.
            return _found_by_log(batch.logs, conn.exec_driver_sql(_PG_EXISTING, _pg_pairs(pairs)))
        return found

    # -- read -------------------------------------------------------------------------------------

    def get_entry(self, log_id: str, sequence: int) -> Entry:
        rows = self._read(_ENTRY_AT, {"log_id": log_id, "seq": sequence})
        if not rows:
            raise NotFound(f"no entry {log_id}#{sequence}")
        return entry_from_row(rows[0])

    def entry_head(self, log_id: str, sequence: int) -> EntryHead:
        """An entry's kind, time and hash, without reading its body. Entries never change, so heads are cached:
        the ones cited one at a time (price books, invoices) are the same in lookup after lookup."""
        key = (log_id, sequence)
        with self._heads_lock:
            cached = self._heads.get(key)
            if cached is not None:
                self._heads.move_to_end(key)
                return cached
        rows = self._read(_ENTRY_HEAD_AT, {"log_id": log_id, "seq": sequence})
        if not rows:
            raise NotFound(f"no entry {log_id}#{sequence}")
        kind, recorded_at, entry_hash = rows[0]
        head = EntryHead(log_id, sequence, EntryKind(kind), int(recorded_at), binary(entry_hash))
        with self._heads_lock:
            self._heads[key] = head
            if len(self._heads) > _HEADS_CACHED:
                self._heads.popitem(last=False)
        return head

    def list_entries(self, log_id: str, start: int, limit: int) -> list[Entry]:
        with self.reading() as conn:
            rows = conn.execute(
                select(*ENTRY_COLUMNS)
                .where(entries.c.log_id == log_id, entries.c.seq >= start)
                .order_by(entries.c.seq)
                .limit(limit)
            ).all()
        return [entry_from_row(row) for row in rows]

    def iter_entries(self, log_id: str, start: int = 0, stop: int | None = None) -> Iterator[Entry]:
        """Stream a log in sequence order in pages, so memory stays flat however long the log is."""
        page = 5000
        position = start
        while stop is None or position < stop:
            limit = page if stop is None else min(page, stop - position)
            batch = self.list_entries(log_id, position, limit)
            yield from batch
            if len(batch) < limit:
                return
            position = batch[-1].sequence + 1

    def head(self, log_id: str) -> LogHead:
        rows = self._read(_LOG_HEAD, {"log_id": log_id})
        if not rows:
            raise NotFound(f"no log {log_id!r}")
        return head_from_row(rows[0])

    def list_logs(self, after: str, limit: int) -> list[LogHead]:
        with self.reading() as conn:
            rows = conn.execute(
                select(log_heads).where(log_heads.c.log_id > after).order_by(log_heads.c.log_id).limit(limit)
            ).all()
        return [head_from_row(row) for row in rows]

    def import_logs(self, logs: Sequence[VerifiedLog], verified: Iterator[VerifiedEntry]) -> int:
        """Import's writer (storage.sql.import_log): verified entries, heads and checkpoints, all or nothing."""
        return import_log.import_logs(self, logs, verified)

    def subtree_hashes(self, log_id: str, nodes: Sequence[tuple[int, int]]) -> list[bytes]:
        """Merkle nodes (level, index) read from the entries that complete them, in one query."""
        places = [stored_at(level, index) for level, index in nodes]
        sequences = sorted({seq for seq, _ in places})
        stored: dict[int, bytes] = {}
        marker = self.marker
        with self.reading() as conn:
            # Through the driver's cursor: every proof is one such query, and building and compiling a select()
            # for it took three quarters of a proof's time (bench.verification, 1M-entry log).
            driver: Any = conn.connection.driver_connection
            cursor = driver.cursor(binary=True) if self.dialect == "postgresql" else driver.cursor()
            try:
                for start in range(0, len(sequences), LOOKUP_CHUNK):
                    chunk = sequences[start : start + LOOKUP_CHUNK]
                    cursor.execute(
                        f"SELECT seq, subtree_hashes FROM entries WHERE log_id = {marker} "
                        f"AND seq IN ({', '.join([marker] * len(chunk))})",
                        (log_id, *chunk),
                    )
                    stored.update((int(seq), bytes(blob)) for seq, blob in cursor.fetchall())
            finally:
                cursor.close()
        hashes = []
        for seq, position in places:
            blob = stored.get(seq)
            if blob is None or len(blob) < (position + 1) * HASH_SIZE:
                raise NotFound(f"Merkle node missing: {log_id}#{seq} level {position}")
            hashes.append(blob[position * HASH_SIZE : (position + 1) * HASH_SIZE])
        return hashes

    def audit_opener(self) -> Callable[[], SqlStore] | None:
        """How another process opens this database, to verify part of a log in parallel; None for one in memory."""
        in_memory = ":memory:" in self.url or "mode=memory" in self.url or self.url == "sqlite://"
        if self.dialect == "sqlite" and in_memory:
            return None
        return functools.partial(SqlStore, self.url, migrate_schema=False)

    # -- signed checkpoints (ledger.log.signing) --------------------------------------------------------------

    # -- dispute lookups (R27, ledger.dispute): index-backed reads, never a scan of a log ------------------------


# Dispute-lookup reads, built once and run on the driver's cursor (storage/sql/driver.py): building and
# executing a statement through SQLAlchemy costs more than the database takes to run it.
_ENTRY_AT = DriverQuery(
    select(*ENTRY_COLUMNS).where(entries.c.log_id == sa.bindparam("log_id"), entries.c.seq == sa.bindparam("seq"))
)
_ENTRY_HEAD_AT = DriverQuery(
    select(entries.c.kind, entries.c.recorded_at, entries.c.entry_hash).where(
        entries.c.log_id == sa.bindparam("log_id"), entries.c.seq == sa.bindparam("seq")
    )
)
_LOG_HEAD = DriverQuery(
    select(log_heads.c.log_id, log_heads.c.size, log_heads.c.head_hash, log_heads.c.frontier).where(
        log_heads.c.log_id == sa.bindparam("log_id")
    )
)


def open_store(url: str, *, clock: Clock = system_clock) -> SqlStore:
    """Open (and migrate) the store at a SQLAlchemy URL, translating connection failures into clear errors."""
    try:
        return SqlStore(url, clock=clock)
    except DBAPIError as err:
        raise StorageError(f"cannot open the ledger database at {_redact(url)}: {err.orig}") from err
    except ArgumentError as err:
        raise StorageError(
            f"{_redact(url)} is not a database URL the ledger knows: use sqlite:///FILE or "
            "postgresql+psycopg://USER@HOST/DB"
        ) from err


def _redact(url: str) -> str:
    """Never print a password from a database URL."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url
