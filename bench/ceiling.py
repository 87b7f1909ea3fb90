"""The raw-insert ceiling: the rows the server stored, inserted straight into a fresh database of the same kind.

Same schema (SqlStore's migrations), same connection settings (SqlStore's engines: WAL and synchronous=FULL on
SQLite), same transaction size as the gRPC batches, one DB-API `executemany` per batch; no validation, no
hashing, no gRPC, no idempotency lookups, no head update. What the ledger does on top of this is its overhead.
"""

from __future__ import annotations

import time
from typing import Any

from storage.sql import SqlStore

COLUMNS = (
    "log_id",
    "seq",
    "kind",
    "recorded_at",
    "body",
    "prev_hash",
    "entry_hash",
    "subtree_hashes",
    "event_id",
    "org_id",
    "endpoint_id",
    "workload_id",
    "request_id",
    "occurred_at",
)


def stored_rows(store: SqlStore) -> list[tuple[Any, ...]]:
    """Every usage-event row, in (about) the order the server wrote them (entries the server adds itself, such
    as R15 spend-limit STATE entries, are not part of the ingested stream)."""
    sql = f"SELECT {', '.join(COLUMNS)} FROM entries WHERE kind = 'EVENT' ORDER BY recorded_at, log_id, seq"
    with store.reader.connect() as conn:
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in conn.exec_driver_sql(sql)]


def insert_ceiling(url: str, rows: list[tuple[Any, ...]], batch: int, method: str = "executemany") -> dict[str, Any]:
    """Insert `rows` into the fresh database at `url`, `batch` rows per transaction.

    `method`: "executemany" (the issue's ceiling) or, on PostgreSQL, "copy" (COPY FROM STDIN, what the store
    itself uses there, so a ceiling the server can actually be compared with).
    """
    store = SqlStore(url)
    try:
        raw = store.writer.raw_connection()
        try:
            cursor = raw.cursor()
            marks = ", ".join(["?" if store.dialect == "sqlite" else "%s"] * len(COLUMNS))
            sql = f"INSERT INTO entries ({', '.join(COLUMNS)}) VALUES ({marks})"
            copy_sql = f"COPY entries ({', '.join(COLUMNS)}) FROM STDIN"
            t0 = time.perf_counter()
            for start in range(0, len(rows), batch):
                chunk = rows[start : start + batch]
                if store.dialect == "sqlite":
                    cursor.execute("BEGIN IMMEDIATE")  # the store's connections run in autocommit mode
                    cursor.executemany(sql, chunk)
                    cursor.execute("COMMIT")
                elif method == "copy":
                    with cursor.copy(copy_sql) as copy:
                        for row in chunk:
                            copy.write_row(row)
                    raw.commit()
                else:
                    cursor.executemany(sql, chunk)
                    raw.commit()
            elapsed = time.perf_counter() - t0
            cursor.close()
        finally:
            raw.close()
    finally:
        store.close()
    return {
        "method": method if store.dialect != "sqlite" else "executemany",
        "events": len(rows),
        "batch": batch,
        "seconds": round(elapsed, 3),
        "events_per_second": round(len(rows) / elapsed, 1),
    }
