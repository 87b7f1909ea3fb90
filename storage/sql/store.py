"""The SQL ledger store: per-log hash chains and Merkle subtree hashes in one append-only table."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import json
import sqlite3
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy import and_, create_engine, event, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.pool import NullPool

from ledger.errors import EventConflict, FieldViolation, InvalidInput, LogMoved, NotFound, StorageError
from ledger.issued_cuts import IssuedCut, check_price_version, keep_latest_cut, price_version_start
from ledger.log.audit import AUDIT_COLUMNS
from ledger.log.entry import (
    GENESIS_HASH,
    HASH_SIZE,
    Entry,
    EntryHead,
    EntryKind,
    LogHead,
    chain_hash,
    entry_encoder,
    org_of_log,
)
from ledger.log.merkle import Frontier, leaf_hash, stored_at
from ledger.log.signing import CheckpointConflict, StoredCheckpoint
from ledger.ports import Appended, IndexColumns, NewEntry
from ledger.timeutil import Clock, system_clock
from storage.sql import faults, migrate
from storage.sql import schema as _schema
from storage.sql.driver import DriverQuery, rows_together
from storage.sql.group_commit import PG_LANES, CommitLanes, QueuedAppend
from storage.sql.lists import member_of
from storage.sql.schema import entries, log_heads
from storage.sql.sqlite_file import create_owner_only, sqlite_database_path

# Entry heads cited one at a time and kept (entry_head), least recently used first out.
_HEADS_CACHED = 4096
# Bound the IN (...) lists of the idempotency lookup well under every backend's parameter limit.
_LOOKUP_CHUNK = 500
_ENTRY_COLUMNS = (
    entries.c.log_id,
    entries.c.seq,
    entries.c.kind,
    entries.c.recorded_at,
    entries.c.body,
    entries.c.prev_hash,
    entries.c.entry_hash,
)


def _sqlite_engines(url: str) -> tuple[Engine, Engine]:
    """SQLite: WAL so readers never block the writer; FULL sync so an acknowledged append survives power loss.

    The writer engine opens every transaction with BEGIN IMMEDIATE, taking the write lock up front, so two
    appenders never both read a head and then race to extend it.
    """

    def tune(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    def tune_writer(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # Appends touch index pages all over the unique event_id and request_id indexes (IDs are random): a
        # bigger page cache keeps them in memory (bounded: 32 MiB per writer connection, and appends are
        # serialized on one), and checkpointing every 10,000 WAL pages instead of 1,000 writes a page that
        # several commits changed back into the database once. Durability is unchanged (synchronous=FULL);
        # bench/ measured the raw insert ceiling up about 50% at 100,000 entries.
        cursor.execute("PRAGMA cache_size=-32768")
        cursor.execute("PRAGMA wal_autocheckpoint=10000")
        cursor.close()

    def begin_immediate(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    def begin_deferred(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN")

    connect_args = {"check_same_thread": False, "timeout": 30}
    # One pooled writer connection: SQLite runs one write transaction at a time anyway, so more connections only
    # wait on its lock, and each would grow its own 32 MiB page cache (tune_writer). With the default pool, the
    # appends, the rollups' catch-up and the billing closer each came to hold one, and the server's memory grew
    # with the database (bench/, peak over a 1M-entry log: 427 MiB with several writers, 212 MiB with one). A
    # writer waits for the connection as long as SQLite's busy_timeout would have let it wait for the lock.
    pool: dict[str, Any] = (
        {"poolclass": NullPool} if ":memory:" in url else {"pool_size": 1, "max_overflow": 0, "pool_timeout": 30}
    )
    writer = create_engine(url, connect_args=connect_args, **pool)
    reader = create_engine(url, connect_args=connect_args)
    for engine, begin in ((writer, begin_immediate), (reader, begin_deferred)):
        event.listen(engine, "connect", tune)
        event.listen(engine, "begin", begin)
    event.listen(writer, "connect", tune_writer)
    return writer, reader


# A pooled connection back in the pool for less than this was working a moment ago: checking it out again skips the
# ping. HikariCP's alive-bypass window is the same idea (500 ms).
_PING_AFTER_IDLE_SECONDS = 0.5


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled PostgreSQL connection at checkout only when it sat idle past _PING_AFTER_IDLE_SECONDS.

    A connection the database dropped (a restart, a failover, an idle timeout) is found by the ping and replaced
    before anyone reads on it. SQLAlchemy's pool_pre_ping pings at every checkout: one round trip per dispute
    lookup, and a lookup answered right after another on the same connection does not need it. A ping that fails
    raises DisconnectionError, on which the pool discards the connection and checks out another (SQLAlchemy's
    documented custom pessimistic disconnect handling).
    """

    def idle_from_now(_dbapi_connection: Any, record: Any) -> None:  # a new connection, or one back in the pool
        record.info["idle_since"] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is not None and time.monotonic() - idle_since < _PING_AFTER_IDLE_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as err:  # any failure to ping means the connection is no good
            raise DisconnectionError(f"the pooled connection failed its ping: {err}") from err
        if not alive:
            raise DisconnectionError("the pooled connection failed its ping")

    event.listen(engine, "connect", idle_from_now)
    event.listen(engine, "checkin", idle_from_now)
    event.listen(engine, "checkout", checked_out)


