"""Table definitions. The schema itself is created and changed only by the Alembic migrations."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, LargeBinary, MetaData, String, Table, text

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
# With workload_id, the workloads of an endpoint's window come from the index alone (migration 0008).
Index("ix_entries_endpoint_time", entries.c.org_id, entries.c.endpoint_id, entries.c.occurred_at, entries.c.workload_id)
Index("ix_entries_request", entries.c.request_id, entries.c.log_id)
# With request_id, a read of a workload's entries in a time range without its requests (most of a serving
# replica's entries) skips them in the index instead of reading each row (migration 0008).
Index("ix_entries_workload_time", entries.c.log_id, entries.c.workload_id, entries.c.occurred_at, entries.c.request_id)
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

# The latest cut instant (R17) of each log's issued invoices, kept in the transaction that appends the invoice:
# derived (rebuildable from the INVOICE entries), it answers R12's guard, "does any issued invoice cut after this
# instant?", with one index read instead of a read of every org's invoices (migration 0011).
invoice_cuts = Table(
    "invoice_cuts",
    metadata,
    Column("log_id", String(140), primary_key=True),
    Column("cut", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
)
Index("ix_invoice_cuts_cut", invoice_cuts.c.cut)

# -- derived usage rollups (rebuildable from the logs; never the source of truth) -------------------------------

rollup_cursors = Table(
    "rollup_cursors",
    metadata,
    Column("log_id", String(140), primary_key=True),
    Column("applied_size", BigInteger, nullable=False),
    Column("system_size", BigInteger, nullable=False),
    # R28: the org's latest event time (HEARTBEATs included) and latest HEARTBEAT among the applied entries.
    Column("latest_event_at", BigInteger),
    Column("heartbeat_at", BigInteger),
)
# R28: each workload's latest event time of any type (the rollups keep only lifecycle events): its own evidence of
# running, which bounds an open session (R10).
rollup_evidence = Table(
    "rollup_evidence",
    metadata,
    Column("log_id", String(140), primary_key=True),
    Column("workload_id", String(128), primary_key=True),
    Column("evidence_at", BigInteger, nullable=False),
    # Its latest STORAGE_SAMPLE: while it runs, its next storage interval starts there (R28, R13, R14).
    Column("storage_at", BigInteger),
)
rollup_workloads = Table(
    "rollup_workloads",
    metadata,
    Column("log_id", String(140), primary_key=True),
    Column("workload_id", String(128), primary_key=True),
    Column("endpoint_id", String(128), nullable=False),
    Column("workload_kind", String(16), nullable=False),
    Column("instance_type", String(64), nullable=False),
    Column("worker_type", String(16), nullable=False),
    Column("lifecycle", LargeBinary, nullable=False),
    Column("up", BigInteger),
    Column("billed_end", BigInteger),
    Column("is_open", Boolean, nullable=False),
    Column("session", LargeBinary),
    # The first and last lifecycle event (last: None until STOPPED or BOOT_FAILED): live across a window (R27).
    Column("lifecycle_from", BigInteger),
    Column("lifecycle_to", BigInteger),
    # The sequence number of its latest lifecycle entry: changed since an invoice was rated (billing/scope.py).
    Column("changed_seq", BigInteger),
)
Index("ix_rollup_workloads_up", rollup_workloads.c.log_id, rollup_workloads.c.up)
Index("ix_rollup_workloads_changed", rollup_workloads.c.log_id, rollup_workloads.c.changed_seq)
Index("ix_rollup_workloads_billed_end", rollup_workloads.c.log_id, rollup_workloads.c.billed_end)
Index("ix_rollup_workloads_open", rollup_workloads.c.log_id, rollup_workloads.c.is_open)
Index(
    "ix_rollup_workloads_endpoint",
    rollup_workloads.c.log_id,
    rollup_workloads.c.endpoint_id,
    rollup_workloads.c.lifecycle_from,
)
# R25 serving time per workload (storage/sql/rollup_serving.py): a summary of its requests, and the union of its
# closed requests' in-flight intervals per hour with that union's measure.
rollup_requests = Table(
    "rollup_requests",
    metadata,
    Column("log_id", String(140), primary_key=True),
    Column("workload_id", String(128), primary_key=True),
    Column("summary", LargeBinary, nullable=False),
)
rollup_serving = Table(
    "rollup_serving",
    metadata,
    Column("log_id", String(140), primary_key=True),
    Column("workload_id", String(128), primary_key=True),
    Column("hour", BigInteger, primary_key=True, autoincrement=False),
    Column("serving_micros", BigInteger, nullable=False),
    Column("intervals", LargeBinary, nullable=False),
)
# Each request's start and finish, so a lookup pairs the requests near its window without reading their entries
# (migration 0008). A request seen started or finished twice keeps its first; its workload is irregular and a
# lookup reads it whole.
rollup_request_spans = Table(
    "rollup_request_spans",
    metadata,
    Column("log_id", String(140), primary_key=True),
    Column("workload_id", String(128), primary_key=True),
    Column("request_id", String(128), primary_key=True),
    Column("started_at", BigInteger),
    Column("started_seq", BigInteger),
    Column("finished_at", BigInteger),
    Column("finished_seq", BigInteger),
    # The two entries' hashes, so the lookup cites the requests it lists without reading them (migration 0009).
    Column("started_hash", LargeBinary),
    Column("finished_hash", LargeBinary),
)
# Covering: a lookup reads a reach's spans, and cites the ones it lists, from the index alone. In listing order
# (start, then entry), so the first requests of a busy range are read without a sort (migration 0010).
Index(
    "ix_rollup_request_spans_start",
    rollup_request_spans.c.log_id,
    rollup_request_spans.c.workload_id,
    rollup_request_spans.c.started_at,
    rollup_request_spans.c.started_seq,
    rollup_request_spans.c.finished_at,
    rollup_request_spans.c.finished_seq,
    rollup_request_spans.c.request_id,
    rollup_request_spans.c.started_hash,
    rollup_request_spans.c.finished_hash,
)
rollup_storage = Table(
    "rollup_storage",
    metadata,
    Column("log_id", String(140), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("endpoint_id", String(128), nullable=False),
    Column("workload_id", String(128), nullable=False),
    Column("storage_kind", String(16), nullable=False),
    Column("start", BigInteger, nullable=False),
    Column("charge", LargeBinary, nullable=False),
    # The sample's fields, so billing makes its charge without reading the entry (migration 0007).
    Column("event_id", String(128)),
    Column("workspace_id", String(128)),
    Column("volume_id", String(128)),
    Column("gigabytes", String(64)),
    Column("interval_seconds", BigInteger),
    Column("development", Boolean),
    # The sample entry's hash, so a dispute lookup cites the sample without reading it (migration 0009).
    Column("entry_hash", LargeBinary),
)
Index("ix_rollup_storage_start", rollup_storage.c.log_id, rollup_storage.c.start)
# A dispute lookup's storage intervals of one endpoint meeting its window (R13, R14): an interval [start,
# start + interval) meets [from, to) when start < to and start + interval > from. Nearly every sample covers the
# default 300 s or less, found by start in (from - 300 s, to); the few longer ones (up to 31 days) have an index of
# their own, so neither read runs over a month of an endpoint's samples (migration 0009).
SHORT_STORAGE_INTERVAL_SECONDS = 300
_LONG_INTERVAL = text(f"interval_seconds > {SHORT_STORAGE_INTERVAL_SECONDS}")
Index("ix_rollup_storage_endpoint", rollup_storage.c.log_id, rollup_storage.c.endpoint_id, rollup_storage.c.start)
Index(
    "ix_rollup_storage_long",
    rollup_storage.c.log_id,
    rollup_storage.c.endpoint_id,
    rollup_storage.c.start,
    sqlite_where=_LONG_INTERVAL,
    postgresql_where=_LONG_INTERVAL,
)

# -- signed checkpoints (append-only like entries; see migration 0003) --------------------------------------------

# One row per signed tree head of a log. The signature is in `note`; the other columns are copies of its text
# for queries. (log_id, size) is the key: the ledger never signs two checkpoints of one size.
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("log_id", String(140), primary_key=True),
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary, nullable=False),
    Column("note", String, nullable=False),  # no length: VARCHAR in PostgreSQL, TEXT in SQLite
    Column("signed_at", BigInteger, nullable=False),
)

# -- API keys (mutable admin data, not ledger entries: no append-only triggers; see migration 0004) -------------

# Only a salted hash of each key's secret is stored (ledger/api_keys.py). Revoking sets revoked_at; rows are kept so a
# key id seen in an old log line can still be traced to its role and org.
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("salt", LargeBinary, nullable=False),
    Column("secret_hash", LargeBinary, nullable=False),
    Column("role", String(32), nullable=False),
    Column("org_id", String(128)),
    Column("label", String(200)),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger),
)
