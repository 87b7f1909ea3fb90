"""Every stored column of a log's entries in sequence order, for audit verification (ledger.log.audit)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import and_, select

from ledger.log.entry import Entry
from ledger.ports import IndexColumns
from storage.sql.connections import SqlConnections
from storage.sql.entry_rows import ENTRY_COLUMNS, binary, entry_from_row
from storage.sql.schema import entries

# The columns of a raw row, in ledger.log.replay.RAW_ROW's order: what audit_pages hands over.
AUDIT_COLUMNS = (
    "seq",
    "kind",
    "recorded_at",
    "body",
    "prev_hash",
    "entry_hash",
    "subtree_hashes",
    "org_id",
    "endpoint_id",
    "workload_id",
    "request_id",
    "occurred_at",
    "event_id",
)


class AuditReads(SqlConnections):
    """A log's rows as audit verification reads them: whole, paged, through the driver's cursor."""

    def audit_rows(self, log_id: str, start: int = 0) -> Iterator[tuple[Entry, IndexColumns, bytes]]:
        """Every stored column of a log's entries in sequence order, paged so memory stays flat."""
        columns = (
            *ENTRY_COLUMNS,
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
                yield entry_from_row(row), index, binary(row.subtree_hashes)
            if len(rows) < page:
                return
            position = int(rows[-1].seq) + 1

    def audit_pages(self, log_id: str, start: int = 0, stop: int | None = None) -> Iterator[list[tuple[Any, ...]]]:
        """audit_rows as the driver's own row tuples (ledger.log.audit.AUDIT_COLUMNS), a page at a time, up to `stop`.

        Verification reads every row of a log: through the DB-API cursor, one query per page, it skips SQLAlchemy's
        Row and the Entry and IndexColumns objects, which cost more than the checks themselves.
        """
        marker = self.marker
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
