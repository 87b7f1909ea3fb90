"""Rollups for a fast dispute lookup (R25, R27): request summaries, hourly serving unions, workload time spans.

- `rollup_requests` and `rollup_serving` (storage/sql/rollup_serving.py) hold each workload's R25 serving time, so a
  lookup never reads a long replica's every request;
- `rollup_workloads` gains the span of each workload's lifecycle events, indexed by endpoint, so the workloads
  live across a window are found without scanning the endpoint's history;
- ix_entries_workload becomes (log_id, workload_id, occurred_at): a workload's entries in a time range;
- ix_entries_request becomes (request_id, log_id): the rollups ask whether a request ID was already used in a log
  (a request started twice, R26) from the index alone.

Rollups are derived, so the existing ones are cleared here and rebuilt from the logs on their next read.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollup_requests",
        sa.Column("log_id", sa.String(140), primary_key=True),
        sa.Column("workload_id", sa.String(128), primary_key=True),
        sa.Column("summary", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "rollup_serving",
        sa.Column("log_id", sa.String(140), primary_key=True),
        sa.Column("workload_id", sa.String(128), primary_key=True),
        sa.Column("hour", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("serving_micros", sa.BigInteger, nullable=False),
        sa.Column("intervals", sa.LargeBinary, nullable=False),
    )
    for table in ("rollup_cursors", "rollup_workloads", "rollup_storage"):
        op.execute(f"DELETE FROM {table}")
    with op.batch_alter_table("rollup_workloads") as batch:
        batch.add_column(sa.Column("lifecycle_from", sa.BigInteger))
        batch.add_column(sa.Column("lifecycle_to", sa.BigInteger))
    op.create_index("ix_rollup_workloads_endpoint", "rollup_workloads", ["log_id", "endpoint_id", "lifecycle_from"])
    op.drop_index("ix_entries_workload", table_name="entries")
    op.create_index("ix_entries_workload_time", "entries", ["log_id", "workload_id", "occurred_at"])
    op.drop_index("ix_entries_request", table_name="entries")
    op.create_index("ix_entries_request", "entries", ["request_id", "log_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'usage_ledger_app') THEN "
            "GRANT SELECT, INSERT, UPDATE, DELETE ON rollup_requests, rollup_serving TO usage_ledger_app; "
            "END IF; END $$"
        )


def downgrade() -> None:
    op.drop_index("ix_entries_request", table_name="entries")
    op.create_index("ix_entries_request", "entries", ["request_id"])
    op.drop_index("ix_entries_workload_time", table_name="entries")
    op.create_index("ix_entries_workload", "entries", ["log_id", "workload_id"])
    op.drop_index("ix_rollup_workloads_endpoint", table_name="rollup_workloads")
    with op.batch_alter_table("rollup_workloads") as batch:
        batch.drop_column("lifecycle_to")
        batch.drop_column("lifecycle_from")
    op.drop_table("rollup_serving")
    op.drop_table("rollup_requests")