# The append path's statements as plain SQL in the driver's parameter style. Run thousands of times a second,
# they skip SQLAlchemy's statement compilation and per-row parameter processing; the rows stored are the same.
_INSERT_COLUMNS = (
    "log_id",
    "seq",
    "kind",
    "recorded_at",
    "body",
    "prev_hash",
    "entry_hash",
    "subtree_hashes",
    # IndexColumns' fields, in its order: a row is the entry's columns plus its index tuple.
    "org_id",
    "endpoint_id",
    "workload_id",
    "request_id",
    "occurred_at",
    "event_id",
)
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
_SQLITE_PAIRS_PER_LOOKUP = min(_LOOKUP_CHUNK, _SQLITE_VARIABLES // 2)
# PostgreSQL: up to this many new rows go as one multi-row INSERT (one statement, pipelined with the head updates);
# more go by COPY, cheaper per row.
_PG_ROWS_PER_INSERT = 100
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


_EVENT = EntryKind.EVENT
# The kind column's text for each kind (a dict lookup, not the enum's `value` descriptor, on every entry).
_KIND_TEXT = {kind: kind.value for kind in EntryKind}


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
# element in Python (a tenth of the server's GIL time under ingest). PostgreSQL searches ux_entries_event_id per pair.
_PG_EXISTING = (
    "SELECT e.log_id, e.event_id, e.seq, e.entry_hash, e.body FROM entries AS e "
    "JOIN ROWS FROM (json_array_elements_text(%s::json), json_array_elements_text(%s::json)) AS k(log_id, event_id) "
    "ON e.log_id = k.log_id AND e.event_id = k.event_id"
)
_PG_BINARY = "b"  # psycopg.adapt.PyFormat.BINARY, without importing psycopg where SQLite is all there is
# COPY in binary, which costs this process a third less per row than text; the types are the columns' own.
_PG_COPY_TYPES = (
    "varchar", "int8", "varchar", "int8", "bytea", "bytea", "bytea", "bytea",
    "varchar", "varchar", "varchar", "varchar", "int8", "varchar",
)  # fmt: skip


def _conflict(
    log_id: str, event_id: str, prior: Appended, position: int, stored: bool, batch: Sequence[NewEntry]
) -> NoReturn:
    """R24: raise for an event_id whose body differs from the one it first came with.

    Stored before: EventConflict naming the stored entry. Earlier in this same batch: the batch contradicts
    itself, so it is bad input naming both events (the log holds neither; "already in the log" would be false).
    """
    if stored:
        raise EventConflict(org_of_log(log_id) or log_id, event_id, prior.sequence, prior.entry_hash)
    first = next(p for p, item in enumerate(batch) if item.log_id == log_id and item.index.event_id == event_id)
    raise InvalidInput(
        [
            FieldViolation(
                f"events[{position}].event_id",
                f"R24: {event_id!r} is also events[{first}].event_id in this batch, with a different body; "
                "nothing was appended (one event_id names one fact)",
                "EVENT_ID_REPEATED_IN_BATCH",
            )
        ]
    )


def _idempotency_pairs(items_by_log: Mapping[str, Sequence[NewEntry]]) -> list[tuple[str, str]]:
    """The (log id, event id) pairs of new items that have an idempotency key (R24), sorted."""
    return sorted(
        {
            (log_id, key)
            for log_id, items in items_by_log.items()
            for item in items
            if (key := item.index.event_id) is not None
        }
    )


def _pg_pairs(pairs: Sequence[tuple[str, str]]) -> tuple[str, str]:
    return json.dumps([p[0] for p in pairs]), json.dumps([p[1] for p in pairs])


def _found_by_log(
    items_by_log: Mapping[str, Sequence[NewEntry]], rows: Iterable[Sequence[Any]]
) -> dict[str, dict[str, tuple[bytes, Appended]]]:
    """The idempotency lookup's rows (log id, event id, sequence, entry hash, body) by log, then by event id."""
    found: dict[str, dict[str, tuple[bytes, Appended]]] = {log_id: {} for log_id in items_by_log}
    for log_id, event_id, seq, entry_hash, body in rows:
        found[log_id][event_id] = (bytes(body), Appended(log_id, int(seq), bytes(entry_hash), True))
    return found


@functools.lru_cache(maxsize=128)
def _pg_multirow_insert_sql(rows: int) -> str:
    row = "(" + ", ".join(["%s"] * len(_INSERT_COLUMNS)) + ")"
    return f"INSERT INTO entries ({', '.join(_INSERT_COLUMNS)}) VALUES " + ", ".join([row] * rows)


class SqlStore:
    """LedgerStore on SQLAlchemy Core. Appends to one log are serialized by its head row's lock."""

    def __init__(self, url: str, *, clock: Clock = system_clock, migrate_schema: bool = True) -> None:
        self.url = url
        self.clock = clock
        self.dialect = url.split(":", 1)[0].split("+", 1)[0]
        if self.dialect == "sqlite":
            database_file = sqlite_database_path(url)
            if database_file is not None:
                create_owner_only(database_file)  # before SQLite creates it with the process's umask
            self.writer, self.reader = _sqlite_engines(url)
        else:
            self.writer = create_engine(url, pool_size=8, max_overflow=8)
            _ping_when_idle(self.writer)
            self.reader = self.writer
        # Group commit (storage.sql.group_commit): in one process appenders queue on a lane rather than on
        # the database's locks, and each lane's leader commits everything queued in one transaction.
        self._lanes = CommitLanes(1 if self.dialect == "sqlite" else PG_LANES)
        self._sql = _AppendSql("?" if self.writer.dialect.paramstyle == "qmark" else "%s")
        self._copy_entries = self.writer.dialect.driver == "psycopg"
        self._known_heads: set[str] = set()  # PostgreSQL: logs whose head rows exist (_lock_heads)
        self._pipelines = self._copy_entries  # psycopg's pipeline mode sends several statements in one round trip
        # The connection of the session() or snapshot() this thread is inside, if any: every read runs on it.
        self._pinned: contextvars.ContextVar[Connection | None] = contextvars.ContextVar("pinned", default=None)
        self._snapshot: contextvars.ContextVar[bool] = contextvars.ContextVar("snapshot", default=False)
        self._heads: OrderedDict[tuple[str, int], EntryHead] = OrderedDict()  # entry_head's cache
        self._heads_lock = threading.Lock()
        if migrate_schema:
            migrate.upgrade(self.writer)

    def close(self) -> None:
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()

    def ping(self) -> None:
        """One trivial read on a pooled connection; raises StorageError when the database cannot be reached.

        On PostgreSQL a pooled connection the database dropped fails its checkout ping and is replaced by a new one
        (_ping_when_idle), so this fails only when no new connection can be made either."""
        try:
            with self.reader.connect() as conn:
                conn.execute(sa.text("SELECT 1")).scalar_one()
        except Exception as err:  # the same table as every other read and write (storage.sql.faults)
            fault = faults.storage_fault(err)
            if fault is None:
                raise
            raise fault from err

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
                return self._append(conn, new_entries, expected_sizes)
        except Exception as err:  # a driver or pool failure becomes a retryable StorageError (storage.sql.faults)
            fault = faults.storage_fault(err)
            if fault is None:
                raise
            raise fault from err

    def _append_group(self, group: list[QueuedAppend]) -> None:
        """Append every batch of `group`; each ends done, with its result or its own error."""
        try:
            if len(group) == 1:  # nothing to share: exactly the ungrouped append
                group[0].result = self._append_translated(group[0].entries, group[0].expected_sizes)
            else:
                self._append_together(group)
        except BaseException as err:  # nothing of the group was committed
            for queued in group:
                queued.result, queued.error = None, queued.error or faults.translated(err)
            if not isinstance(err, Exception):
                raise
        finally:
            for queued in group:
                queued.done = True

    def _append_together(self, group: list[QueuedAppend]) -> None:
        """Commit a group. Its unconditional appends first go as one batch in one transaction (one head lock, one
        idempotency lookup, one insert, one head update per log); if that fails, e.g. one of them conflicts (R24),
        it is rolled back whole and the group is committed again with each append in its own savepoint, as is a
        group holding an append conditional on its logs' sizes (R17's invoices)."""
        plain = [queued for queued in group if queued.expected_sizes is None]
        if len(plain) == len(group):
            try:
                with self.writer.begin() as conn:
                    results = self._append(conn, [item for queued in group for item in queued.entries])
            except Exception:  # nothing was committed: each append alone below answers with its own error
                pass
            else:
                start = 0
                for queued in group:
                    queued.result = results[start : start + len(queued.entries)]
                    start += len(queued.entries)
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
        self, conn: Connection, new_entries: Sequence[NewEntry], expected_sizes: Mapping[str, int] | None = None
    ) -> list[Appended]:
        recorded_at = self.clock()
        by_log: dict[str, list[int]] = defaultdict(list)
        for position, item in enumerate(new_entries):
            by_log[item.log_id].append(position)
        results: list[Appended | None] = [None] * len(new_entries)
        rows: list[tuple[Any, ...]] = []
        cuts: dict[str, tuple[int, int]] = {}  # log -> (cut, seq) of its latest new INVOICE entry (R12's guard)
        versions: list[int] = []  # when each new PRICE_BOOK entry takes effect
        head_updates: list[tuple[int, bytes, bytes, str]] = []
        logs = sorted(by_log)
        heads, known_by_log = self._lock_heads_and_look_up(
            conn, logs, {log: [new_entries[p] for p in by_log[log]] for log in logs}
        )
        for log_id, expected in (expected_sizes or {}).items():
            actual = heads[log_id][0] if log_id in heads else self._share_head_size(conn, log_id)
            if actual != expected:
                raise LogMoved(log_id, expected, actual)
        for log_id in logs:
            size, head_hash, frontier = heads[log_id]
            known = known_by_log[log_id]
            batch_seen: dict[str, tuple[bytes, Appended]] = {}
            encode = None
            # New entries of this log as (row without its subtree hashes, index columns); their Merkle leaves are
            # added in one Frontier.extend below, which hashes exactly what one append per leaf would.
            fresh: list[tuple[tuple[Any, ...], IndexColumns]] = []
            leaves: list[bytes] = []
            for position in by_log[log_id]:
                item = new_entries[position]
                index = item.index
                key = index.event_id
                if key is not None:
                    prior = known.get(key) or batch_seen.get(key)
                    if prior is not None:
                        prior_body, prior_result = prior
                        if prior_body != item.body:
                            _conflict(log_id, key, prior_result, position, key in known, new_entries)
                        results[position] = Appended(log_id, prior_result.sequence, prior_result.entry_hash, True)
                        continue
                if encode is None:
                    encode = entry_encoder(log_id)
                kind = _KIND_TEXT[item.kind]
                body = item.body
                encoded = encode(size, kind, recorded_at, body)
                entry_hash = chain_hash(head_hash, encoded)
                leaves.append(leaf_hash(encoded))
                fresh.append(((log_id, size, kind, recorded_at, body, head_hash, entry_hash), index))
                appended = Appended(log_id, size, entry_hash, False)
                results[position] = appended
                if key is not None:
                    batch_seen[key] = (body, appended)
                if item.kind is not _EVENT:  # one comparison per event on the ingest path
                    if item.kind is EntryKind.INVOICE:
                        keep_latest_cut(cuts, log_id, body, size)
                    elif item.kind is EntryKind.PRICE_BOOK:
                        versions.append(price_version_start(body))
                head_hash = entry_hash
                size += 1
            if fresh:
                frontier, subtrees = frontier.extend(leaves)
                join = b"".join
                rows.extend(
                    (*columns, join(nodes), *index) for (columns, index), nodes in zip(fresh, subtrees, strict=True)
                )
                head_updates.append((size, head_hash, frontier.encode(), log_id))
        if versions:
            latest = self._latest_invoice_cut(conn, lock=True)
            for effective_from in versions:
                check_price_version(effective_from, latest)  # R12: raises, and the transaction appends nothing
        self._write_rows(conn, rows, head_updates)
        if cuts:
            self.record_invoice_cuts(conn, [(log_id, cut, seq) for log_id, (cut, seq) in cuts.items()])
        return [r for r in results if r is not None]

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
                conn.exec_driver_sql(_multirow_insert_sql(len(chunk)), tuple(itertools.chain.from_iterable(chunk)))
            return
        if not self._copy_entries:
            conn.exec_driver_sql(self._sql.insert_entries, rows)
            return
        # psycopg: COPY costs the server and this process several times less per row than INSERT, whether
        # executemany or multi-row VALUES. It runs in the append's transaction like any statement.
        driver: Any = conn.connection.driver_connection
        dbapi: Any = conn.dialect.dbapi
        try:
            with driver.cursor() as cursor:
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

    def _lock_heads(self, conn: Connection, logs: list[str]) -> dict[str, tuple[int, bytes, Frontier]]:
        """Lock the heads of `logs` (sorted), creating missing ones; each log's size, head hash and frontier.

        Locks are taken in one fixed order (new heads in `logs` order, then existing ones in the database's
        order), so two multi-log batches can never deadlock.
        """
        if self.dialect != "postgresql":
            # SQLite: BEGIN IMMEDIATE already holds the database's write lock. One read for every log of the
            # batch (each statement costs this process far more than the index search it runs).
            heads: dict[str, tuple[int, bytes, Frontier]] = {}
            for start in range(0, len(logs), _LOOKUP_CHUNK):
                chunk = logs[start : start + _LOOKUP_CHUNK]
                for log_id, size, head_hash, frontier in conn.exec_driver_sql(
                    _sqlite_read_heads_sql(len(chunk)), tuple(chunk)
                ):
                    heads[log_id] = (int(size), bytes(head_hash), Frontier.decode(bytes(frontier)))
            missing = [(log_id, GENESIS_HASH, _EMPTY_FRONTIER) for log_id in logs if log_id not in heads]
            if missing:
                conn.exec_driver_sql(self._sql.create_head, missing)
                heads.update((log_id, (0, GENESIS_HASH, Frontier.empty())) for log_id, _, _ in missing)
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
        return {row[0]: (int(row[1]), bytes(row[2]), Frontier.decode(bytes(row[3]))) for row in rows}

    def _saw_heads(self, logs: Sequence[str]) -> None:
        if len(self._known_heads) > _KNOWN_HEADS:
            self._known_heads.clear()
        self._known_heads.update(logs)

    def _lock_heads_and_look_up(
        self, conn: Connection, logs: list[str], items_by_log: dict[str, list[NewEntry]]
    ) -> tuple[dict[str, tuple[int, bytes, Frontier]], dict[str, dict[str, tuple[bytes, Appended]]]]:
        """_lock_heads, then _existing_by_log. On PostgreSQL, for heads this process has seen, in one round trip:
        BEGIN, the heads' lock and the idempotency lookup go as one pipeline (psycopg's pipeline mode). Each
        statement still takes its own snapshot once the one before it is done, so the lookup sees every entry
        that the previous holder of a head's lock committed, as when they went one by one."""
        if not self._pipelines or not self._known_heads.issuperset(logs):
            return self._lock_heads(conn, logs), self._existing_by_log(conn, items_by_log)
        pairs = _idempotency_pairs(items_by_log)
        driver: Any = conn.connection.driver_connection
        dbapi: Any = conn.dialect.dbapi
        heads_cursor, found_cursor = driver.cursor(), driver.cursor()
        try:
            with driver.pipeline():
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
            return self._lock_heads(conn, logs), self._existing_by_log(conn, items_by_log)
        heads = {row[0]: (int(row[1]), bytes(row[2]), Frontier.decode(bytes(row[3]))) for row in head_rows}
        return heads, _found_by_log(items_by_log, found_rows)

    def _write_rows(
        self, conn: Connection, rows: list[tuple[Any, ...]], head_updates: list[tuple[int, bytes, bytes, str]]
    ) -> None:
        """Insert the new entry rows and move their logs' heads. On PostgreSQL a group of a few rows goes as one
        multi-row INSERT and the head updates in one round trip (a pipeline); COPY, which takes two round trips
        of its own, only pays for itself on bigger batches."""
        if not rows:
            return
        if not self._pipelines or len(rows) > _PG_ROWS_PER_INSERT:
            self._insert_entries(conn, rows)
            conn.exec_driver_sql(self._sql.update_head, head_updates)
            return
        driver: Any = conn.connection.driver_connection
        dbapi: Any = conn.dialect.dbapi
        insert = _pg_multirow_insert_sql(len(rows))
        try:
            with driver.pipeline(), driver.cursor() as cursor:
                cursor.execute(insert, tuple(itertools.chain.from_iterable(rows)))
                cursor.executemany(self._sql.update_head, head_updates)
        except dbapi.Error as err:  # a unique violation is an IntegrityError, as from conn.execute
            raise DBAPIError.instance(insert, None, err, dbapi.Error, dialect=conn.dialect) from err

    def _existing_by_log(
        self, conn: Connection, items_by_log: dict[str, list[NewEntry]]
    ) -> dict[str, dict[str, tuple[bytes, Appended]]]:
        """For each log, the entries already stored under the idempotency keys of its new items (R24)."""
        found: dict[str, dict[str, tuple[bytes, Appended]]] = {log_id: {} for log_id in items_by_log}
        pairs = _idempotency_pairs(items_by_log)
        if pairs and self.dialect != "postgresql":
            # SQLite: one join of the batch's (log, key) pairs with the unique index per chunk, not one query per log.
            for start in range(0, len(pairs), _SQLITE_PAIRS_PER_LOOKUP):
                chunk = pairs[start : start + _SQLITE_PAIRS_PER_LOOKUP]
                params = tuple(itertools.chain.from_iterable(chunk))
                for log_id, event_id, seq, entry_hash, body in conn.exec_driver_sql(
                    _sqlite_existing_sql(len(chunk)), params
                ):
                    found[log_id][event_id] = (bytes(body), Appended(log_id, int(seq), bytes(entry_hash), True))
        elif pairs:
            # One statement with two array parameters: its text never changes, so psycopg prepares it once.
            return _found_by_log(items_by_log, conn.exec_driver_sql(_PG_EXISTING, _pg_pairs(pairs)))
        return found

    # -- read -------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection to read on: the pinned one inside session() or snapshot(); else one from the pool."""
        pinned = self._pinned.get()
        if pinned is not None:
            yield pinned
            return
        with self.reader.connect() as conn:
            yield conn

    def in_snapshot(self) -> bool:
        return self._snapshot.get()

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Run every read inside on one pooled connection, each seeing what is committed when it runs.

        A dispute lookup makes a score of small reads: from one pooled connection each, checking out (and, on
        PostgreSQL, pinging) a connection and resetting it cost more than most of the reads. A snapshot() inside
        a session continues on its connection.
        """
        if self._pinned.get() is not None:
            yield
            return
        with self.reader.connect() as conn:
            if self.dialect == "postgresql":
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")  # no transaction held between reads
            token = self._pinned.set(conn)
            try:
                yield
            finally:
                self._pinned.reset(token)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Run every read inside in one read transaction on one connection, so they all see the same state.

        The answer must be consistent: an append landing between two of a lookup's reads must not show up in one
        and not the other. SQLite's deferred transaction (WAL) fixes its view at the first read; PostgreSQL's
        REPEATABLE READ at the first statement. Nested snapshots share the outer one.
        """
        if self._snapshot.get():
            yield
            return
        in_session = self._pinned.get() is not None
        with self.session():
            conn = self._pinned.get()
            assert conn is not None
            if conn.in_transaction():  # SQLAlchemy began one for a read of the session: the snapshot starts now
                conn.rollback()
            if self.dialect == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            pinned, snapshot = self._pinned.set(conn), self._snapshot.set(True)
            try:
                with conn.begin():
                    yield
            finally:
                self._snapshot.reset(snapshot)
                self._pinned.reset(pinned)
                if in_session and self.dialect == "postgresql":
                    # The session goes on (SQLAlchemy set the isolation level on its connection, in place): its
                    # reads after the snapshot must again hold no transaction between them.
                    conn.execution_options(isolation_level="AUTOCOMMIT")

    def _read(self, query: DriverQuery, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        pinned = self._pinned.get()
        if pinned is not None:
            return query.rows(pinned, params)
        with self.reader.connect() as conn:
            if self.dialect == "postgresql":
                # One statement needs no transaction around it: in autocommit it is one round trip, not a BEGIN,
                # the statement and the pool's ROLLBACK (every append reads the system log's head, for R11).
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            return query.rows(conn, params)

    def get_entry(self, log_id: str, sequence: int) -> Entry:
        rows = self._read(_ENTRY_AT, {"log_id": log_id, "seq": sequence})
        if not rows:
            raise NotFound(f"no entry {log_id}#{sequence}")
        return _entry(rows[0])

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
        head = EntryHead(log_id, sequence, EntryKind(kind), int(recorded_at), _bytes(entry_hash))
        with self._heads_lock:
            self._heads[key] = head
            if len(self._heads) > _HEADS_CACHED:
                self._heads.popitem(last=False)
        return head

    def list_entries(self, log_id: str, start: int, limit: int) -> list[Entry]:
        with self.reading() as conn:
            rows = conn.execute(
                select(*_ENTRY_COLUMNS)
                .where(entries.c.log_id == log_id, entries.c.seq >= start)
                .order_by(entries.c.seq)
                .limit(limit)
            ).all()
        return [_entry(row) for row in rows]

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
        return _head(rows[0])

    def list_logs(self, after: str, limit: int) -> list[LogHead]:
        with self.reading() as conn:
            rows = conn.execute(
                select(log_heads).where(log_heads.c.log_id > after).order_by(log_heads.c.log_id).limit(limit)
            ).all()
        return [_head(row) for row in rows]

    def subtree_hashes(self, log_id: str, nodes: Sequence[tuple[int, int]]) -> list[bytes]:
        """Merkle nodes (level, index) read from the entries that complete them, in one query."""
        places = [stored_at(level, index) for level, index in nodes]
        sequences = sorted({seq for seq, _ in places})
        stored: dict[int, bytes] = {}
        marker = self._sql.marker
        with self.reading() as conn:
            # Through the driver's cursor: every proof is one such query, and building and compiling a select()
            # for it took three quarters of a proof's time (bench.verification, 1M-entry log).
            driver: Any = conn.connection.driver_connection
            cursor = driver.cursor(binary=True) if self.dialect == "postgresql" else driver.cursor()
            try:
                for start in range(0, len(sequences), _LOOKUP_CHUNK):
                    chunk = sequences[start : start + _LOOKUP_CHUNK]
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

    def audit_rows(self, log_id: str, start: int = 0) -> Iterator[tuple[Entry, IndexColumns, bytes]]:
        """Every stored column of a log's entries in sequence order, paged so memory stays flat."""
        columns = (
            *_ENTRY_COLUMNS,
            entries.c.org_id,
            entries.c.endpoint_id,
            entries.c.workload_id,
            entries.c.request_id,
            entries.c.occurred_at,
            entries.c.event_id,
            entries.c.subtree_hashes,
        )
        page = 5000
        position = start
        while True:
            with self.reading() as conn:
                # Keyset paging on the primary key: a deleted row shows up as a gap, not a shifted page.
                rows = conn.execute(
                    select(*columns)
                    .where(and_(entries.c.log_id == log_id, entries.c.seq >= position))
                    .order_by(entries.c.seq)
                    .limit(page)
                ).all()
            for row in rows:
                index = IndexColumns(
                    row.org_id, row.endpoint_id, row.workload_id, row.request_id, row.occurred_at, row.event_id
                )
                yield _entry(row), index, _bytes(row.subtree_hashes)
            if len(rows) < page:
                return
            position = int(rows[-1].seq) + 1

    def audit_pages(self, log_id: str, start: int = 0, stop: int | None = None) -> Iterator[list[tuple[Any, ...]]]:
        """audit_rows as the driver's own row tuples (ledger.log.audit.AUDIT_COLUMNS), a page at a time, up to `stop`.

        Verification reads every row of a log: through the DB-API cursor, one query per page, it skips SQLAlchemy's
        Row and the Entry and IndexColumns objects, which cost more than the checks themselves.
        """
        marker = self._sql.marker
        sql = (
            f"SELECT {', '.join(AUDIT_COLUMNS)} FROM entries WHERE log_id = {marker} AND seq >= {marker} "
            f"AND seq < {marker} ORDER BY seq LIMIT {marker}"
        )
        page = 20_000
        end = 2**63 - 1 if stop is None else stop
        position = start
        while position < end:
            with self.reading() as conn:
                driver: Any = conn.connection.driver_connection
                # psycopg's binary format halves the client's cost of reading these rows (bytea needs no hex).
                cursor = driver.cursor(binary=True) if self.dialect == "postgresql" else driver.cursor()
                try:
                    # Keyset paging on the primary key: a deleted row shows up as a gap, not a shifted page.
                    cursor.execute(sql, (log_id, position, end, page))
                    rows: list[tuple[Any, ...]] = cursor.fetchall()
                finally:
                    cursor.close()
            if rows:
                yield rows
            if len(rows) < page:
                return
            position = int(rows[-1][0]) + 1

    def audit_opener(self) -> Callable[[], SqlStore] | None:
        """How another process opens this database, to verify part of a log in parallel; None for one in memory."""
        in_memory = ":memory:" in self.url or "mode=memory" in self.url or self.url == "sqlite://"
        if self.dialect == "sqlite" and in_memory:
            return None
        return functools.partial(SqlStore, self.url, migrate_schema=False)

    def entries_of_kind(self, log_id: str, kinds: Sequence[str]) -> list[Entry]:
        """Every non-EVENT entry of the given kinds in a log, in sequence order (served by ix_entries_kind)."""
        return [_entry(row) for row in self._read(_ENTRIES_OF_KIND, {"log_id": log_id, "kinds": list(kinds)})]

    def kind_refs(self, log_id: str, kind: str) -> list[tuple[int, bytes]]:
        """(seq, entry_hash) of every entry of one non-EVENT kind in a log, without bodies (ix_entries_kind)."""
        return _refs(self._read(_KIND_REFS, {"log_id": log_id, "kind": kind}))

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
        return [_entry(row) for row in entry_rows], _refs(ref_rows), more

    # -- signed checkpoints (ledger.log.signing) --------------------------------------------------------------

    def latest_checkpoint(self, log_id: str) -> StoredCheckpoint | None:
        """The log's checkpoint of the largest size, or None."""
        rows = self._read(_LATEST_CHECKPOINT, {"log_id": log_id})
        return _checkpoint(rows[0]) if rows else None

    def checkpoints(self, log_id: str, max_size: int) -> list[StoredCheckpoint]:
        """The log's checkpoints of sizes up to `max_size`, smallest first (an export carries them)."""
        table = _schema.checkpoints
        with self.reading() as conn:
            rows = conn.execute(
                select(table).where(table.c.log_id == log_id, table.c.size <= max_size).order_by(table.c.size)
            ).all()
        return [_checkpoint(row) for row in rows]

    def checkpoint_page(self, log_id: str, start_size: int, limit: int) -> list[StoredCheckpoint]:
        """Up to `limit` of the log's checkpoints of sizes from `start_size` on, smallest first."""
        table = _schema.checkpoints
        with self.reading() as conn:
            rows = conn.execute(
                select(table)
                .where(table.c.log_id == log_id, table.c.size >= start_size)
                .order_by(table.c.size)
                .limit(limit)
            ).all()
        return [_checkpoint(row) for row in rows]

    def checkpoint_at(self, log_id: str, size: int) -> StoredCheckpoint | None:
        table = _schema.checkpoints
        with self.reading() as conn:
            row = conn.execute(select(table).where(table.c.log_id == log_id, table.c.size == size)).one_or_none()
        return None if row is None else _checkpoint(row)

    def add_checkpoint(self, checkpoint: StoredCheckpoint, previous_size: int | None) -> None:
        """Append a checkpoint if the newest stored one of its log still has `previous_size` (None: none stored).

        Per-log serialization: PostgreSQL takes a transaction-scoped advisory lock on the log, SQLite's writer
        transactions (BEGIN IMMEDIATE) hold the database lock. So two signers never both extend the same newest
        checkpoint, and every stored checkpoint was checked against the one before it.
        """
        table = _schema.checkpoints
        try:
            with self.writer.begin() as conn:
                if self.dialect == "postgresql":
                    conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(hashtext('usage-ledger checkpoints ' || :log_id))"),
                        {"log_id": checkpoint.log_id},
                    )
                newest = conn.execute(
                    select(sa.func.max(table.c.size)).where(table.c.log_id == checkpoint.log_id)
                ).scalar_one_or_none()
                if newest != previous_size:
                    raise CheckpointConflict(
                        f"log {checkpoint.log_id}: newest checkpoint is now of size {newest}, not {previous_size}"
                    )
                conn.execute(
                    table.insert().values(
                        log_id=checkpoint.log_id,
                        size=checkpoint.size,
                        root_hash=checkpoint.root_hash,
                        note=checkpoint.note,
                        signed_at=checkpoint.signed_at,
                    )
                )
        except sa.exc.IntegrityError as err:  # a concurrent signer of the same size, on a backend without the lock
            raise CheckpointConflict(f"log {checkpoint.log_id}: size {checkpoint.size} was signed meanwhile") from err
        except OperationalError as err:
            raise faults.translated(err) from err

    # -- dispute lookups (R27, ledger.dispute): index-backed reads, never a scan of a log ------------------------

    def endpoint_window_entries(self, org_id: str, endpoint_id: str, start: int, end: int) -> list[Entry]:
        """Entries of one endpoint with occurred_at in [start, end], in occurred_at order (ix_entries_endpoint_time)."""
        query = (
            select(*_ENTRY_COLUMNS)
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
        return [_entry(row) for row in rows]

    def request_entries(self, request_id: str, org_id: str | None = None) -> list[Entry]:
        """Entries naming a request, in every org's log unless `org_id` is given (ix_entries_request)."""
        if org_id is None:
            rows = self._read(_REQUEST_ENTRIES_ANY_ORG, {"request_id": request_id})
        else:
            rows = self._read(_REQUEST_ENTRIES_OF_ORG, {"request_id": request_id, "org_id": org_id})
        return [_entry(row) for row in rows]

    def workload_entries(self, log_id: str, workload_ids: Sequence[str]) -> list[Entry]:
        """Every entry of the given workloads of one log, in sequence order (ix_entries_workload)."""
        ids = sorted(set(workload_ids))
        found: list[Entry] = []
        with self.reading() as conn:
            for start in range(0, len(ids), _LOOKUP_CHUNK):
                query = select(*_ENTRY_COLUMNS).where(
                    entries.c.log_id == log_id, entries.c.workload_id.in_(ids[start : start + _LOOKUP_CHUNK])
                )
                found.extend(_entry(row) for row in conn.execute(query))
        found.sort(key=lambda entry: entry.sequence)
        return found

    def workload_entries_between(
        self, log_id: str, workload_ids: Sequence[str], start: int, end: int, *, requests: bool = True
    ) -> dict[str, list[Entry]]:
        """Entries of the given workloads with occurred_at in [start, end] (without request events unless
        `requests`), by workload, in sequence order (ix_entries_workload_time)."""
        found: dict[str, list[Entry]] = {}
        statement = _WORKLOAD_WINDOW if requests else _WORKLOAD_WINDOW_NO_REQUESTS
        for at in range(0, len(workload_ids), _LOOKUP_CHUNK):
            ids = list(workload_ids[at : at + _LOOKUP_CHUNK])
            for row in self._read(statement, {"log_id": log_id, "workload_ids": ids, "start": start, "end": end}):
                found.setdefault(row[-1], []).append(_entry(row))
        for rows in found.values():
            rows.sort(key=lambda entry: entry.sequence)
        return found

    def entries_at(self, log_id: str, sequences: Sequence[int]) -> list[Entry]:
        """The entries of one log at the given sequence numbers (those that exist), in sequence order."""
        wanted = sorted(set(sequences))
        found: list[Entry] = []
        for start in range(0, len(wanted), _LOOKUP_CHUNK):
            params = {"log_id": log_id, "seqs": wanted[start : start + _LOOKUP_CHUNK]}
            found.extend(_entry(row) for row in self._read(_ENTRIES_AT, params))
        found.sort(key=lambda entry: entry.sequence)
        return found

    def entry_heads(self, log_id: str, sequences: Sequence[int]) -> list[EntryHead]:
        """The heads (kind, time, hash) of one log's entries at the given sequence numbers, in sequence order."""
        wanted = sorted(set(sequences))
        found: list[EntryHead] = []
        for start in range(0, len(wanted), _LOOKUP_CHUNK):
            params = {"log_id": log_id, "seqs": wanted[start : start + _LOOKUP_CHUNK]}
            found.extend(
                EntryHead(log_id, int(seq), EntryKind(kind), int(recorded_at), _bytes(entry_hash))
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
            for start in range(0, len(orgs), _LOOKUP_CHUNK):
                query = (
                    select(entries.c.org_id)
                    .where(
                        entries.c.org_id.in_(orgs[start : start + _LOOKUP_CHUNK]), entries.c.endpoint_id == endpoint_id
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


# Dispute-lookup reads, built once and run on the driver's cursor (storage/sql/driver.py): building and
# executing a statement through SQLAlchemy costs more than the database takes to run it.
_ENTRY_AT = DriverQuery(
    select(*_ENTRY_COLUMNS).where(entries.c.log_id == sa.bindparam("log_id"), entries.c.seq == sa.bindparam("seq"))
)
_ENTRY_HEAD_AT = DriverQuery(
    select(entries.c.kind, entries.c.recorded_at, entries.c.entry_hash).where(
        entries.c.log_id == sa.bindparam("log_id"), entries.c.seq == sa.bindparam("seq")
    )
)
_ENTRY_HEADS_AT = DriverQuery(
    select(entries.c.seq, entries.c.kind, entries.c.recorded_at, entries.c.entry_hash).where(
        entries.c.log_id == sa.bindparam("log_id"), member_of(entries.c.seq, "seqs")
    )
)
_ENTRIES_AT = DriverQuery(
    select(*_ENTRY_COLUMNS).where(entries.c.log_id == sa.bindparam("log_id"), member_of(entries.c.seq, "seqs"))
)
# `kind != 'EVENT'` written into the SQL, not bound: it is ix_entries_kind's predicate, and PostgreSQL's generic plan
# for a prepared statement can use a partial index only if the query states its predicate (bound as a parameter,
# the generic plan is a parallel scan of the whole table, so PostgreSQL kept re-planning the statement each time).
_NOT_AN_EVENT = entries.c.kind != sa.literal_column("'EVENT'")
_ENTRIES_OF_KIND = DriverQuery(
    select(*_ENTRY_COLUMNS)
    .where(
        entries.c.log_id == sa.bindparam("log_id"),
        _NOT_AN_EVENT,
        member_of(entries.c.kind, "kinds"),
    )
    .order_by(entries.c.seq)
)
_KIND_REFS = DriverQuery(
    select(entries.c.seq, entries.c.entry_hash)
    .where(entries.c.log_id == sa.bindparam("log_id"), _NOT_AN_EVENT, entries.c.kind == sa.bindparam("kind"))
    .order_by(entries.c.seq)
)
_REQUEST_ENTRIES = (
    select(*_ENTRY_COLUMNS)
    .where(entries.c.request_id == sa.bindparam("request_id"))
    .order_by(entries.c.log_id, entries.c.seq)
)
_REQUEST_ENTRIES_ANY_ORG = DriverQuery(_REQUEST_ENTRIES)
_REQUEST_ENTRIES_OF_ORG = DriverQuery(_REQUEST_ENTRIES.where(entries.c.org_id == sa.bindparam("org_id")))
_WORKLOAD_WINDOW_ALL = select(*_ENTRY_COLUMNS, entries.c.workload_id).where(
    entries.c.log_id == sa.bindparam("log_id"),
    member_of(entries.c.workload_id, "workload_ids"),
    entries.c.occurred_at >= sa.bindparam("start"),
    entries.c.occurred_at <= sa.bindparam("end"),
)
_WORKLOAD_WINDOW = DriverQuery(_WORKLOAD_WINDOW_ALL)
# Not `request_id IS NULL`: planners then pick ix_entries_request and walk every entry of the log without one.
_WORKLOAD_WINDOW_NO_REQUESTS = DriverQuery(_WORKLOAD_WINDOW_ALL.where(sa.func.coalesce(entries.c.request_id, "") == ""))
_LOG_HEAD = DriverQuery(
    select(log_heads.c.log_id, log_heads.c.size, log_heads.c.head_hash, log_heads.c.frontier).where(
        log_heads.c.log_id == sa.bindparam("log_id")
    )
)
_LATEST_CHECKPOINT = DriverQuery(
    select(*_schema.checkpoints.c)
    .where(_schema.checkpoints.c.log_id == sa.bindparam("log_id"))
    .order_by(_schema.checkpoints.c.size.desc())
    .limit(1)
)


def _refs(rows: Sequence[tuple[Any, ...]]) -> list[tuple[int, bytes]]:
    return [(int(seq), _bytes(entry_hash)) for seq, entry_hash in rows]


def _bytes(value: Any) -> bytes:
    """Binary columns as bytes, even when a hand edit stored text there (audit must report it, not crash)."""
    return value.encode() if isinstance(value, str) else bytes(value)


def _entry(row: Sequence[Any]) -> Entry:
    """An entry from a row whose first columns are _ENTRY_COLUMNS, in that order."""
    log_id, seq, kind, recorded_at, body, prev_hash, entry_hash = row[:7]
    return Entry(
        log_id=log_id,
        sequence=int(seq),
        kind=EntryKind(kind),
        recorded_at=int(recorded_at),
        body=_bytes(body),
        previous_hash=_bytes(prev_hash),
        entry_hash=_bytes(entry_hash),
    )


def _checkpoint(row: Sequence[Any]) -> StoredCheckpoint:
    log_id, size, root_hash, note, signed_at = row
    return StoredCheckpoint(log_id, int(size), _bytes(root_hash), str(note), int(signed_at))


def _head(row: Sequence[Any]) -> LogHead:
    log_id, size, head_hash, frontier = row
    return LogHead(log_id, int(size), bytes(head_hash), Frontier.decode(bytes(frontier)).root())


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
