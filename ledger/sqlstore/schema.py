"""Table definitions. The schema itself is created and changed only by the Alembic migrations."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, LargeBinary, MetaData, String, Table

metadata = MetaData()

# The ledger proper: append-only (triggers reject UPDATE, DELETE and TRUNCATE; see migrations).
entries = Table(
    "entries",
    metadata,
    Column("log_id", String(140), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(16), nullable=False),
    Column("recorded_at", BigInteger, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("prev_hash", LargeBinary, nullable=False),
    Column("entry_hash", LargeBinary, nullable=False),
    # Hashes of the perfect Merkle subtrees whose last leaf is this entry, level 0 (the leaf hash) first.
    Column("subtree_hashes", LargeBinary, nullable=False),
    # Index columns, derived from the body.
    Column("event_id", String(128)),
    Column("org_id", String(128)),
    Column("endpoint_id", String(128)),
    Column("workload_id", String(128)),
    Column("request_id", String(128)),
    Column("occurred_at", BigInteger),
)
Index("ux_entries_event_id", entries.c.log_id, entries.c.event_id, unique=True)
Index("ix_entries_endpoint_time", entries.c.org_id, entries.c.endpoint_id, entries.c.occurred_at)
Index("ix_entries_request", entries.c.request_id)
Index("ix_entries_workload", entries.c.log_id, entries.c.workload_id)
Index(
    "ix_entries_kind",
    entries.c.log_id,
    entries.c.kind,
    entries.c.seq,
    sqlite_where=entries.c.kind != "EVENT",
    postgresql_where=entries.c.kind != "EVENT",
)

# Derived head of each log (size, chain head, Merkle frontier): rebuildable from entries, updated on append.
# Its row is also the lock that serializes appends to one log across server processes.
log_heads = Table(
    "log_heads",
    metadata,
    Column("log_id", String(140), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("head_hash", LargeBinary, nullable=False),
    Column("frontier", LargeBinary, nullable=False),
)
