"""The SQL ledger store: per-log hash chains and Merkle subtree hashes in one append-only table."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import and_, create_engine, event, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from ledger.entry import GENESIS_HASH, HASH_SIZE, Entry, EntryKind, LogHead, chain_hash, entry_bytes, org_of_log
from ledger.errors import EventConflict, NotFound, StorageError
from ledger.merkle import Frontier, leaf_hash, stored_at
from ledger.sqlstore import migrate
from ledger.sqlstore.schema import entries, log_heads
from ledger.store import Appended, IndexColumns, NewEntry
from ledger.timeutil import Clock, system_clock

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

    def begin_immediate(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    def begin_deferred(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN")

    connect_args = {"check_same_thread": False, "timeout": 30}
    writer = create_engine(url, connect_args=connect_args, poolclass=NullPool if ":memory:" in url else None)
    reader = create_engine(url, connect_args=connect_args)
    for engine, begin in ((writer, begin_immediate), (reader, begin_deferred)):
        event.listen(engine, "connect", tune)
        event.listen(engine, "begin", begin)
    return writer, reader


class SqlStore:
    """LedgerStore on SQLAlchemy Core. Appends to one log are serialized by its head row's lock."""

    def __init__(self, url: str, *, clock: Clock = system_clock, migrate_schema: bool = True) -> None:
        self.url = url
        self.clock = clock
        self.dialect = url.split(":", 1)[0].split("+", 1)[0]
        if self.dialect == "sqlite":
            self.writer, self.reader = _sqlite_engines(url)
        else:
            self.writer = create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)
            self.reader = self.writer
        # In one process, queue appenders here rather than on the database lock (cheaper, and fair).
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None
        if migrate_schema:
            migrate.upgrade(self.writer)

    def close(self) -> None:
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()

    # -- append -----------------------------------------------------------------------------------

    def append(self, new_entries: Sequence[NewEntry]) -> list[Appended]:
        if not new_entries:
            return []
        if self._write_lock is not None:
            with self._write_lock:
                return self._append_translated(new_entries)
        return self._append_translated(new_entries)

    def _append_translated(self, new_entries: Sequence[NewEntry]) -> list[Appended]:
        try:
            with self.writer.begin() as conn:
                return self._append(conn, new_entries)
        except OperationalError as err:
            raise StorageError(
                f"the database did not take the append ({err.orig}); retry with the same event IDs"
            ) from err

    def _append(self, conn: Connection, new_entries: Sequence[NewEntry]) -> list[Appended]:
        recorded_at = self.clock()
        by_log: dict[str, list[int]] = defaultdict(list)
        for position, item in enumerate(new_entries):
            by_log[item.log_id].append(position)
        results: list[Appended | None] = [None] * len(new_entries)
        rows: list[dict[str, Any]] = []
        head_updates: list[dict[str, Any]] = []
        # Lock heads in a fixed order so two multi-log batches can never deadlock.
        for log_id in sorted(by_log):
            size, head_hash, frontier = self._lock_head(conn, log_id)
            positions = by_log[log_id]
            known = self._existing(conn, log_id, [new_entries[p] for p in positions])
            batch_seen: dict[str, tuple[bytes, Appended]] = {}
            start_size = size
            for position in positions:
                item = new_entries[position]
                key = item.index.event_id
                if key is not None:
                    prior = known.get(key) or batch_seen.get(key)
                    if prior is not None:
                        prior_body, prior_result = prior
                        if prior_body != item.body:
                            raise EventConflict(org_of_log(log_id) or log_id, key)
                        results[position] = Appended(log_id, prior_result.sequence, prior_result.entry_hash, True)
                        continue
                encoded = entry_bytes(log_id, size, item.kind.value, recorded_at, item.body)
                entry_hash = chain_hash(head_hash, encoded)
                frontier, subtrees = frontier.append(leaf_hash(encoded))
                index = item.index
                rows.append(
                    {
                        "log_id": log_id,
                        "seq": size,
                        "kind": item.kind.value,
                        "recorded_at": recorded_at,
                        "body": item.body,
                        "prev_hash": head_hash,
                        "entry_hash": entry_hash,
                        "subtree_hashes": b"".join(subtrees),
                        "event_id": key,
                        "org_id": index.org_id,
                        "endpoint_id": index.endpoint_id,
                        "workload_id": index.workload_id,
                        "request_id": index.request_id,
                        "occurred_at": index.occurred_at,
                    }
                )
                appended = Appended(log_id, size, entry_hash, False)
                results[position] = appended
                if key is not None:
                    batch_seen[key] = (item.body, appended)
                head_hash = entry_hash
                size += 1
            if size != start_size:
                head_updates.append({"k": log_id, "size": size, "head_hash": head_hash, "frontier": frontier.encode()})
        if rows:
            conn.execute(entries.insert(), rows)
        for update in head_updates:
            conn.execute(
                log_heads.update()
                .where(log_heads.c.log_id == update["k"])
                .values(size=update["size"], head_hash=update["head_hash"], frontier=update["frontier"])
            )
        return [r for r in results if r is not None]

    def _lock_head(self, conn: Connection, log_id: str) -> tuple[int, bytes, Frontier]:
        """Take the log's head row lock (creating the head of a new log) and read size, head hash and frontier."""
        if self.dialect == "postgresql":
            conn.execute(
                pg_insert(log_heads)
                .values(log_id=log_id, size=0, head_hash=GENESIS_HASH, frontier=Frontier.empty().encode())
                .on_conflict_do_nothing(index_elements=["log_id"])
            )
            query = select(log_heads.c.size, log_heads.c.head_hash, log_heads.c.frontier).where(
                log_heads.c.log_id == log_id
            )
            row = conn.execute(query.with_for_update()).one()
        else:
            # SQLite: BEGIN IMMEDIATE already holds the database's write lock.
            found = conn.execute(
                select(log_heads.c.size, log_heads.c.head_hash, log_heads.c.frontier).where(
                    log_heads.c.log_id == log_id
                )
            ).one_or_none()
            if found is None:
                conn.execute(
                    log_heads.insert().values(
                        log_id=log_id, size=0, head_hash=GENESIS_HASH, frontier=Frontier.empty().encode()
                    )
                )
                return 0, GENESIS_HASH, Frontier.empty()
            row = found
        return int(row.size), bytes(row.head_hash), Frontier.decode(bytes(row.frontier))

    def _existing(self, conn: Connection, log_id: str, items: Sequence[NewEntry]) -> dict[str, tuple[bytes, Appended]]:
        keys = sorted({item.index.event_id for item in items if item.index.event_id is not None})
        found: dict[str, tuple[bytes, Appended]] = {}
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[start : start + _LOOKUP_CHUNK]
            query = select(entries.c.event_id, entries.c.seq, entries.c.entry_hash, entries.c.body).where(
                entries.c.log_id == log_id, entries.c.event_id.in_(chunk)
            )
            for row in conn.execute(query):
                found[row.event_id] = (bytes(row.body), Appended(log_id, int(row.seq), bytes(row.entry_hash), True))
        return found

    # -- read -------------------------------------------------------------------------------------

    def get_entry(self, log_id: str, sequence: int) -> Entry:
        with self.reader.connect() as conn:
            row = conn.execute(
                select(*_ENTRY_COLUMNS).where(entries.c.log_id == log_id, entries.c.seq == sequence)
            ).one_or_none()
        if row is None:
            raise NotFound(f"no entry {log_id}#{sequence}")
        return _entry(row)

    def list_entries(self, log_id: str, start: int, limit: int) -> list[Entry]:
        with self.reader.connect() as conn:
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
        with self.reader.connect() as conn:
            row = conn.execute(select(log_heads).where(log_heads.c.log_id == log_id)).one_or_none()
        if row is None:
            raise NotFound(f"no log {log_id!r}")
        return _head(row)

    def list_logs(self, after: str, limit: int) -> list[LogHead]:
        with self.reader.connect() as conn:
            rows = conn.execute(
                select(log_heads).where(log_heads.c.log_id > after).order_by(log_heads.c.log_id).limit(limit)
            ).all()
        return [_head(row) for row in rows]

    def subtree_hashes(self, log_id: str, nodes: Sequence[tuple[int, int]]) -> list[bytes]:
        """Merkle nodes (level, index) read from the entries that complete them, in one query."""
        places = [stored_at(level, index) for level, index in nodes]
        sequences = sorted({seq for seq, _ in places})
        stored: dict[int, bytes] = {}
        with self.reader.connect() as conn:
            for start in range(0, len(sequences), _LOOKUP_CHUNK):
                chunk = sequences[start : start + _LOOKUP_CHUNK]
                query = select(entries.c.seq, entries.c.subtree_hashes).where(
                    entries.c.log_id == log_id, entries.c.seq.in_(chunk)
                )
                stored.update((int(row.seq), bytes(row.subtree_hashes)) for row in conn.execute(query))
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
            with self.reader.connect() as conn:
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

    def entries_of_kind(self, log_id: str, kinds: Sequence[str]) -> list[Entry]:
        """Every non-EVENT entry of the given kinds in a log, in sequence order (served by ix_entries_kind)."""
        with self.reader.connect() as conn:
            rows = conn.execute(
                select(*_ENTRY_COLUMNS)
                .where(entries.c.log_id == log_id, entries.c.kind != "EVENT", entries.c.kind.in_(list(kinds)))
                .order_by(entries.c.seq)
            ).all()
        return [_entry(row) for row in rows]


def _bytes(value: Any) -> bytes:
    """Binary columns as bytes, even when a hand edit stored text there (audit must report it, not crash)."""
    return value.encode() if isinstance(value, str) else bytes(value)


def _entry(row: Any) -> Entry:
    return Entry(
        log_id=row.log_id,
        sequence=int(row.seq),
        kind=EntryKind(row.kind),
        recorded_at=int(row.recorded_at),
        body=_bytes(row.body),
        previous_hash=_bytes(row.prev_hash),
        entry_hash=_bytes(row.entry_hash),
    )


def _head(row: Any) -> LogHead:
    frontier = Frontier.decode(bytes(row.frontier))
    return LogHead(row.log_id, int(row.size), bytes(row.head_hash), frontier.root())


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
