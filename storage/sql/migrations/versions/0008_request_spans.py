"""Each request's start and finish in the rollups, so a dispute lookup pairs a window's requests from them.

A lookup sweeps the requests near its window for the R25 shares of the ones it lists. It read their entries for
that, and since no index column holds an event's type it read each row's body to tell a start from a finish: the
slowest part of a busy window's lookup. `rollup_request_spans` (storage/sql/rollup_serving.py) holds one row per
request: when and at which entry it started and finished; its index covers what a lookup reads.

ix_entries_endpoint_time gains workload_id, so the workloads with entries in an endpoint's window are read from the
index alone (in a busy window, a table row per entry was most of that read). ix_entries_workload_time gains
request_id, so a read of a workload's entries in a time range without its requests skips the requests in the index
(on SQLite; they were 94% of the rows that read fetched on the bench's log).

Rollups are derived, so the existing ones are cleared here and rebuilt from the logs on their next read.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollup_request_spans",
        sa.Column("log_id", sa.String(140), primary_key=True),
        sa.Column("workload_id", sa.String(128), primary_key=True),
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("started_at", sa.BigInteger),
        sa.Column("started_seq", sa.BigInteger),
        sa.Column("finished_at", sa.BigInteger),
        sa.Column("finished_seq", sa.BigInteger),
    )
    op.create_index(
        "ix_rollup_request_spans_start",
        "rollup_request_spans",
        ["log_id", "workload_id", "started_at", "finished_at", "started_seq", "finished_seq", "request_id"],
    )
    op.drop_index("ix_entries_endpoint_time", table_name="entries")
    op.create_index("ix_entries_endpoint_time", "entries", ["org_id", "endpoint_id", "occurred_at", "workload_id"])
    op.drop_index("ix_entries_workload_time", table_name="entries")
    op.create_index("ix_entries_workload_time", "entries", ["log_id", "workload_id", "occurred_at", "request_id"])
    for table in ("rollup_cursors", "rollup_workloads", "rollup_storage", "rollup_requests", "rollup_serving"):
        op.execute(f"DELETE FROM {table}")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'usage_ledger_app') THEN "
            "GRANT SELECT, INSERT, UPDATE, DELETE ON rollup_request_spans TO usage_ledger_app; "
            "END IF; END $$"
        )


def downgrade() -> None:
    op.drop_index("ix_entries_workload_time", table_name="entries")
    op.create_index("ix_entries_workload_time", "entries", ["log_id", "workload_id", "occurred_at"])
    op.drop_index("ix_entries_endpoint_time", table_name="entries")
    op.create_index("ix_entries_endpoint_time", "entries", ["org_id", "endpoint_id", "occurred_at"])
    op.drop_index("ix_rollup_request_spans_start", table_name="rollup_request_spans")
    op.drop_table("rollup_request_spans")
