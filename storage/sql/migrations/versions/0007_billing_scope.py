"""Billing evaluations from the rollups: each workload's last lifecycle entry, and indexes to find what can bill.

A billing evaluation (an invoice draft, R15's hourly spend, R19's check) needs only the workloads whose charge
can differ from what the last invoice holds: open sessions, sessions with units after that invoice's end or in
R15's last hour, and workloads with a lifecycle entry appended since that invoice was rated
(ledger/billing/scope.py). `changed_seq` is the sequence number of a workload's latest lifecycle entry;
`rollup_storage` keeps each sample's fields, so its charge (R13, R14, R8) is made without reading the entry.

Rollups are derived, so the existing ones are cleared here and rebuilt from the logs on their next read.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Nullable only because ALTER TABLE cannot add NOT NULL columns to SQLite; the rows are rebuilt with every value.
_SAMPLE_COLUMNS = (
    sa.Column("event_id", sa.String(128)),
    sa.Column("workspace_id", sa.String(128)),
    sa.Column("volume_id", sa.String(128)),
    sa.Column("gigabytes", sa.String(64)),
    sa.Column("interval_seconds", sa.BigInteger),
    sa.Column("development", sa.Boolean),
)


def upgrade() -> None:
    for table in ("rollup_cursors", "rollup_workloads", "rollup_storage", "rollup_requests", "rollup_serving"):
        op.execute(f"DELETE FROM {table}")
    with op.batch_alter_table("rollup_workloads") as batch:
        batch.add_column(sa.Column("changed_seq", sa.BigInteger))
    op.create_index("ix_rollup_workloads_changed", "rollup_workloads", ["log_id", "changed_seq"])
    op.create_index("ix_rollup_workloads_billed_end", "rollup_workloads", ["log_id", "billed_end"])
    op.create_index("ix_rollup_workloads_open", "rollup_workloads", ["log_id", "is_open"])
    with op.batch_alter_table("rollup_storage") as batch:
        for column in _SAMPLE_COLUMNS:
            batch.add_column(column)


def downgrade() -> None:
    with op.batch_alter_table("rollup_storage") as batch:
        for column in _SAMPLE_COLUMNS:
            batch.drop_column(column.name)
    op.drop_index("ix_rollup_workloads_open", table_name="rollup_workloads")
    op.drop_index("ix_rollup_workloads_billed_end", table_name="rollup_workloads")
    op.drop_index("ix_rollup_workloads_changed", table_name="rollup_workloads")
    with op.batch_alter_table("rollup_workloads") as batch:
        batch.drop_column("changed_seq")
