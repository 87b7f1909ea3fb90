"""A dispute lookup cites request and storage entries from the rollups, and finds an endpoint's storage there.

A lookup read three sets of entries only to cite them: the lifecycle entries of the window's workloads (whose
events the rollups keep), the heads of the requests it lists (their hash), and the storage samples of the
window's workloads, whose bodies it decoded and rated again although the rollups had rated each one already.
`rollup_workloads.lifecycle` now keeps each event's entry hash beside its body, `rollup_request_spans` each
request's two entry hashes (in its covering index), and `rollup_storage` each sample's hash, so the lookup reads
none of them.

The storage read of a lookup asks for an endpoint's intervals meeting its window (R13, R14). An interval runs up to
31 days, so a bound on its start alone would read a month of samples: ix_rollup_storage_endpoint finds the
samples of 300 s or less (nearly all) by start, and the partial index ix_rollup_storage_long the longer ones,
which the earlier read by occurred-at time missed when they ended more than 300 s after the window.

Rollups are derived, so the existing ones are cleared here and rebuilt from the logs on their next read.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_SPAN_INDEX = ["log_id", "workload_id", "started_at", "finished_at", "started_seq", "finished_seq", "request_id"]
_LONG = sa.text("interval_seconds > 300")  # schema.SHORT_STORAGE_INTERVAL_SECONDS


def upgrade() -> None:
    rollups = ("rollup_cursors", "rollup_workloads", "rollup_storage", "rollup_requests", "rollup_serving")
    for table in (*rollups, "rollup_request_spans"):
        op.execute(f"DELETE FROM {table}")
    with op.batch_alter_table("rollup_request_spans") as batch:
        batch.add_column(sa.Column("started_hash", sa.LargeBinary))
        batch.add_column(sa.Column("finished_hash", sa.LargeBinary))
    op.drop_index("ix_rollup_request_spans_start", table_name="rollup_request_spans")
    op.create_index(
        "ix_rollup_request_spans_start", "rollup_request_spans", [*_SPAN_INDEX, "started_hash", "finished_hash"]
    )
    with op.batch_alter_table("rollup_storage") as batch:
        batch.add_column(sa.Column("entry_hash", sa.LargeBinary))
    op.create_index("ix_rollup_storage_endpoint", "rollup_storage", ["log_id", "endpoint_id", "start"])
    op.create_index(
        "ix_rollup_storage_long",
        "rollup_storage",
        ["log_id", "endpoint_id", "start"],
        sqlite_where=_LONG,
        postgresql_where=_LONG,
    )


def downgrade() -> None:
    op.drop_index("ix_rollup_storage_long", table_name="rollup_storage")
    op.drop_index("ix_rollup_storage_endpoint", table_name="rollup_storage")
    with op.batch_alter_table("rollup_storage") as batch:
        batch.drop_column("entry_hash")
    op.drop_index("ix_rollup_request_spans_start", table_name="rollup_request_spans")
    with op.batch_alter_table("rollup_request_spans") as batch:
        batch.drop_column("finished_hash")
        batch.drop_column("started_hash")
    op.create_index("ix_rollup_request_spans_start", "rollup_request_spans", _SPAN_INDEX)
